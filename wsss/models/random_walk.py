"""The network-embedded random walk of URSS (Pan et al., ICCV 2021, eqs. 5–6; docs/methods.md, "URSS").

On stride-8 features ``f`` (``B×D×h×w``, ``N = h·w`` positions in row-major order ``r·w + c``):

- ``code`` form (default; the public code, a position-attention block):
  ``E = (f W_q)(f W_k)ᵀ`` (``W_q, W_k``: 1×1 conv D→D/8 with bias), ``P = softmax_row(E)``,
  ``f^L = α · P (f W_v) + f`` (``W_v``: 1×1 conv D→D), ``α`` a learned scalar initialised at 0, so the
  block starts as the identity on its features;
- ``paper`` form (option): parameter-free ``E = f fᵀ``, ``P = softmax_row(E)``, ``f^L = α P f + f``
  (``α`` learned, initialised at 0, as in the code form). Neither form normalises ``f`` or uses a
  temperature.

Memory is O(N²) per image (``E`` and ``P`` are ``N×N``): :func:`check_walk_memory` refuses, before the
forward pass, a grid whose matrices would not fit (:class:`~wsss.errors.UserError`).
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn

from wsss.errors import UserError

#: random-walk forms
WALK_FORMS = ("code", "paper")
#: N×N float32 matrices alive per image in a training step of the walk with the eigenspace loss: the
#: energy, the row softmax P, their gradients, and the loss's two softmaxed copies and their logs
#: (a deliberate over-estimate).
MATRICES_PER_IMAGE = 8
#: the same without gradient (inference): the energy and P
MATRICES_PER_IMAGE_INFERENCE = 2


def walk_bytes(batch: int, positions: int, matrices: int = MATRICES_PER_IMAGE, bytes_per_entry: int = 4) -> int:
    """Estimated bytes of the walk's ``N×N`` matrices for ``batch`` images of ``positions`` grid positions."""
    return int(batch) * int(positions) ** 2 * int(matrices) * int(bytes_per_entry)


def available_bytes(device: torch.device) -> int:
    """Free memory of ``device``: CUDA's free memory, else the host's available physical memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX hosts
        return 1 << 62


def check_walk_memory(batch: int, grid: tuple[int, int], device: torch.device, limit: int | None = None,
                      training: bool = True) -> None:
    """Raise :class:`UserError` when the walk's matrices for ``batch`` images on a ``grid`` (``h, w``) would
    not fit in ``limit`` bytes (default: :func:`available_bytes` of ``device``); ``training``:
    :data:`MATRICES_PER_IMAGE` matrices per image, else :data:`MATRICES_PER_IMAGE_INFERENCE`."""
    h, w = grid
    need = walk_bytes(batch, h * w, MATRICES_PER_IMAGE if training else MATRICES_PER_IMAGE_INFERENCE)
    have = available_bytes(device) if limit is None else int(limit)
    if need > have:
        fix = ("Use a smaller --crop-size or --batch-size." if training else
               "Use --window (sliding windows) or smaller --scales.")
        raise UserError(
            f"{'--crop-size' if training else '--scales'}: the URSS random walk on a {h}×{w} feature grid needs about "
            f"{need / 2**30:.2f} GiB for {batch} images ({h * w}² entries each), more than the {have / 2**30:.2f} GiB "
            f"free on {device}. {fix}"
        )


class RandomWalk(nn.Module):
    """The random-walk block (module docstring). ``forward(f)``: ``B×D×h×w`` → ``(f^L B×D×h×w, E B×N×N)``.

    Args:
        channels: D.
        form: ``code`` (query/key/value, D/8 key channels) or ``paper`` (parameter-free energy).
        key_channels: channels of ``W_q``/``W_k`` (default ``max(D // 8, 1)``: 64 for D = 512).
        memory_limit: bytes the walk may use (None: the device's free memory), checked per forward.
    """

    def __init__(self, channels: int, form: str = "code", key_channels: int | None = None, memory_limit: int | None = None):
        super().__init__()
        if form not in WALK_FORMS:
            raise UserError(f"--walk {form}: unknown random-walk form. Choose one of: {', '.join(WALK_FORMS)}.")
        self.form = form
        self.memory_limit = memory_limit
        if form == "code":
            kc = key_channels or max(channels // 8, 1)
            self.query = nn.Conv2d(channels, kc, 1)
            self.key = nn.Conv2d(channels, kc, 1)
            self.value = nn.Conv2d(channels, channels, 1)
        self.alpha = nn.Parameter(torch.zeros(1))

    def energy(self, f: Tensor) -> Tensor:
        """``E`` (``B×N×N``) of features ``f`` (``B×D×h×w``): ``E_ij = q_i · k_j`` (code) or ``f_i · f_j``.

        Always float32 (float64 for float64 features), also under float16 autocast: the entries are sums of
        D products and overflow float16 (65504) for features of moderate size (D = 512 entries of 12 do)."""
        b = f.shape[0]
        if self.form == "code":
            q = self.query(f).reshape(b, -1, f.shape[2] * f.shape[3])
            k = self.key(f).reshape(b, -1, f.shape[2] * f.shape[3])
        else:
            q = k = f.reshape(b, f.shape[1], -1)
        dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=f.device.type, enabled=False):
            return torch.bmm(q.transpose(1, 2).to(dtype), k.to(dtype))

    def forward(self, f: Tensor) -> tuple[Tensor, Tensor]:
        b, d, h, w = f.shape
        check_walk_memory(b, (h, w), f.device, self.memory_limit, training=torch.is_grad_enabled())
        e = self.energy(f)
        p = torch.softmax(e, dim=-1)
        v = self.value(f) if self.form == "code" else f
        walked = torch.bmm(v.reshape(b, d, h * w), p.transpose(1, 2).to(v.dtype)).reshape(b, d, h, w)
        return self.alpha.to(walked.dtype) * walked + f, e


__all__ = ["MATRICES_PER_IMAGE", "MATRICES_PER_IMAGE_INFERENCE", "WALK_FORMS", "RandomWalk", "available_bytes", "check_walk_memory", "walk_bytes"]
