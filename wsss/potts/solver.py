"""Soft pseudo-label solver of self-labeling (self-labeling.md §6, the paper's Appendix A).

For fixed predictions ``σ`` it minimizes, per image and summed over the batch,

    E(y) = η Σ_{p∈V∖S} CE(y_p, σ_p) + λ Σ_{pq∈N} w_pq P(y_p, y_q),      y_p = ȳ_p on S,

over ``y_p = softmax(v_p)``. Seeds are reset at the start of every step (``y`` is overwritten by the
one-hot seed on ``S``), so they act as boundary conditions through the pairwise term; pairs with both
pixels in ``S`` (and pairs leaving ``V``) are dropped.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from wsss.potts.crossentropy import get_cross_entropy, safe_log
from wsss.potts.errors import PottsError
from wsss.potts.neighbourhoods import (
    DEFAULT_BANDWIDTH,
    DEFAULT_DN_SIGMA_RGB,
    DEFAULT_DN_SIGMA_XY,
    NEIGHBOURHOODS,
    GridNeighbourhood,
    grid_neighbourhood,
)
from wsss.potts.relaxations import SECOND_ORDER, get_relaxation

#: Value of unlabeled pixels in seed maps (notation.md).
UNLABELED = 255
#: Optimizers accepted by :class:`SolverConfig`.
OPTIMIZERS = ("sgd", "adam", "nesterov")


@dataclass
class SolverConfig:
    """All options of :func:`solve_pseudolabels`, with their defaults and where they come from."""

    steps: int = 200
    lr: float = 0.075
    optimizer: str = "sgd"
    levels: int = 0
    min_size: int = 16
    coarse_steps: int | None = None
    momentum: float = 0.9
    eta: float = 0.3
    lam: float = 6.0
    relaxation: str = "collision-divergence"
    ce: str = "collision"
    neighbourhood: str = "nn4"
    bandwidth: float = DEFAULT_BANDWIDTH
    diagonal_weighting: bool = True
    dn_sigma_xy: float = DEFAULT_DN_SIGMA_XY
    dn_sigma_rgb: float = DEFAULT_DN_SIGMA_RGB
    init: str = "logits"
    weight_offset: float = 0.0


def paper_config(**overrides) -> SolverConfig:
    """The paper's solver setting: plain GD on ``v``, 200 steps, lr 0.075, single level."""
    base = dict(steps=200, lr=0.075, optimizer="sgd", levels=0)
    base.update(overrides)
    return SolverConfig(**base)


@dataclass
class _Level:
    nb: GridNeighbourhood
    seed_mask: Tensor  # B×1×H×W bool
    seed_onehot: Tensor  # B×K×H×W float
    seed_log: Tensor  # B×K×H×W float (safe log of the one-hot)
    unary: Tensor  # B×1×H×W float: η on V∖S (block counts on coarse levels), else 0
    log_sigma: Tensor | None  # B×K×H×W float
    v0: Tensor  # B×K×H×W float


def _block_sum(x: Tensor) -> Tensor:
    """Sum over 2×2 blocks (zero-padded to even size). x: ``B×C×H×W`` -> ``B×C×⌈H/2⌉×⌈W/2⌉``."""
    h, w = x.shape[-2:]
    x = F.pad(x, (0, w % 2, 0, h % 2))
    return F.avg_pool2d(x, 2) * 4.0


def _coarsen_level(lv: _Level) -> _Level:
    counts = _block_sum(lv.seed_onehot * lv.seed_mask)
    seed_mask = counts.sum(1, keepdim=True) > 0
    k = counts.shape[1]
    onehot = F.one_hot(counts.argmax(1), k).permute(0, 3, 1, 2).to(counts.dtype) * seed_mask
    unary = _block_sum(lv.unary) * ~seed_mask
    log_sigma = None
    if lv.log_sigma is not None:
        wsum = _block_sum(lv.unary)
        psum = _block_sum(lv.log_sigma.exp() * lv.unary)
        sigma = torch.where(wsum > 0, psum / wsum.clamp_min(1e-30), torch.full_like(psum, 1.0 / k))
        log_sigma = safe_log(sigma)
    v0 = _block_sum(lv.v0) / 4.0
    nb = lv.nb.coarsen().drop_pairs_within(seed_mask[:, 0])
    return _Level(nb, seed_mask, onehot, safe_log(onehot), unary, log_sigma, v0)


def _labels(v: Tensor, lv: _Level) -> tuple[Tensor, Tensor]:
    log_y = torch.where(lv.seed_mask, lv.seed_log, torch.log_softmax(v, 1))
    y = torch.where(lv.seed_mask, lv.seed_onehot, log_y.exp())
    return y, log_y


def _optimize(lv: _Level, v: Tensor, steps: int, cfg: SolverConfig, relax, ce) -> Tensor:
    if cfg.optimizer == "pmd":
        return _optimize_pmd(lv, v, steps, cfg, relax, ce)
    v = v.detach().clone().requires_grad_(True)
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD([v], lr=cfg.lr, momentum=0.0)
    elif cfg.optimizer == "nesterov":
        opt = torch.optim.SGD([v], lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    elif cfg.optimizer == "adam":
        opt = torch.optim.Adam([v], lr=cfg.lr)
    else:
        raise PottsError(f"--optimizer: unknown optimizer {cfg.optimizer!r}. Choose one of {OPTIMIZERS}.")
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        y, log_y = _labels(v, lv)
        e = cfg.lam * lv.nb.energy(y, relax).sum()
        if lv.log_sigma is not None and cfg.eta > 0:
            e = e + (lv.unary[:, 0] * ce(log_y, lv.log_sigma)).sum()
        e.backward()
        opt.step()
    return v.detach()


def _energy(lv: _Level, y: Tensor, log_y: Tensor, cfg: SolverConfig, relax, ce) -> Tensor:
    e = cfg.lam * lv.nb.energy(y, relax).sum()
    if lv.log_sigma is not None and cfg.eta > 0:
        e = e + (lv.unary[:, 0] * ce(log_y, lv.log_sigma)).sum()
    return e


def _optimize_pmd(lv: _Level, v: Tensor, steps: int, cfg: SolverConfig, relax, ce) -> Tensor:
    scale = 1.0 / (cfg.lam * lv.nb.degree() + lv.unary + 1e-30)
    v = v.detach().clone()
    buf = torch.zeros_like(v)
    mu = cfg.momentum
    for _ in range(steps):
        look = v + mu * buf
        with torch.no_grad():
            y0, log_y0 = _labels(look, lv)
        y = y0.clone().requires_grad_(True)
        log_y = log_y0 + (y - y0) / y0.clamp_min(1e-30)
        e = _energy(lv, y, log_y, cfg, relax, ce)
        (g,) = torch.autograd.grad(e, y)
        step = -cfg.lr * scale * g
        buf = mu * buf + step
        v = v + buf
    return v


def solve_pseudolabels(logits: Tensor | None, seeds: Tensor, image: Tensor,
                       config: SolverConfig | None = None, valid: Tensor | None = None) -> Tensor:
    """Solve for soft pseudo-labels.

    Args:
        logits: ``B×K×H×W`` float network logits at image size, or ``None`` (uniform init, no unary).
        seeds: ``B×H×W`` int64 seed labels, 255 = unlabeled.
        image: ``B×3×H×W`` float RGB 0–255.
        config: :class:`SolverConfig`.
        valid: optional ``B×H×W`` bool validity mask.

    Returns ``B×K×H×W`` probabilities (float), detached, on the logits' device.
    """
    cfg = config or SolverConfig()
    relax = get_relaxation(cfg.relaxation)
    ce = get_cross_entropy(cfg.ce)
    with torch.inference_mode(False), torch.enable_grad():
        b, _, h, w = image.shape
        if logits is None:
            raise NotImplementedError
        logits = logits.detach().clone()
        k = logits.shape[1]
        dtype = logits.dtype
        image = image.detach().clone().to(dtype)
        seeds = seeds.detach().clone().to(logits.device)
        valid_t = torch.ones(b, h, w, dtype=torch.bool, device=logits.device) if valid is None else valid.detach().clone().bool()
        seed_mask = (seeds != UNLABELED) & valid_t
        onehot = F.one_hot(torch.where(seed_mask, seeds, 0), k).permute(0, 3, 1, 2).to(dtype) * seed_mask[:, None]
        nb = grid_neighbourhood(image, cfg.neighbourhood, cfg.bandwidth, cfg.diagonal_weighting, valid_t,
                                cfg.weight_offset).drop_pairs_within(seed_mask)
        unary = (cfg.eta * (valid_t & ~seed_mask)[:, None]).to(dtype)
        log_sigma = torch.log_softmax(logits, 1)
        v0 = logits if cfg.init == "logits" else torch.zeros_like(logits)
        lv = _Level(nb, seed_mask[:, None], onehot, safe_log(onehot), unary, log_sigma, v0)
        pyramid = [lv]
        while len(pyramid) <= cfg.levels and min(pyramid[-1].seed_mask.shape[-2:]) > cfg.min_size:
            pyramid.append(_coarsen_level(pyramid[-1]))
        v = pyramid[-1].v0
        for i in range(len(pyramid) - 1, -1, -1):
            lv = pyramid[i]
            if i < len(pyramid) - 1:
                hh, ww = lv.v0.shape[-2:]
                v = v.repeat_interleave(2, -2).repeat_interleave(2, -1)[..., :hh, :ww]
            steps = cfg.steps if i == 0 else (cfg.coarse_steps or cfg.steps)
            v = _optimize(lv, v, steps, cfg, relax, ce)
            if i > 0:  # prolongate log-probabilities (seed nodes carry their one-hot, clamped)
                y, _ = _labels(v, lv)
                v = torch.log(y.clamp_min(1e-4))
        y, _ = _labels(v, pyramid[0])
    return y.detach()


def soft_jaccard(a: Tensor, b: Tensor) -> Tensor:
    """Soft Jaccard ``Σ min(a, b) / Σ max(a, b)`` over all entries but the batch axis.

    a, b: ``B×K×H×W`` float soft label maps. Returns ``B`` (self-labeling.md §6).
    """
    return torch.minimum(a, b).flatten(1).sum(1) / torch.maximum(a, b).flatten(1).sum(1)
