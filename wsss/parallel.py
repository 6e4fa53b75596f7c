"""Per-image work across worker processes and ``torchrun`` ranks.

Every per-image stage (superpixels, crf, solve, predict, eval, prepare-*) computes a result per
image with a plain function and writes it to one artifact. :func:`run_per_image` does the rest:

- rank 0 locks the output and prepares its part folder (:class:`wsss.artifacts.ArtifactWriter`);
  under ``torchrun`` (``WORLD_SIZE`` > 1) rank ``r`` then takes the images ``ids[r::world_size]``
  and writes their durable part files into the same folder; after a barrier rank 0 joins the
  parts into the artifact (other ranks return once it exists);
- inside a rank, ``workers`` > 1 spreads images over a process pool (fork; each worker uses one
  torch thread and ends when its parent dies), results come back in order and one process writes;
- ``resume`` skips images whose part an interrupted run already wrote;
- a rich progress bar on rank 0.

The result of an image depends only on the image and the configuration, never on the worker or
rank that computed it, so the artifact is identical for any worker count and world size.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wsss.artifacts import ArtifactWriter, PartStore
from wsss.errors import UserError
from wsss.locks import close_inherited_locks
from wsss.progress import progress_bar

#: A per-image function: image id -> (arrays to store, per-image attributes or None)
ImageFn = Callable[[str], "tuple[Mapping[str, np.ndarray], Mapping[str, Any] | None]"]


@dataclass(frozen=True)
class DistributedContext:
    """Rank and world size of this process (1 process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def distributed_context() -> DistributedContext:
    """Read rank and world size from the environment ``torchrun`` sets."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return DistributedContext(rank=rank, world_size=world)


def init_distributed(backend: str | None = None) -> DistributedContext:
    """Initialise ``torch.distributed`` when launched by torchrun (gloo on CPU, nccl with CUDA)."""
    ctx = distributed_context()
    if ctx.world_size > 1:
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            if backend is None:
                backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend=backend)
    return ctx


def shutdown_distributed() -> None:
    """Destroy the process group if one was created (a live gloo group aborts at interpreter exit)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Synchronise all ranks (no-op in a single process)."""
    if distributed_context().world_size > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()


def all_reduce_sum(array: np.ndarray) -> np.ndarray:
    """Sum a numpy array over all ranks (identity in a single process). float64/int64 exact."""
    if distributed_context().world_size == 1:
        return array
    import torch
    import torch.distributed as dist

    tensor = torch.from_numpy(np.ascontiguousarray(array))
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.numpy()


def shard(ids: Sequence[str], ctx: DistributedContext) -> list[str]:
    """The images rank ``ctx.rank`` handles: ``ids[rank::world_size]``."""
    return list(ids[ctx.rank :: ctx.world_size])


_worker_fn: ImageFn | None = None

#: seconds between two checks of the parent-pid watchdog in worker processes
PARENT_POLL_S = 0.5


def die_with_parent(parent_pid: int) -> None:
    """Make this (forked) process end when ``parent_pid`` dies.

    On Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` has the kernel kill it the moment the parent
    dies; everywhere, a daemon thread also polls ``os.getppid()`` every :data:`PARENT_POLL_S`
    seconds and exits once the process has been re-parented. A parent already gone exits at once.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="wsss-parent-watchdog", daemon=True).start()


def _worker_init(fn: ImageFn, parent_pid: int) -> None:
    global _worker_fn
    die_with_parent(parent_pid)
    close_inherited_locks()
    _worker_fn = fn
    # One thread per worker so N workers use N cores; only if torch is already loaded (fork
    # inherits it), since importing torch just for this costs seconds per worker.
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def _worker_call(image_id: str):
    assert _worker_fn is not None
    return _worker_fn(image_id)


def map_images(fn: ImageFn, ids: Sequence[str], workers: int = 1) -> Iterator[tuple[str, Any]]:
    """Apply ``fn`` to every id, in order, with ``workers`` processes (1 = in this process).

    Worker processes end when this process dies (:func:`die_with_parent`)."""
    if workers < 1:
        raise UserError(f"--workers {workers}: must be at least 1.")
    if workers == 1 or len(ids) <= 1:
        for image_id in ids:
            yield image_id, fn(image_id)
        return
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(fn, os.getpid())) as pool:
        yield from zip(ids, pool.map(_worker_call, ids, chunksize=1))


def run_per_image(
    fn: ImageFn,
    ids: Sequence[str],
    writer_args: Mapping[str, Any],
    *,
    workers: int = 1,
    resume: bool = False,
    description: str = "processing",
    on_result: Callable[[str, Mapping[str, np.ndarray], Mapping[str, Any] | None], None] | None = None,
    finalize: Callable[[ArtifactWriter], None] | None = None,
) -> Path:
    """Compute ``fn`` for every image and write one artifact.

    Args:
        fn: image id -> (arrays, attrs). Must be picklable-free under fork (a closure is fine).
        ids: all image ids of the job (every rank passes the same list).
        writer_args: keyword arguments of :class:`ArtifactWriter` (``path``, ``kind``, ``classes``,
            ``config``, ``inputs``, ``dataset``, ``sources``).
        workers: processes per rank.
        resume: keep the images finished by an interrupted run.
        description: progress bar label.
        on_result: called in the writing process for every image computed in this run
            (statistics); not called for images skipped by ``resume``.
        finalize: called on the writer before commit (root attributes such as statistics).
            Runs on rank 0 only.

    Returns:
        the artifact path.
    """
    ctx = distributed_context()
    args = dict(writer_args)
    final = Path(args.pop("path"))
    if ctx.world_size > 1:
        init_distributed()
    writer: ArtifactWriter | None = None

    def open_writer() -> None:  # rank 0 locks the output and prepares (or resumes) the parts
        nonlocal writer
        if ctx.is_main:
            writer = ArtifactWriter(final, resume=resume, **args)

    def compute() -> None:  # every rank writes the parts of its share
        parts = writer.parts if writer is not None else PartStore(final)
        mine = shard(ids, ctx)
        todo = [i for i in mine if not parts.has(i)]  # rank 0 has deleted invalid parts
        with progress_bar(description, total=len(mine), enabled=ctx.is_main) as advance:
            advance(len(mine) - len(todo))
            for image_id, (arrays, attrs) in map_images(fn, todo, workers):
                parts.write(image_id, arrays, attrs)
                if on_result is not None:
                    on_result(image_id, arrays, attrs)
                advance(1)

    def join() -> None:
        if writer is not None:
            writer.add_finished(ids)
            if finalize is not None:
                finalize(writer)
            writer.commit()

    try:
        run_on_all_ranks(open_writer)
        run_on_all_ranks(compute)
        run_on_all_ranks(join)
    except BaseException as exc:
        if writer is not None:
            writer.__exit__(type(exc), exc, None)
        raise
    return final


def run_on_all_ranks(step: Callable[[], Any]) -> Any:
    """Run one step of a collective job on every rank, then agree on whether all succeeded.

    A rank whose step raised re-raises its error; the other ranks raise a :class:`UserError`
    pointing at it, instead of waiting forever at the next barrier. In a single process this
    just calls ``step``.
    """
    if distributed_context().world_size == 1:
        return step()
    error: BaseException | None = None
    result = None
    try:
        result = step()
    except Exception as exc:  # noqa: BLE001 - re-raised below after the vote
        error = exc
    failed = int(all_reduce_sum(np.array([1 if error is not None else 0], dtype=np.int64))[0])
    if error is not None:
        raise error
    if failed:
        raise UserError(f"{failed} other rank(s) stopped with an error (see their messages above); nothing was written.")
    return result


__all__ = [
    "DistributedContext",
    "all_reduce_sum",
    "barrier",
    "distributed_context",
    "init_distributed",
    "die_with_parent",
    "map_images",
    "run_on_all_ranks",
    "run_per_image",
    "shard",
    "shutdown_distributed",
]
