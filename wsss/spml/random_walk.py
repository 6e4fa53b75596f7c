"""Random-walk pseudo-labels of SPML (Ke et al., ICLR 2021, "Inference and testing", after Ahn & Kwak 2018;
docs/methods.md §10.5).

Per training image, on the grid at 1/8 of the image size (``n = h₈·w₈`` cells):

- **Affinity** over all pairs of cells, from the unit embeddings ``ê`` (the embedding at stride 4 resized
  bilinearly to the grid, then unit-normalised), averaged over the image and its horizontal mirror::

      A_ij = exp(β (ê_iᵀ ê_j − 1)),   β = power · concentration = 20 · 5 = 100

  (the paper's "20 and 5" are this power and concentration). ``A`` is symmetric, ``A_ii = 1``.
- **Transition** ``T = A / colsum(A)`` (every column sums to 1), raised to ``2^squarings`` (the paper's
  "6 iterations": T squared 6 times, 64 steps).
- **Propagation** ``v ← v T^64`` of the ``K × n`` class scores ``v``: the initial classifier's softmax averaged
  over the image and its mirror (or given scores: CAMs with a background, the tag pipeline), each class divided
  by its spatial maximum, classes absent from the seed
  map set to 0. Column j of ``v T`` is a weighted mean of the scores with weights ``A_ij / Σ_k A_kj``, so
  the scores stay in [0, 1] and absent classes stay 0.

Two ways to apply ``T^(2^s)`` give the same result in exact arithmetic (:func:`walk`): ``squaring`` (square
``T`` s times, ``s·n³`` multiply-adds; the paper's form) and ``steps`` (``v ← v T`` 2^s times,
``2^s·K·n²``); ``auto`` takes the cheaper one.

Resizes use bilinear interpolation with ``align_corners=True`` (the toolkit's convention for network
outputs, docs/methods.md §1.1); logits are resized to the grid before the softmax.
All functions are batched tensor code (B images of one size), the same on CPU and CUDA.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from wsss.crf import CRFParams
from wsss.inference import scaled_size
from wsss.validation import check_numbers

#: DenseCRF applied to the walk's distributions at image size (the SPML code: 10 iterations; Gaussian weight 3,
#: xy 1; bilateral weight 4, xy 67, rgb 3; positions in pixels, colours RGB 0–255)
SPML_CRF = CRFParams(gauss_sxy=1.0, gauss_compat=3.0, bi_sxy=67.0, bi_srgb=3.0, bi_compat=4.0, iterations=10)

#: ways of applying T^(2^s) (:func:`walk`)
WALK_METHODS = ("auto", "squaring", "steps")


@dataclass(frozen=True)
class RandomWalkConfig:
    """Options of the random walk (defaults: the SPML paper and code).

    Attributes:
        power: exponent of the affinity (the paper's 20).
        concentration: the paper's 5; ``A = exp(concentration (ê_iᵀê_j − 1))^power``.
        squarings: T is squared this many times: ``2^squarings`` steps (the paper's 6 → 64).
        grid_scale: the walk's grid relative to the image size (1/8).
        method: ``squaring``, ``steps`` or ``auto`` (the cheaper; same result).
    """

    power: float = 20.0
    concentration: float = 5.0
    squarings: int = 6
    grid_scale: float = 0.125
    method: str = "auto"

    def __post_init__(self) -> None:
        check_numbers([
            ("--rw-power", self.power, 0, None, {"low_open": True}),
            ("--rw-concentration", self.concentration, 0, None, {"low_open": True}),
            ("--rw-squarings", self.squarings, 0, 16, {"integer": True}),
            ("--rw-grid-scale", self.grid_scale, 0, 1, {"low_open": True}),
        ])
        if self.method not in WALK_METHODS:
            from wsss.errors import UserError

            raise UserError(f"--rw-method {self.method}: choose one of {', '.join(WALK_METHODS)}.")

    @property
    def beta(self) -> float:
        """``power · concentration`` (100 by default)."""
        return float(self.power) * float(self.concentration)

    @property
    def steps(self) -> int:
        """``2^squarings`` (64 by default)."""
        return 2 ** int(self.squarings)

    def to_dict(self) -> dict:
        return asdict(self)


def affinity(embedding: Tensor, beta: float) -> Tensor:
    """All-pairs affinity ``A_ij = exp(β (ê_iᵀ ê_j − 1))``.

    Args:
        embedding: ``B×d×n`` float, unit along dim 1.
        beta: ``power · concentration``.

    Returns:
        ``B×n×n`` float (symmetric, diagonal 1, entries in (0, 1]).
    """
    gram = torch.bmm(embedding.transpose(1, 2), embedding)
    return torch.exp(beta * (gram.clamp(max=1.0) - 1.0))


def transition(aff: Tensor) -> Tensor:
    """``T = A / colsum(A)``: every column sums to 1.

    Args:
        aff: ``B×n×n`` non-negative float with a positive diagonal.

    Returns:
        ``B×n×n`` float, ``T[b, i, j] = A[b, i, j] / Σ_k A[b, k, j]``.
    """
    return aff / aff.sum(dim=1, keepdim=True)


def walk(scores: Tensor, trans: Tensor, squarings: int, method: str = "auto") -> Tensor:
    """``v T^(2^squarings)``.

    Args:
        scores: ``B×K×n`` float, the class scores ``v``.
        trans: ``B×n×n`` float, the transition matrix ``T``.
        squarings: s; the walk takes ``2^s`` steps.
        method: ``squaring`` (T squared s times, then one product), ``steps`` (2^s products ``v ← v T``)
            or ``auto`` (the one with fewer multiply-adds: ``s·n³`` against ``2^s·K·n²``).

    Returns:
        ``B×K×n`` float.
    """
    k, n = scores.shape[1], trans.shape[-1]
    if method == "auto":
        method = "squaring" if squarings * n <= (2 ** squarings) * k else "steps"
    if method == "squaring":
        power = trans
        for _ in range(squarings):
            power = torch.bmm(power, power)
        return torch.bmm(scores, power)
    if method != "steps":
        raise ValueError(f"method must be one of {', '.join(WALK_METHODS)}, got '{method}'")
    v = scores
    for _ in range(2 ** squarings):
        v = torch.bmm(v, trans)
    return v


def seeded_scores(probs: Tensor, present: Tensor) -> Tensor:
    """The walk's starting scores: each class divided by its spatial maximum, absent classes 0.

    Args:
        probs: ``B×K×h×w`` float probabilities.
        present: ``B×K`` bool, the classes of each image's seed map.

    Returns:
        ``B×K×h×w`` float in [0, 1].
    """
    peak = probs.flatten(2).amax(dim=2).clamp_min(torch.finfo(probs.dtype).tiny)
    return probs / peak[:, :, None, None] * present[:, :, None, None].to(probs.dtype)


def to_grid(x: Tensor, size: tuple[int, int]) -> Tensor:
    """``B×C×h×w`` → ``B×C×size`` (bilinear, ``align_corners=True``; unchanged when already that size)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


#: what the walk needs from the network: ``B×3×H×W`` RGB 0–255 → (embedding ``B×d×h×w``, logits ``B×K×h×w``)
EmbedFn = Callable[[Tensor], tuple[Tensor, Tensor]]


def check_walk_memory(size: tuple[int, int], config: RandomWalkConfig, device=None) -> None:
    """Refuse an image whose ``n×n`` walk matrices cannot fit (three float32 matrices)."""
    from wsss.validation import check_allocation

    h, w = scaled_size(size, config.grid_scale)
    n = h * w
    check_allocation(3.0 * 4 * n * n, f"the random walk over {h}×{w} cells of a {size[1]}×{size[0]} image",
                     "Use a smaller --rw-grid-scale or smaller images.", device)


def random_walk_scores(net: EmbedFn, image: Tensor, present: Tensor, config: RandomWalkConfig = RandomWalkConfig(),
                       scores: Tensor | None = None) -> Tensor:
    """The propagated class scores of a batch of images (module docstring), on the walk's grid.

    Args:
        net: the embedding network (:data:`EmbedFn`); called on the image and on its mirror.
        image: ``B×3×H×W`` float RGB 0–255.
        present: ``B×K`` bool, the classes present in each image's seed map.
        config: walk options.
        scores: ``B×K×H'×W'`` non-negative class scores to propagate instead of the initial classifier's
            softmax (the SPML tag pipeline: CAMs with a background score), resized to the grid (bilinear,
            ``align_corners=True``); then, as the softmax, each class divided by its maximum, absent classes 0.

    Returns:
        ``B×K×h₈×w₈`` float32 scores in [0, 1], ``(h₈, w₈) = scaled_size((H, W), grid_scale)``.
    """
    grid = scaled_size(tuple(image.shape[-2:]), config.grid_scale)
    aff = None
    probs = None
    for mirrored in (False, True):
        emb, logits = net(image.flip(-1) if mirrored else image)
        emb = F.normalize(to_grid(emb.float(), grid), dim=1)
        p = torch.softmax(to_grid(logits.float(), grid), dim=1)
        if mirrored:
            emb, p = emb.flip(-1), p.flip(-1)
        a = affinity(emb.flatten(2), config.beta)
        aff = a if aff is None else (aff + a) / 2
        probs = p if probs is None else (probs + p) / 2
    if scores is not None:
        probs = to_grid(scores.float().to(aff.device), grid)
    v = seeded_scores(probs, present).flatten(2)
    out = walk(v, transition(aff), config.squarings, config.method)
    return out.reshape(*out.shape[:2], *grid)


def walk_probabilities(scores: Tensor, size: tuple[int, int]) -> Tensor:
    """Walk scores → per-pixel distributions at image size: bilinear upsampling (``align_corners=True``),
    then each pixel divided by its sum over classes.

    Args:
        scores: ``B×K×h₈×w₈`` float, non-negative with a positive sum per cell.
        size: ``(H, W)``.

    Returns:
        ``B×K×H×W`` float32, summing to 1 over dim 1 (absent classes exactly 0).
    """
    up = to_grid(scores.float(), size).clamp_min(0.0)
    return up / up.sum(dim=1, keepdim=True).clamp_min(torch.finfo(up.dtype).tiny)


__all__ = ["EmbedFn", "RandomWalkConfig", "SPML_CRF", "WALK_METHODS", "affinity", "check_walk_memory", "random_walk_scores",
           "seeded_scores", "to_grid", "transition", "walk", "walk_probabilities"]
