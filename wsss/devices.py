"""The torch device of a command's ``--device`` option (one rule for every stage).

``auto`` is CUDA when available, else the CPU. ``cuda`` under ``torchrun`` means the rank's own GPU,
``cuda:LOCAL_RANK``. CUDA runs one process per GPU, so ``--workers`` > 1 (CPU process pools) is
refused with it.
"""

from __future__ import annotations

import os

import torch

from wsss.errors import UserError


def resolve_device(name: str, workers: int = 1) -> torch.device:
    """``--device`` value (``auto``, ``cpu``, ``cuda``, ``cuda:N``) → torch device.

    Raises:
        UserError: CUDA asked for but not available, CUDA with ``workers`` > 1, or not a device name.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: CUDA is not available on this machine. Use --device cpu.")
        if workers > 1:
            raise UserError("--workers > 1 forks CPU processes; with --device cuda use --workers 1 "
                            "(and torchrun for several GPUs).")
        if name == "cuda":
            name = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"--device {name}: not a torch device ({exc}). Use cpu, cuda or cuda:N.") from exc


__all__ = ["resolve_device"]
