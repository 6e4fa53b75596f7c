"""Soft pseudo-label solver of self-labeling (docs/methods.md §4.5, the paper's Appendix A).

For fixed predictions ``σ`` it minimizes, per image and summed (not averaged) over the batch,

    E(y) = η Σ_{p∈V∖S} CE(y_p, σ_p) + λ Σ_{pq∈N} w_pq P(y_p, y_q),      y_p = ȳ_p on S,

over ``y_p = softmax(v_p)``. Seeds are reset at the start of every step (``y`` is overwritten by the
one-hot seed on ``S``), so they act as boundary conditions through the pairwise term; pairs with both
pixels in ``S`` and pairs leaving the validity mask ``V`` are dropped.

Optimizers (``SolverConfig.optimizer``):

- ``sgd`` — the paper: plain gradient descent on ``v`` (``torch.optim.SGD``, no momentum), 200 steps,
  lr 0.075, ``v`` initialized with the network logits. Seed information diffuses about a pixel per
  step, so from a poor initialization it is far from the optimum (benchmarks/solver.py).
- ``adam`` — ``torch.optim.Adam`` on ``v`` (200 steps, lr 0.1); for comparison.
- ``mirror`` — **toolkit default**: (1) *convex start* (grid neighbourhoods): ``y`` starts near the
  optimum of the convex surrogate ``η Σ ½‖y_p − σ_p‖² + λ Σ w_pq ½‖y_p − y_q‖²`` (the random walker with
  priors, solved approximately by multigrid-preconditioned CG, :mod:`wsss.potts.linear`), warm-started
  from the initialization; (2) 50 steps (in ``--loss collision`` training 15 at lr 3 after a half-resolution
  start, docs/methods.md §4.5) of Jacobi-preconditioned mirror descent with Nesterov momentum on the
  actual energy: ``v ← v − lr · ∇_y E / (λ d_p + η_p)`` (``d_p`` the weighted degree, per-entry step
  clipped at ``max_step``; per image, momentum is dropped and the step halved whenever the energy
  rises). When the surrogate *is* the energy (``quadratic`` Potts with η = 0, no
  predictions, or the ``quadratic`` CE) step (2) is skipped. Budget chosen by measurement
  (benchmarks/solver.py on four skimage photographs at native size, 1 CPU thread): with the default 6
  CG iterations the convex start reaches 77–96 % soft Jaccard to the exact random walker from a uniform
  initialization (paper setting: 18–30 %) and 95–97 % from noisy logits (paper: 87–96 %) in 0.21–0.22×
  the paper setting's time; ``cg_max_iter=EXACT_CG_MAX_ITER`` (100) reaches 97.6–99.99 % (≥ 99.5 % on
  the 80–96 px crops of tests/test_solver.py) at 2.8× the paper's time. Slowest: large unseeded regions
  enclosed by weak edges.

Seed propagation (no logits): no mirror steps, 5 CG iterations, float32 smoothing by default
(:data:`SEED_PROPAGATION_STEPS` and the two after it; docs/methods.md §4.5), only the seeded classes solved.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from wsss.constants import IGNORE_INDEX
from wsss.errors import UserError
from wsss.potts.crossentropy import collision, collision_with_gradient, get_cross_entropy, safe_log
from wsss.potts.errors import PottsError
from wsss.potts.linear import solve_quadratic
from wsss.potts.neighbourhoods import (
    DEFAULT_BANDWIDTH,
    DEFAULT_DN_SIGMA_RGB,
    DEFAULT_DN_SIGMA_XY,
    NEIGHBOURHOODS,
    GridNeighbourhood,
    make_neighbourhood,
)
from wsss.potts.relaxations import collision_divergence, get_relaxation
from wsss.validation import check_numbers

#: Value of unlabeled pixels in seed maps (:data:`wsss.constants.IGNORE_INDEX`).
UNLABELED = IGNORE_INDEX
#: Optimizers accepted by :class:`SolverConfig` (``--solver-optimizer``).
OPTIMIZERS = ("mirror", "sgd", "adam")
#: Initializations accepted by :class:`SolverConfig` (``--init``).
INITS = ("logits", "uniform")
#: Per-optimizer defaults of ``steps`` and ``lr`` (``sgd``: the paper's 200 steps, lr 0.075).
OPTIMIZER_DEFAULTS = {"sgd": (200, 0.075), "adam": (200, 0.1), "mirror": (50, 1.0)}
#: Default multigrid-CG budget of the convex start (fast: measured in benchmarks/solver.py).
DEFAULT_CG_MAX_ITER = 6
#: Seed propagation (no logits, hence no CE term): the defaults of ``steps`` (``mirror``) and ``cg_dtype``
#: when they are not given. The convex start alone is then the random walker with the toolkit's weights:
#: on 25 CamVid train frames 50 mirror steps on the default relaxation raised the mIoU against dense
#: ground truth by 0.13 (55.02 vs 54.89) at 11.8× the time (docs/methods.md §4.5, benchmarks/solver.py
#: ``--vs-rw``); float32 smoothing is mixed precision and follows the float64 iterates.
SEED_PROPAGATION_STEPS = 0
SEED_PROPAGATION_CG_DTYPE = "float32"
#: Seed propagation: CG iterations of the convex start when ``cg_max_iter`` is not given (5: on 8 CamVid
#: train frames with generated scribbles, 97.2 % soft Jaccard to the exact random walker and the same
#: mIoU as ``random_walker``, 59.64 vs 59.63; 6 iterations: 98.3 %, 59.60, 15 % slower).
SEED_PROPAGATION_CG_MAX_ITER = 5
#: A CG budget that solves the convex problem to the 1e-6 tolerance on photographs (≥ 99.5 % soft Jaccard).
EXACT_CG_MAX_ITER = 100
#: Probabilities are clamped at this value when the convex start is turned into logits ``v``.
START_EPS = 1e-6


@dataclass
class SolverConfig:
    """All options of :func:`solve_pseudolabels`; defaults and their sources.

    Attributes:
        optimizer: ``mirror`` (toolkit default, convex start + preconditioned mirror descent), ``sgd``
            (the paper's plain GD) or ``adam``.
        steps: gradient steps; ``None`` = per optimizer: 200 for ``sgd``/``adam`` (paper), 50 for
            ``mirror`` (toolkit, measured); 0 for ``mirror`` without logits (seed propagation,
            :data:`SEED_PROPAGATION_STEPS`: the convex start alone).
        lr: step size; ``None`` = per optimizer: 0.075 for ``sgd`` (paper), 0.1 for ``adam``, 1.0 for
            ``mirror`` (its steps are normalized by ``λ d_p + η``).
        momentum: Nesterov momentum of ``mirror`` (toolkit, 0.9).
        max_step: largest change of any ``v`` entry in one ``mirror`` step (toolkit, 2.0).
        convex_start: start from the convex surrogate's optimum (grid neighbourhoods only); ``None`` =
            on for ``mirror``, off for ``sgd``/``adam`` (so ``sgd`` reproduces the paper).
        cg_tol, cg_max_iter: stopping rule of the multigrid CG of the convex start (toolkit: relative
            preconditioned residual 1e-6, at most :data:`DEFAULT_CG_MAX_ITER` = 6 iterations — on the
            benchmark photographs this beats the paper setting's agreement in under ¼ of its time;
            :data:`EXACT_CG_MAX_ITER` = 100 reaches ≥ 99.5 % of the exact optimum, benchmarks/solver.py).
            ``cg_max_iter=None``: 6, or :data:`SEED_PROPAGATION_CG_MAX_ITER` = 5 without logits.
        eta: weight η of the CE term. The paper's value was lost in extraction; 0.3 comes from an
            unverified secondary source (docs/methods.md §4.5); on the demo data it beat 0.1 and 1.0.
        lam: weight λ of the Potts term: 60 (toolkit, chosen by evidence; the secondary source's 6 was the
            starting point): on the demo data, collision training with η 0.3 and λ ∈ {1, 2, 6, 20, 60, 200} gave val
            mIoU 56.4 / 61.6 / 65.8 / 71.2 / 72.9 / 72.7 (docs/demo-results.md); on CamVid the offline
            pseudo-labels from one pce model scored 58.1 (λ 6) vs 63.2 (λ 60) mIoU on train, and collision
            training with λ 20 / 60 / 180 gave val mIoU 26.8 / 31.0 / 29.6 (docs/results.md).
        relaxation: Potts relaxation (:data:`wsss.potts.relaxations.RELAXATIONS`); default
            ``collision-divergence``, the paper's recommendation (Table 3).
        ce: CE term (:data:`wsss.potts.crossentropy.CROSS_ENTROPIES`); default ``collision`` (paper's best).
        neighbourhood: ``nn4`` (paper's default and best), ``nn8`` or ``dn`` (``bilinear``/``quadratic`` only).
        bandwidth: colour bandwidth ``s`` of the grid weights (paper: 9 on VOC, 3 on Cityscapes/ADE20k).
        diagonal_weighting: NN8 diagonal pairs × 1/√2 (docs/methods.md §1; toolkit, on).
        dn_sigma_xy: DN spatial bandwidth (the paper's "bandwidth 100").
        dn_sigma_rgb: DN colour bandwidth (not in the paper; rloss's 15, not tuned for DN self-labeling).
        init: ``logits`` (paper: ``v`` starts at the network logits) or ``uniform`` (``v = 0``).
        cg_dtype: working precision of the convex start's CG, ``float64`` or ``float32``; ``None`` =
            ``float64`` with logits (edge weights span many orders of magnitude), ``float32`` for seed
            propagation (:data:`SEED_PROPAGATION_CG_DTYPE`) and in ``--loss collision`` training (≈ 1.7×
            faster, pseudo-labels within 1.5e-4 of the float64 ones on the train-step benchmark batch).
        weight_offset: constant added to every grid weight (0; ``skimage.segmentation.random_walker``
            adds 1e-10, used when comparing with it).
        closed_form: ``mirror`` steps take the energy gradient in closed form where one exists (grid
            neighbourhood, collision divergence, collision CE: the defaults; 2–3× cheaper steps, the
            same pseudo-labels to rounding); ``False``: autograd everywhere (the reference).
        start_downsample: solve the convex start at ``1/f`` resolution (:func:`_coarse_start`) and
            upsample it; the mirror steps stay at full resolution (1: off, the default).
    """

    optimizer: str = "mirror"
    steps: int | None = None
    lr: float | None = None
    momentum: float = 0.9
    max_step: float = 2.0
    convex_start: bool | None = None
    cg_tol: float = 1e-6
    cg_max_iter: int | None = None
    eta: float = 0.3
    lam: float = 60.0
    relaxation: str = "collision-divergence"
    ce: str = "collision"
    neighbourhood: str = "nn4"
    bandwidth: float = DEFAULT_BANDWIDTH
    diagonal_weighting: bool = True
    dn_sigma_xy: float = DEFAULT_DN_SIGMA_XY
    dn_sigma_rgb: float = DEFAULT_DN_SIGMA_RGB
    init: str = "logits"
    weight_offset: float = 0.0
    cg_dtype: str | None = None
    closed_form: bool = True
    start_downsample: int = 1

    def resolved(self, seeds_only: bool = False) -> "SolverConfig":
        """A copy with ``steps``, ``lr``, ``convex_start`` and ``cg_dtype`` filled in and every name
        validated (``PottsError``, a ``ValueError``, on unknown names or DN with a non-second-order
        relaxation). ``seeds_only``: a solve without logits (seed propagation), whose unset ``steps``
        (``mirror``) and ``cg_dtype`` take :data:`SEED_PROPAGATION_STEPS` and
        :data:`SEED_PROPAGATION_CG_DTYPE`."""
        if self.optimizer not in OPTIMIZERS:
            raise PottsError(f"--solver-optimizer: unknown optimizer {self.optimizer!r}. "
                             f"Choose one of {', '.join(OPTIMIZERS)}.")
        if self.cg_dtype not in (None, "float32", "float64"):
            raise PottsError(f"cg_dtype: {self.cg_dtype!r} is not float32 or float64. Choose one of those.")
        if self.init not in INITS:
            raise PottsError(f"--init: unknown initialization {self.init!r}. Choose one of {', '.join(INITS)}.")
        if self.neighbourhood.lower() not in NEIGHBOURHOODS:
            raise PottsError(f"--neighbourhood: unknown neighbourhood {self.neighbourhood!r}. "
                             f"Choose one of {', '.join(NEIGHBOURHOODS)}.")
        get_relaxation(self.relaxation)
        get_cross_entropy(self.ce)
        if self.neighbourhood.lower() == "dn" and self.relaxation not in ("bilinear", "quadratic"):
            raise PottsError(f"--relaxation {self.relaxation}: the dense neighbourhood (dn) supports only "
                             "bilinear and quadratic. Use one of those, or --neighbourhood nn4/nn8.")
        steps, lr = OPTIMIZER_DEFAULTS[self.optimizer]
        if seeds_only and self.optimizer == "mirror":
            steps = SEED_PROPAGATION_STEPS
        cg_dtype = self.cg_dtype or (SEED_PROPAGATION_CG_DTYPE if seeds_only else "float64")
        cg_max_iter = (SEED_PROPAGATION_CG_MAX_ITER if seeds_only else DEFAULT_CG_MAX_ITER) \
            if self.cg_max_iter is None else self.cg_max_iter
        out = replace(self, neighbourhood=self.neighbourhood.lower(), cg_dtype=cg_dtype, cg_max_iter=cg_max_iter,
                      steps=steps if self.steps is None else int(self.steps),
                      lr=lr if self.lr is None else float(self.lr),
                      convex_start=(self.optimizer == "mirror") if self.convex_start is None else bool(self.convex_start))
        try:
            check_numbers([
                ("steps", out.steps, 0, None, {"integer": True}),
                ("lr", out.lr, 0, None, {"low_open": True}),
                ("momentum", out.momentum, 0, 1, {"high_open": True}),
                ("max_step", out.max_step, 0, None, {"low_open": True}),
                ("cg_tol", out.cg_tol, 0, None),
                ("cg_max_iter", out.cg_max_iter, 0, None, {"integer": True}),
                ("eta", out.eta, 0, None),
                ("lam (λ)", out.lam, 0, None),
                ("bandwidth", out.bandwidth, 0, None, {"low_open": True, "reason": "the grid weights divide by s²"}),
                ("dn_sigma_xy", out.dn_sigma_xy, 0, None, {"low_open": True}),
                ("dn_sigma_rgb", out.dn_sigma_rgb, 0, None, {"low_open": True}),
                ("weight_offset", out.weight_offset, 0, None),
                ("start_downsample", out.start_downsample, 1, None, {"integer": True}),
            ])
        except UserError as exc:
            raise PottsError(str(exc)) from None
        return out


def paper_config(**overrides) -> SolverConfig:
    """The paper's solver setting (Appendix A): plain GD on ``v``, 200 steps, lr 0.075, logits init."""
    base = dict(optimizer="sgd", steps=200, lr=0.075, convex_start=False)
    base.update(overrides)
    return SolverConfig(**base)


@dataclass
class _Problem:
    nb: object  # GridNeighbourhood or DenseNeighbourhood (seed–seed and invalid pairs dropped)
    seed_mask: Tensor  # B×1×H×W bool
    seed_onehot: Tensor  # B×K×H×W float
    seed_log: Tensor  # B×K×H×W float, safe log of the one-hot
    unary: Tensor  # B×1×H×W float: η on V∖S (0 without predictions)
    log_sigma: Tensor | None  # B×K×H×W float
    relax: object = field(repr=False, default=None)
    ce: object = field(repr=False, default=None)
    lam: float = 1.0
    sigma: Tensor | None = field(repr=False, default=None)  # exp(log_sigma), made when first needed
    closed_form: bool = True  # SolverConfig.closed_form
    free: Tensor | None = field(repr=False, default=None)  # B×1×H×W float: 1 off the seeds, made when first needed

    def labels(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """``(y, ln y)`` from ``v`` (``B×K×H×W``) with the seeds reset to their one-hot."""
        log_y = torch.where(self.seed_mask, self.seed_log, torch.log_softmax(v, 1))
        y = torch.where(self.seed_mask, self.seed_onehot, log_y.exp())
        return y, log_y

    def energy(self, y: Tensor, log_y: Tensor) -> Tensor:
        """Per-image ``E`` (``B``); the solver minimizes their sum."""
        e = self.lam * self.nb.energy(y, self.relax)
        if self.log_sigma is not None:
            e = e + (self.unary[:, 0] * self.ce(log_y, self.log_sigma)).flatten(1).sum(1)
        return e

    def analytic(self) -> bool:
        """Whether :meth:`energy_and_gradient` uses its closed form here (``closed_form`` and a grid
        neighbourhood, collision divergence, collision CE or no CE term: the defaults); otherwise autograd."""
        return (self.closed_form and isinstance(self.nb, GridNeighbourhood) and self.relax is collision_divergence
                and (self.log_sigma is None or self.ce is collision))

    def probabilities(self, v: Tensor) -> Tensor:
        """``y`` (``B×K×H×W``) from ``v`` with the seeds reset, without ``ln y`` (the closed form's input;
        a multiply-add instead of ``torch.where``, several times cheaper on the CPU)."""
        if self.free is None:
            self.free = (~self.seed_mask).to(v.dtype)
        return torch.addcmul(self.seed_onehot, self.free, torch.softmax(v, 1))

    def energy_and_gradient(self, y: Tensor, log_y: Tensor | None) -> tuple[Tensor, Tensor]:
        """Per-image ``E`` (``B``) and ``∂E/∂y`` (``B×K×H×W``, a new tensor) at ``y`` (``B×K×H×W``, seeds
        reset) with ``ln y`` (same shape; unused, may be None, when :meth:`analytic`). The gradient is
        with respect to ``y`` itself, not ``v`` (mirror descent)."""
        if self.analytic():
            e, g = self.nb.collision_divergence_with_gradient(y)
            e, g = self.lam * e, g.mul_(self.lam)
            if self.log_sigma is not None:
                if self.sigma is None:
                    self.sigma = self.log_sigma.exp()
                ce, g_ce = collision_with_gradient(y, self.sigma)
                e = e + (self.unary[:, 0] * ce).flatten(1).sum(1)
                g = g.addcmul_(self.unary, g_ce)
            return e, g
        tiny = torch.finfo(y.dtype).tiny
        y0, log_y0 = y.detach(), log_y.detach()
        y = y0.clone().requires_grad_(True)
        # ln y with d(ln y)/dy = 1/y, evaluated exactly at y0 (gradient with respect to y, not v)
        e = self.energy(y, log_y0 + (y - y0) / y0.clamp_min(tiny))
        (g,) = torch.autograd.grad(e.sum(), y)
        return e.detach(), g


def _optimize_torch(pb: _Problem, v: Tensor, cfg: SolverConfig) -> Tensor:
    v = v.detach().clone().requires_grad_(True)
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD([v], lr=cfg.lr, momentum=0.0)
    else:
        opt = torch.optim.Adam([v], lr=cfg.lr)
    for _ in range(cfg.steps):
        opt.zero_grad(set_to_none=True)
        pb.energy(*pb.labels(v)).sum().backward()
        opt.step()
    return v.detach()


def _optimize_mirror(pb: _Problem, v: Tensor, cfg: SolverConfig) -> Tensor:
    tiny = torch.finfo(v.dtype).tiny
    scale = 1.0 / (pb.lam * pb.nb.degree().to(v.dtype) + pb.unary).clamp_min(tiny)
    v = v.detach().clone()
    buf = torch.zeros_like(v)
    lr = torch.full((v.shape[0], 1, 1, 1), cfg.lr, dtype=v.dtype, device=v.device)
    analytic = pb.analytic()
    prev = None
    for _ in range(cfg.steps):
        with torch.no_grad():
            ahead = torch.add(v, buf, alpha=cfg.momentum)
            if analytic:
                e, g = pb.energy_and_gradient(pb.probabilities(ahead), None)
        if not analytic:
            e, g = pb.energy_and_gradient(*pb.labels(ahead))
        with torch.no_grad():
            if prev is not None:  # per-image function-value restart: drop momentum, halve the step
                up = (e > prev)[:, None, None, None]
                buf.mul_(~up)
                lr = torch.where(up, 0.5 * lr, lr)
            prev = e
            step = g.mul_(scale).mul_(-lr).clamp_(-cfg.max_step, cfg.max_step)  # g is a new tensor
            buf.mul_(cfg.momentum).add_(step)
            v.add_(buf)
    return v


def _check_inputs(logits: Tensor | None, seeds: Tensor, image: Tensor, valid: Tensor | None,
                  num_classes: int | None) -> int:
    if image.dim() != 4 or image.shape[1] != 3:
        raise PottsError(f"image: expected B×3×H×W RGB (0–255), got shape {tuple(image.shape)}. Pass RGB images.")
    b, _, h, w = image.shape
    if seeds.shape != (b, h, w):
        raise PottsError(f"seeds: expected shape {(b, h, w)} (B×H×W, 255 = unlabeled), got {tuple(seeds.shape)}. "
                         "Give one seed map per image, at image size.")
    if seeds.dtype.is_floating_point or seeds.dtype == torch.bool:
        raise PottsError(f"seeds: expected an integer tensor, got {seeds.dtype}. Pass int64 labels.")
    if logits is not None:
        if logits.dim() != 4 or logits.shape[0] != b or logits.shape[2:] != (h, w):
            raise PottsError(f"logits: expected B×K×H×W with B, H, W = {(b, h, w)}, got {tuple(logits.shape)}. "
                             "Upsample the logits to image size first.")
        k = logits.shape[1]
        if num_classes is not None and num_classes != k:
            raise PottsError(f"num_classes: {num_classes} disagrees with the logits' {k} channels. Drop it.")
    elif num_classes is None:
        raise PottsError("logits: None needs num_classes. Pass num_classes=K (uniform initialization).")
    else:
        k = int(num_classes)
    if k < 1:
        raise PottsError(f"num_classes: must be ≥ 1, got {k}.")
    bad = (seeds != UNLABELED) & ((seeds < 0) | (seeds >= k))
    if bool(bad.any()):
        v = int(seeds[bad][0])
        raise PottsError(f"seeds: label {v} is outside 0..{k - 1} (255 = unlabeled). "
                         "Check the number of classes or the seed file.")
    if valid is not None and tuple(valid.shape[-2:]) != (h, w):
        raise PottsError(f"valid: expected a B×H×W mask of shape {(b, h, w)}, got {tuple(valid.shape)}.")
    return k


def _setup(logits: Tensor | None, seeds: Tensor, image: Tensor, valid: Tensor | None, k: int,
           cfg: SolverConfig) -> tuple[_Problem, Tensor | None, Tensor, Tensor]:
    """The energy of :func:`solve_pseudolabels` for checked inputs and a resolved ``cfg``: ``(problem,
    logits z (B×K×H×W, the working dtype, or None), seeds (B×H×W int64), valid (B×H×W bool))`` on the
    logits' (else the image's) device, in the logits' dtype (float32 / float64; without logits float64
    only for a float64 image)."""
    device = logits.device if logits is not None else image.device
    if logits is not None:
        dtype = logits.dtype if logits.dtype in (torch.float32, torch.float64) else torch.float32
    else:
        dtype = torch.float64 if image.dtype == torch.float64 else torch.float32
    b, _, h, w = image.shape
    image = image.detach().to(device=device, dtype=dtype).clone()
    seeds = seeds.detach().to(device=device, dtype=torch.int64).clone()
    valid_t = (torch.ones(b, h, w, dtype=torch.bool, device=device) if valid is None
               else valid.detach().to(device).reshape(b, h, w).bool().clone())
    seed_mask = (seeds != UNLABELED) & valid_t
    onehot = torch.zeros(b, k, h, w, dtype=dtype, device=device)
    onehot.scatter_(1, torch.where(seed_mask, seeds, 0)[:, None], seed_mask[:, None].to(dtype))
    nb = make_neighbourhood(image, cfg.neighbourhood, bandwidth=cfg.bandwidth,
                            diagonal_weighting=cfg.diagonal_weighting, valid=valid_t,
                            weight_offset=cfg.weight_offset, sigma_xy=cfg.dn_sigma_xy,
                            sigma_rgb=cfg.dn_sigma_rgb).drop_pairs_within(seed_mask)
    if logits is not None:
        z = logits.detach().to(device=device, dtype=dtype).clone()
        log_sigma = torch.log_softmax(z, 1) if cfg.eta > 0 else None
    else:
        z, log_sigma = None, None
    unary = (cfg.eta * (valid_t & ~seed_mask)[:, None]).to(dtype)
    if log_sigma is None:
        unary = torch.zeros_like(unary)
    pb = _Problem(nb, seed_mask[:, None], onehot, safe_log(onehot), unary, log_sigma, get_relaxation(cfg.relaxation),
                  get_cross_entropy(cfg.ce), cfg.lam, closed_form=cfg.closed_form)
    return pb, z, seeds, valid_t


def solution_energy(y: Tensor, logits: Tensor | None, seeds: Tensor, image: Tensor,
                    config: SolverConfig | None = None, valid: Tensor | None = None) -> Tensor:
    """Per-image energy ``E(y)`` (module docstring) that :func:`solve_pseudolabels` minimizes, with the
    seeds of ``y`` reset to their one-hot and ``ln y`` clamped (:func:`~wsss.potts.crossentropy.safe_log`);
    for comparing solutions (lower is better).

    y: ``B×K×H×W`` float probabilities; logits, seeds, image, config, valid: as for
    :func:`solve_pseudolabels`. Returns ``B``, in the logits' dtype (``y`` is cast to it).
    """
    cfg = (config or SolverConfig()).resolved(seeds_only=logits is None)
    k = _check_inputs(logits, seeds, image, valid, None if logits is not None else y.shape[1])
    with torch.no_grad():
        pb, _, _, _ = _setup(logits, seeds, image, valid, k, cfg)
        yy = torch.where(pb.seed_mask, pb.seed_onehot, y.detach().to(pb.seed_onehot))
        return pb.energy(yy, safe_log(yy))


def solve_pseudolabels(logits: Tensor | None, seeds: Tensor, image: Tensor,
                       config: SolverConfig | None = None, valid: Tensor | None = None,
                       num_classes: int | None = None) -> Tensor:
    """Solve for soft pseudo-labels ``y`` minimizing ``E`` (module docstring), batched.

    Args:
        logits: ``B×K×H×W`` float32/float64 network logits at image size (detached here), or ``None``:
            uniform initialization and no CE term (η is ignored; needs ``num_classes``).
        seeds: ``B×H×W`` integer seed labels in ``0..K-1``, 255 = unlabeled (other values: ``PottsError``).
        image: ``B×3×H×W`` float RGB in 0–255 (edge weights).
        config: :class:`SolverConfig` (default: toolkit defaults).
        valid: optional ``B×H×W`` bool validity mask (crop padding = False). Pixels outside get no CE
            term, no pairs, and their ``y`` is meaningless (the initialization's softmax).
        num_classes: ``K`` when ``logits`` is None.

    Returns ``B×K×H×W`` probabilities, detached, of the logits' dtype (float32 without logits unless
    the image is float64) on the logits' (else the image's) device; exactly one-hot on valid seeds.
    Works under ``torch.no_grad`` / ``torch.inference_mode``: gradients are enabled only on ``v``.
    """
    cfg = (config or SolverConfig()).resolved(seeds_only=logits is None)
    k = _check_inputs(logits, seeds, image, valid, num_classes)
    with torch.inference_mode(False), torch.enable_grad():
        pb, z, seeds, valid_t = _setup(logits, seeds, image, valid, k, cfg)
        image = image.detach().to(pb.seed_onehot)
        nb, seed_mask, onehot, unary, log_sigma = pb.nb, pb.seed_mask[:, 0], pb.seed_onehot, pb.unary, pb.log_sigma
        b, _, h, w = onehot.shape
        dtype, device = onehot.dtype, onehot.device
        from_logits = z is not None and cfg.init == "logits"
        v = z if from_logits else torch.zeros(b, k, h, w, dtype=dtype, device=device)
        steps = cfg.steps
        if cfg.convex_start and cfg.neighbourhood != "dn":
            x0 = torch.softmax(v, 1) if from_logits else None  # None: uniform
            if cfg.start_downsample > 1:
                y0 = _coarse_start(z, seeds, image, valid_t, k, cfg)
            else:
                y0 = _convex_start(nb, seeds, seed_mask, onehot, valid_t, unary, log_sigma, x0, cfg)
            if cfg.cg_dtype == "float32" and not bool(torch.isfinite(y0).all()):
                # the float32 smoothing can still break down on some photographs (CamVid 0001TP_008040:
                # 97 % non-finite): redo the start in float64, the exact form
                y0 = _convex_start(nb, seeds, seed_mask, onehot, valid_t, unary, log_sigma, x0,
                                   replace(cfg, cg_dtype="float64"))
            y0 = y0.clamp_min(START_EPS)
            y0 = y0 / y0.sum(1, keepdim=True)
            exact = cfg.relaxation == "quadratic" and (log_sigma is None or cfg.ce == "quadratic")
            if exact:
                steps = 0
            if steps == 0:  # softmax(ln y0) = y0: skip the round trip through v
                return torch.where(seed_mask[:, None], onehot, y0.to(dtype)).detach()
            v = torch.log(y0).to(dtype)
        if steps > 0:
            run = replace(cfg, steps=steps)
            v = _optimize_mirror(pb, v, run) if cfg.optimizer == "mirror" else _optimize_torch(pb, v, run)
            y, _ = pb.labels(v)
        else:
            y = torch.where(seed_mask[:, None], onehot, torch.softmax(v, 1))
    return y.detach()


def _coarse_start(z: Tensor | None, seeds: Tensor, image: Tensor, valid: Tensor, k: int, cfg: SolverConfig) -> Tensor:
    """The convex start solved at ``1/f`` resolution (``f = cfg.start_downsample``), upsampled.

    Image and logits are averaged over the valid pixels of each ``f×f`` block (adaptive pooling, so any
    size works); a block is valid if any pixel is, and seeded with class ``c`` if its valid seeds are all
    ``c``. The pair weight becomes ``λ/f²``: for a smooth ``y`` a coarse pair sees an ``f``-times larger
    difference over ``f``-times fewer pairs per row, while the unary sum has ``f²``-times fewer pixels, so
    this keeps the convex surrogate's balance (docs/methods.md §4.5). The result is upsampled bilinearly
    (a convex combination, so still on the simplex).

    z: ``B×K×H×W`` logits or None; seeds: ``B×H×W`` int64; image: ``B×3×H×W``; valid: ``B×H×W`` bool.
    Returns ``B×K×H×W`` probabilities of the image's dtype.
    """
    f = cfg.start_downsample
    b, _, h, w = image.shape
    size = (-(-h // f), -(-w // f))
    vf = valid[:, None].to(image.dtype)
    area = F.adaptive_avg_pool2d(vf, size)
    valid_c = area[:, 0] > 0
    norm = area.clamp_min(torch.finfo(image.dtype).tiny)

    def pool(x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(x * vf, size) / norm

    seeded = (seeds != UNLABELED) & valid
    present = F.adaptive_max_pool2d(
        F.one_hot(torch.where(seeded, seeds, 0), k).permute(0, 3, 1, 2).to(image.dtype) * seeded[:, None], size) > 0
    one = present.sum(1) == 1
    seeds_c = torch.where(one, present.to(torch.int64).argmax(1), torch.full_like(one, UNLABELED, dtype=torch.int64))
    coarse = replace(cfg, start_downsample=1, steps=0, lam=cfg.lam / f**2)
    y = solve_pseudolabels(None if z is None else pool(z), seeds_c, pool(image), coarse, valid_c,
                           num_classes=None if z is not None else k)
    return F.interpolate(y.to(image.dtype), size=(h, w), mode="bilinear", align_corners=False)


def _convex_start(nb, seeds: Tensor, seed_mask: Tensor, onehot: Tensor, valid: Tensor, unary: Tensor,
                  log_sigma: Tensor | None, x0: Tensor | None, cfg: SolverConfig) -> Tensor:
    """The convex surrogate's approximate optimum by multigrid CG (:func:`solve_quadratic`).

    seeds: ``B×H×W`` int64; seed_mask, valid: ``B×H×W`` bool; onehot: ``B×K×H×W`` float; x0:
    ``B×K×H×W`` float start or None (uniform); unary: ``B×1×H×W`` float (η on ``V∖S``); log_sigma:
    ``B×K×H×W`` float or None (no prior). Returns ``B×K×H×W`` of the CG dtype.

    Without a prior (seed propagation), every pixel whose component touches a seed has an optimum that
    is 0 on the classes seeded in none of the batch's images (their right-hand side is zero) and sums
    to 1 over the seeded ones (the random walker's probabilities). So only the seeded classes but one
    are solved; the most seeded class gets 1 minus their sum, the unseeded ones 0. Exact at the
    optimum; it saves the work of ``K − K_seeded + 1`` classes (on CamVid frames about 4 of 11).
    """
    dtype = getattr(torch, cfg.cg_dtype)
    active = (valid & ~seed_mask)[:, None]
    common = dict(active=active, tol=cfg.cg_tol, max_iter=cfg.cg_max_iter, dtype=dtype)
    if log_sigma is not None:
        y0, _ = solve_quadratic(nb, seed_mask[:, None], onehot, cfg.lam, prior_weight=unary,
                                prior=log_sigma.exp(), x0=x0, **common)
        return y0
    k = onehot.shape[1]
    counts = torch.bincount(seeds[seed_mask], minlength=k)  # seed pixels per class in the batch
    seeded = counts > 0
    if not bool(seeded.any()):
        return torch.full_like(onehot, 1.0 / k, dtype=dtype) if x0 is None else x0.to(dtype)
    last = int(counts.argmax())
    solved = seeded.clone()
    solved[last] = False
    if x0 is not None:
        x0 = x0[:, solved] / x0[:, seeded].sum(1, keepdim=True).clamp_min(torch.finfo(x0.dtype).tiny)
    y0 = onehot.new_zeros(onehot.shape, dtype=dtype)
    if bool(solved.any()):
        part, _ = solve_quadratic(nb, seed_mask[:, None], onehot[:, solved], cfg.lam, x0=x0, **common)
        y0[:, solved] = part
    y0[:, last] = 1.0 - y0.sum(1)
    return y0


def soft_jaccard(a: Tensor, b: Tensor) -> Tensor:
    """Soft Jaccard ``Σ min(a, b) / Σ max(a, b)`` over all entries of each image (docs/methods.md §4.5).

    a, b: ``B×K×H×W`` float soft label maps. Returns ``B`` (1 where both are all-zero).
    """
    num = torch.minimum(a, b).flatten(1).sum(1)
    den = torch.maximum(a, b).flatten(1).sum(1)
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), torch.ones_like(den))
