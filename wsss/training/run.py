"""The run directory of ``wsss train --out RUN``.

::

    RUN/config.json          full configuration, model config, classes, dataset, input provenance
    RUN/metrics.jsonl        one JSON object per line: {"kind": "step", ...} every --log-every steps,
                             {"kind": "epoch", ...} per epoch (mean of each loss term, lr, speed, val mIoU)
    RUN/last.pt              checkpoint after the last finished epoch (what --resume and predict read)
    RUN/checkpoints/epoch-NNN.pt   one checkpoint per epoch

A checkpoint (``torch.save`` dict) holds: ``format`` ("wsss-checkpoint"), ``version``, ``model_config``
(:class:`wsss.models.ModelConfig` as dict), ``model`` (state dict), ``optimizer``, ``scaler``, ``epoch``
(finished epochs), ``step`` (optimizer steps), ``scheduler`` (the poly schedule's state), ``rng`` (torch
CPU/CUDA generator states), ``config``, ``classes``, ``dataset`` and ``task`` (the training task's name,
:func:`checkpoint_task`). Files are written to ``*.tmp`` and renamed (atomic).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from wsss.errors import UserError
from wsss.validation import check_writable_folder

CHECKPOINT_FORMAT = "wsss-checkpoint"
CHECKPOINT_VERSION = 1


def _default(value: Any):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(type(value).__name__)


class RunDir:
    """Paths and writers of a run directory (only the main rank writes)."""

    def __init__(self, root: str | os.PathLike, enabled: bool = True):
        self.root = Path(root)
        self.enabled = enabled

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def last(self) -> Path:
        return self.root / "last.pt"

    def epoch_checkpoint(self, epoch: int) -> Path:
        return self.root / "checkpoints" / f"epoch-{epoch:03d}.pt"

    def check_location(self) -> None:
        """Before any work: the run directory is a folder (or can be made) in a writable place."""
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"{self.root}: is a file, not a run directory. Choose another --out.")
        parent = self.root if self.root.exists() else self.root.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        check_writable_folder(parent)

    def existing(self) -> set[Path]:
        """Which of the run's own paths exist now (see :meth:`remove_new`)."""
        paths = (self.root, self.config_path, self.metrics_path, self.last, self.root / "checkpoints")
        return {p for p in paths if p.exists()}

    def remove_new(self, before: set[Path]) -> None:
        """After a failed start (no checkpoint written): remove what this run created, so that the
        corrected command can start again; paths in ``before`` and other files are kept."""
        if not self.enabled or not self.root.is_dir() or self.last.exists():
            return
        try:
            for path in (self.config_path, self.metrics_path):
                if path not in before:
                    path.unlink(missing_ok=True)
            for folder in (self.root / "checkpoints", self.root):
                if folder not in before and folder.is_dir():
                    for leftover in folder.glob("*.tmp"):
                        leftover.unlink(missing_ok=True)
                    if not any(folder.iterdir()):  # a folder holding other files is kept
                        folder.rmdir()
        except OSError:
            pass  # the cleanup must not hide the error that stopped the run

    def create(self, config: dict[str, Any]) -> None:
        """Start a new run (the caller checked that the folder holds no previous run)."""
        if not self.enabled:
            return
        (self.root / "checkpoints").mkdir(parents=True, exist_ok=True)
        self.write_json(self.config_path, config)
        self.metrics_path.write_text("")

    def write_json(self, path: Path, value: Any) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(value, indent=2, sort_keys=True, default=_default) + "\n")
        os.replace(tmp, path)

    def log(self, record: dict[str, Any]) -> None:
        """Append one line to metrics.jsonl."""
        if not self.enabled:
            return
        with open(self.metrics_path, "a") as fh:
            fh.write(json.dumps(record, sort_keys=True, default=_default) + "\n")

    def truncate_metrics(self, epoch: int) -> None:
        """On resume: drop lines logged after the checkpointed ``epoch`` (an interrupted epoch)."""
        if not self.enabled or not self.metrics_path.exists():
            return
        keep = []
        for line in self.metrics_path.read_text().splitlines():
            if line.strip() and json.loads(line).get("epoch", 0) <= epoch:
                keep.append(line)
        tmp = self.metrics_path.with_name(self.metrics_path.name + ".tmp")
        tmp.write_text("".join(k + "\n" for k in keep))
        os.replace(tmp, self.metrics_path)

    def save_checkpoint(self, state: dict[str, Any], epoch: int) -> None:
        """Write ``checkpoints/epoch-NNN.pt`` and ``last.pt`` atomically."""
        if not self.enabled:
            return
        state = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
        path = self.epoch_checkpoint(epoch)
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_save(state, path)
        _atomic_save(state, self.last)


def _atomic_save(state: dict[str, Any], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


#: the task of checkpoints that name none (written before the CAM task existed)
UNNAMED_TASK = "segmentation"


def checkpoint_task(state: dict[str, Any]) -> str:
    """The name of the training task that wrote a checkpoint dict (``task``; :data:`UNNAMED_TASK` if absent)."""
    return str(state.get("task", UNNAMED_TASK))


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a run directory (its ``last.pt``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.exists():
        raise UserError(f"{path}: no checkpoint. Pass a run directory of 'wsss train' or a .pt checkpoint.")
    return path


def run_directory(checkpoint: str | os.PathLike) -> Path:
    """The run directory a checkpoint file belongs to (``RUN`` for ``RUN/last.pt`` and
    ``RUN/checkpoints/epoch-NNN.pt``; the file's folder otherwise)."""
    folder = Path(checkpoint).parent
    return folder.parent if folder.name == "checkpoints" else folder


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a checkpoint written by :meth:`RunDir.save_checkpoint`."""
    path = resolve_checkpoint(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"{path}: unreadable checkpoint ({exc}). Use a checkpoint written by 'wsss train'.") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path}: not a wsss checkpoint. Use RUN/last.pt or RUN/checkpoints/epoch-NNN.pt of 'wsss train'.")
    if int(state.get("version", 0)) > CHECKPOINT_VERSION:
        raise UserError(f"{path}: checkpoint version {state['version']} is newer than this wsss. Upgrade wsss.")
    return state
