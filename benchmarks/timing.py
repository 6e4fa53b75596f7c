"""Timing helpers shared by the benchmark scripts (run as ``python benchmarks/NAME.py``, so this folder is
on ``sys.path``): the clocks a benchmark can report and the best-of-N timer."""

from __future__ import annotations

import time
from typing import Callable

import torch

#: ``--clock`` choices: wall time, or this process's CPU time (steadier on a shared machine)
CLOCKS = {"wall": time.perf_counter, "process": time.process_time}


def sync(device: torch.device) -> None:
    """Wait for the queued CUDA work of ``device`` (no-op on the CPU), so a timer sees finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_of(fn: Callable[[], object], repeat: int, device: torch.device = torch.device("cpu"),
            clock: Callable[[], float] = time.perf_counter) -> float:
    """Minimum time in seconds of ``fn()`` over ``repeat`` runs on ``clock``, after one warm-up run."""
    fn()
    sync(device)
    best = float("inf")
    for _ in range(repeat):
        t0 = clock()
        fn()
        sync(device)
        best = min(best, clock() - t0)
    return best
