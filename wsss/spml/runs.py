"""Which run a SPML inference step reads (docs/methods.md §10.5).

SPML inference takes two kinds of training runs, and each step refuses the other kind with one line:

- the **embedding run** (``wsss train --loss spml``, task :data:`EMBEDDING_TASK`): the embedding network and
  the initial classifier trained jointly on it. ``wsss spml-labels`` reads it, and the final classifier
  (``wsss train --loss pseudo --init-from``) starts from its frozen embedding;
- the **final classifier run** (task :data:`FINAL_TASK`): a classifier on the frozen embedding, trained on
  the random-walk pseudo-labels. ``wsss predict`` reads it like any segmentation run.

:func:`run_task_name` reads a checkpoint's task, :func:`check_embedding_run` refuses anything but an
embedding run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from wsss.errors import UserError
from wsss.training.spml import TASK_NAME

#: the training task of ``wsss train --loss spml`` (embedding + initial classifier)
EMBEDDING_TASK = TASK_NAME
#: the training task of the final classifier on the frozen embedding
FINAL_TASK = "spml-classifier"

#: what to run instead, per task found where an embedding run is expected
_INSTEAD = {
    FINAL_TASK: "a SPML final classifier run (its embedding is the one of the run it was trained from)",
    "segmentation": "a segmentation network run (wsss train --loss pce, pseudo, ...)",
    "cam": "a CAM classifier run (wsss cam train)",
}


def run_task_name(state: dict[str, Any]) -> str:
    """The task that wrote a checkpoint dict (:func:`wsss.training.run.checkpoint_task`)."""
    from wsss.training.run import checkpoint_task

    return checkpoint_task(state)


def check_embedding_run(path: str | os.PathLike, state: dict[str, Any], use: str) -> None:
    """Refuse a checkpoint that is not a SPML embedding run.

    Args:
        path: the run or checkpoint as given (for the message).
        state: its checkpoint dict.
        use: what the run was given for, e.g. ``"wsss spml-labels"``.

    Raises:
        UserError: naming the run, what it holds and what to pass instead.
    """
    task = run_task_name(state)
    if task == EMBEDDING_TASK:
        return
    what = _INSTEAD.get(task, f"a '{task}' run")
    raise UserError(f"{Path(path)}: holds {what}, but {use} needs a SPML embedding run. "
                    "Pass the run directory of 'wsss train --loss spml'.")


__all__ = ["EMBEDDING_TASK", "FINAL_TASK", "check_embedding_run", "run_task_name"]
