"""Batched multigrid-preconditioned conjugate gradients for the convex quadratic problem
("random walker with priors", docs/methods.md §4.5) on grid neighbourhoods.

Problem, per image and class (``U`` = unknowns: valid non-seed pixels):

    minimize  λ Σ_{pq∈N} w_pq ½‖y_p − y_q‖² + Σ_{p∈U} ½ c_p ‖y_p − t_p‖²,    y = ȳ on seeds,

i.e. the sparse system ``(λ L_UU + diag(c)) y_U = c t_U − λ L_US ȳ_S``. With ``c = η`` and ``t = σ`` this is
the exact optimum of the quadratic-Potts / quadratic-unary energy; with ``c = 0`` it is the random walker.

Preconditioner: one symmetric V-cycle of aggregation multigrid: 2×2 pixel blocks, piecewise-constant
interpolation, Galerkin coarse operators (:meth:`GridNeighbourhood.coarsen` sums the crossing weights),
damped-Jacobi smoothing, an over-corrected coarse-grid correction (factor 1.9, the usual remedy for the
weak energy of unsmoothed aggregation; measured on the benchmark images), and a dense solve on the
coarsest grid. Everything is matrix-free on shifted tensors and batched over images and classes, on
any device. The solve runs in float64 by default (edge weights span many orders of magnitude).
Convergence is slowest for large unseeded regions enclosed by weak edges (e.g. an object without any
scribble): their value depends on tiny boundary weights.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from wsss.potts.neighbourhoods import GridNeighbourhood

#: Jacobi damping of the multigrid smoother.
JACOBI_OMEGA = 0.7
#: Jacobi sweeps before and after each coarse-grid correction.
SMOOTHING_SWEEPS = 4
#: Over-correction factor of the coarse-grid correction (0 < factor < 2 keeps the V-cycle SPD).
OVER_CORRECTION = 1.9
#: Coarsest grid: stop coarsening once ``H·W`` is at most this many nodes (dense solve there).
COARSEST_NODES = 400


def block_sum(x: Tensor) -> Tensor:
    """Sum over 2×2 blocks (zero-padded to even size). x: ``B×C×H×W`` -> ``B×C×⌈H/2⌉×⌈W/2⌉``."""
    h, w = x.shape[-2:]
    x = F.pad(x, (0, w % 2, 0, h % 2))
    return F.avg_pool2d(x, 2) * 4.0


def prolong(x: Tensor, h: int, w: int) -> Tensor:
    """Piecewise-constant interpolation: ``B×C×Hc×Wc`` -> ``B×C×h×w`` (each node to its 2×2 block)."""
    return x.repeat_interleave(2, -2).repeat_interleave(2, -1)[..., :h, :w]


@dataclass
class _Op:
    """``A x = diag ⊙ x − (λW) x`` with ``W`` the unknown–unknown edges (``nb`` holds ``λ w``)."""

    nb: GridNeighbourhood
    diag: Tensor  # B×1×H×W: λ·degree + c (the Jacobi diagonal); 0 on inactive nodes
    mask: Tensor  # B×1×H×W float: 1 on active nodes
    lam: float

    def __call__(self, x: Tensor) -> Tensor:
        # rows of inactive nodes are zero: their diagonal is 0 and ``nb`` has no edge at them
        return self.diag * x - self.nb.apply_weights(x)

    def coarsen(self, c: Tensor) -> tuple["_Op", Tensor]:
        nb = self.nb.coarsen()  # weights already carry λ
        cc = block_sum(c)
        mask = (block_sum(self.mask) > 0).to(c.dtype)
        return _Op(nb, (nb.degree() + cc) * mask, mask, self.lam), cc


class _Multigrid:
    def __init__(self, op: _Op, c: Tensor, smooth: int, over: float):
        self.ops = [op]
        self.smooth, self.over = smooth, over
        self.tiny = torch.finfo(op.diag.dtype).tiny
        while self.ops[-1].diag.shape[-2] * self.ops[-1].diag.shape[-1] > COARSEST_NODES:
            nxt, c = self.ops[-1].coarsen(c)
            self.ops.append(nxt)
        op = self.ops[-1]
        b, _, h, w = op.diag.shape
        n = h * w
        eye = torch.eye(n, dtype=op.diag.dtype, device=op.diag.device).reshape(1, n, h, w).expand(b, n, h, w)
        a = op(op.mask * eye).reshape(b, n, n)  # column j = A e_j
        a = 0.5 * (a + a.transpose(1, 2))
        inactive = (op.mask.reshape(b, n) == 0).to(a.dtype)
        scale = op.diag.reshape(b, n).amax(1).clamp_min(self.tiny)
        # inactive nodes: identity rows; a tiny ridge keeps parts without seed or prior solvable
        a = a + torch.diag_embed(inactive + 1e-12 * scale[:, None])
        self.coarse_inv = torch.linalg.pinv(a, hermitian=True)

    def vcycle(self, b: Tensor, level: int = 0) -> Tensor:
        """Apply the V-cycle preconditioner to residuals ``b`` (``B×K×H×W`` at ``level``)."""
        op = self.ops[level]
        if level == len(self.ops) - 1:
            bb, k, h, w = b.shape
            x = torch.einsum("bij,bkj->bki", self.coarse_inv, b.reshape(bb, k, h * w))
            return x.reshape(bb, k, h, w) * op.mask
        dinv = JACOBI_OMEGA * op.mask / op.diag.clamp_min(self.tiny)
        x = dinv * b
        for _ in range(self.smooth - 1):
            x = x + dinv * (b - op(x))
        e = self.vcycle(block_sum(b - op(x)), level + 1)
        x = x + self.over * op.mask * prolong(e, *b.shape[-2:])
        for _ in range(self.smooth):
            x = x + dinv * (b - op(x))
        return x


def solve_quadratic(nb: GridNeighbourhood, seed_mask: Tensor, seed_onehot: Tensor, lam: float,
                    prior_weight: Tensor | None = None, prior: Tensor | None = None,
                    active: Tensor | None = None, x0: Tensor | None = None,
                    tol: float = 1e-6, max_iter: int = 100,
                    dtype: torch.dtype = torch.float64) -> tuple[Tensor, int]:
    """Solve the random walker with priors by multigrid-preconditioned CG, batched.

    Args:
        nb: grid neighbourhood with the edge weights ``w`` (pairs already restricted to valid pixels).
        seed_mask: ``B×1×H×W`` bool, the seeds ``S``.
        seed_onehot: ``B×K×H×W`` float one-hot ``ȳ`` on ``S`` (0 elsewhere).
        lam: Potts weight ``λ``.
        prior_weight: ``B×1×H×W`` float ``c_p ≥ 0`` (e.g. ``η`` on ``V∖S``), or ``None`` (0).
        prior: ``B×K×H×W`` float target ``t`` (e.g. ``σ``), needed when ``prior_weight`` is given.
        active: ``B×1×H×W`` bool unknowns (default: all non-seeds); other non-seed pixels keep ``x0``.
        x0: ``B×K×H×W`` float initial guess (default uniform ``1/K``).
        tol: stop when, for every image and class, the preconditioned residual norm is below ``tol``
            times its initial value.
        max_iter: maximum number of CG iterations.
        dtype: working precision (float64 default; float32 is about twice as fast, less accurate).

    Returns ``(y, iterations)``: ``y`` ``B×K×H×W`` of ``dtype`` (seeds = ``ȳ``; sums to 1 per pixel up
    to the tolerance; not clamped).
    """
    dt = dtype
    tiny = torch.finfo(dt).tiny
    b_, k, h, w = seed_onehot.shape
    seed_mask = seed_mask.bool()
    ybar = seed_onehot.to(dt) * seed_mask
    active = (~seed_mask if active is None else active.bool()) & ~seed_mask
    mask = active.to(dt)
    x0 = torch.full((b_, k, h, w), 1.0 / k, dtype=dt, device=ybar.device) if x0 is None else x0.to(dt)
    nb = nb.to(dt)
    to_seeds = nb.apply_weights(seed_mask.to(dt))  # grounding of each unknown through its seed edges
    nb_uu = nb.drop_pairs_outside(active[:, 0])
    c = torch.zeros_like(mask) if prior_weight is None else prior_weight.to(dt) * mask
    rhs = lam * nb.apply_weights(ybar) * mask
    if prior_weight is not None:
        rhs = rhs + c * prior.to(dt) * mask
    c_total = lam * to_seeds * mask + c
    nb_uu = replace(nb_uu, weights=tuple(lam * wt for wt in nb_uu.weights))
    op = _Op(nb_uu, (nb_uu.degree() + c_total) * mask, mask, lam)
    mg = _Multigrid(op, c_total, SMOOTHING_SWEEPS, OVER_CORRECTION)

    def dot(a: Tensor, b: Tensor) -> Tensor:
        return (a * b).flatten(2).sum(2)[..., None, None]  # B×K×1×1

    x = x0 * mask
    r = rhs - op(x)
    z = mg.vcycle(r)
    p = z
    rz = dot(r, z)
    rz0 = rz.abs().clamp_min(tiny)
    it = 0
    for it in range(1, max_iter + 1):
        ap = op(p)
        pap = dot(p, ap)
        alpha = torch.where(pap > 0, rz / pap.clamp_min(tiny), torch.zeros_like(pap))
        x = x + alpha * p
        r = r - alpha * ap
        z = mg.vcycle(r)
        rz_new = dot(r, z)
        if bool(((rz_new.abs() / rz0).sqrt() < tol).all()):
            break
        p = z + (rz_new / rz.clamp_min(tiny)) * p
        rz = rz_new
    y = torch.where(seed_mask, ybar, torch.where(active, x, x0))
    return y, it
