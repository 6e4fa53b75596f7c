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
any device; operator products and Jacobi sweeps are fused multiply-adds on shifted views
(:meth:`GridNeighbourhood.diagonal_minus_weights`, weights pre-scaled by the Jacobi factor).

Precision (``dtype``): ``float64`` runs everything in float64. ``float32`` is mixed precision: the
smoothing (most of the work) runs in float32, while the CG vectors, the Galerkin hierarchy and the
coarsest-grid inverse stay float64. Edge weights span many orders of magnitude and the value of a
region enclosed by weak edges hangs on them: with float32 residuals (or a float32 hierarchy, whose
summed degrees drop 1e-10 weights next to O(1) ones) CG stalls there; mixed, it follows the float64
iterates (tests/test_solver.py: 99.9 % soft Jaccard on the weakly enclosed astronaut crop, where an
all-float32 CG stalls at 82 %). When every unknown has a prior (``c_p > 0``, e.g. ``η > 0`` in training)
the diagonal is at least ``c_p`` and no value hangs on weak edges alone: the CG vectors then stay in
float32 too (the hierarchy still float64), which gave the same convex start as the mixed form on the
training-step benchmark batch (soft Jaccard to the 100-iteration float64 solve unchanged to 0.01 %). Convergence is slowest for large unseeded regions enclosed by weak
edges (e.g. an object without any scribble): their value depends on tiny boundary weights.
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
COARSEST_NODES = 100
#: Precision of the multigrid hierarchy (Galerkin operators, coarsest-grid inverse), whatever the
#: smoothing precision: summed in float32, a pixel's degree loses the weak edges (1e-10 and less) on
#: which the value of a weakly enclosed region depends.
HIERARCHY_DTYPE = torch.float64
#: Precision of the CG vectors for a given smoothing precision (float32 smoothing keeps float64
#: residuals, so the CG converges past float32's rounding; see :func:`solve_quadratic`).
CG_DTYPE = {torch.float32: torch.float64}


def block_sum(x: Tensor) -> Tensor:
    """Sum over 2×2 blocks (zero-padded to even size). x: ``B×C×H×W`` -> ``B×C×⌈H/2⌉×⌈W/2⌉``."""
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        x = F.pad(x, (0, w % 2, 0, h % 2))
    return x[..., 0::2, 0::2] + x[..., 1::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 1::2]


def prolong(x: Tensor, h: int, w: int) -> Tensor:
    """Piecewise-constant interpolation: ``B×C×Hc×Wc`` -> ``B×C×h×w`` (each node to its 2×2 block)."""
    b, c, hc, wc = x.shape
    return x[:, :, :, None, :, None].expand(b, c, hc, 2, wc, 2).reshape(b, c, 2 * hc, 2 * wc)[..., :h, :w]


def add_prolonged(x: Tensor, mask: Tensor, e: Tensor, scale: float) -> Tensor:
    """``x + scale · mask ⊙ prolong(e)``, in place on ``x`` (``B×K×H×W``; mask ``B×1×H×W``; e
    ``B×K×⌈H/2⌉×⌈W/2⌉``); without materializing the prolongation when ``H`` and ``W`` are even."""
    b, k, h, w = x.shape
    if h % 2 or w % 2 or not x.is_contiguous() or not mask.is_contiguous():
        return x.addcmul_(mask, prolong(e, h, w), value=scale)
    xv = x.view(b, k, h // 2, 2, w // 2, 2)
    xv.addcmul_(mask.view(b, 1, h // 2, 2, w // 2, 2), e[:, :, :, None, :, None], value=scale)
    return x


class _Jacobi:
    """Damped Jacobi sweeps ``x ← x + ω D⁻¹ (b − A x) = (1 − ω) x + ω D⁻¹ b + ω D⁻¹ W x`` on the active
    nodes, fused: the weights are pre-scaled by ``ω D⁻¹`` at each pair's receiving end, so a sweep is
    one multiply-add plus one per pair direction."""

    def __init__(self, op: "_Op", tiny: float):
        self.dinv = JACOBI_OMEGA * op.mask / op.diag.clamp_min(tiny)  # B×1×H×W
        self.keep = 1.0 - JACOBI_OMEGA * op.mask
        self.terms = []
        for wt, (rp, cp), (rq, cq) in op.nb.pairs():
            wt = wt[:, None]
            self.terms.append(((rp, cp), (rq, cq), wt * self.dinv[:, :, rp, cp], wt * self.dinv[:, :, rq, cq]))

    def sweep(self, x: Tensor, dinv_b: Tensor) -> Tensor:
        """One sweep from ``x`` (``B×K×H×W``) given ``ω D⁻¹ b``; returns a new tensor."""
        out = torch.addcmul(dinv_b, self.keep, x)
        for (rp, cp), (rq, cq), w_at_p, w_at_q in self.terms:
            out[:, :, rp, cp].addcmul_(w_at_p, x[:, :, rq, cq])
            out[:, :, rq, cq].addcmul_(w_at_q, x[:, :, rp, cp])
        return out


@dataclass
class _Op:
    """``A x = diag ⊙ x − (λW) x`` with ``W`` the unknown–unknown edges (``nb`` holds ``λ w``)."""

    nb: GridNeighbourhood
    diag: Tensor  # B×1×H×W: λ·degree + c (the Jacobi diagonal); 0 on inactive nodes
    mask: Tensor  # B×1×H×W float: 1 on active nodes
    lam: float

    def __call__(self, x: Tensor) -> Tensor:
        # rows of inactive nodes are zero: their diagonal is 0 and ``nb`` has no edge at them
        return self.nb.diagonal_minus_weights(self.diag, x)

    def coarsen(self, c: Tensor) -> tuple["_Op", Tensor]:
        nb = self.nb.coarsen()  # weights already carry λ
        cc = block_sum(c)
        mask = (block_sum(self.mask) > 0).to(c.dtype)
        return _Op(nb, (nb.degree() + cc) * mask, mask, self.lam), cc


class _Multigrid:
    """The V-cycle hierarchy: operators built and the coarsest grid inverted in the precision of ``op``
    (float64: the Galerkin sums keep weak couplings that float32 would round away), smoothing in
    ``dtype``."""

    def __init__(self, op: _Op, c: Tensor, smooth: int, over: float, dtype: torch.dtype):
        ops = [op]
        self.smooth, self.over, self.dtype = smooth, over, dtype
        tiny = torch.finfo(op.diag.dtype).tiny
        while ops[-1].diag.shape[-2] * ops[-1].diag.shape[-1] > COARSEST_NODES:
            nxt, c = ops[-1].coarsen(c)
            ops.append(nxt)
        op = ops[-1]
        b, _, h, w = op.diag.shape
        n = h * w
        eye = torch.eye(n, dtype=op.diag.dtype, device=op.diag.device).reshape(1, n, h, w).expand(b, n, h, w)
        a = op(op.mask * eye).reshape(b, n, n)  # column j = A e_j
        a = 0.5 * (a + a.transpose(1, 2))
        inactive = (op.mask.reshape(b, n) == 0).to(a.dtype)
        scale = op.diag.reshape(b, n).amax(1).clamp_min(tiny)
        # inactive nodes: identity rows; a tiny ridge keeps parts without seed or prior solvable
        a = a + torch.diag_embed(inactive + 1e-12 * scale[:, None])
        self.coarse_inv = torch.linalg.pinv(a, hermitian=True)
        self.ops = [o if o.diag.dtype == dtype else _Op(o.nb.to(dtype), o.diag.to(dtype), o.mask.to(dtype), o.lam)
                    for o in ops]
        self.smoothers = [_Jacobi(o, torch.finfo(dtype).tiny) for o in self.ops[:-1]]

    def vcycle(self, b: Tensor, level: int = 0) -> Tensor:
        """Apply the V-cycle preconditioner to residuals ``b`` (``B×K×H×W`` at ``level``)."""
        op = self.ops[level]
        if level == len(self.ops) - 1:
            bb, k, h, w = b.shape
            x = torch.einsum("bij,bkj->bki", self.coarse_inv, b.reshape(bb, k, h * w).to(self.coarse_inv.dtype))
            return x.reshape(bb, k, h, w).to(self.dtype) * op.mask
        jac = self.smoothers[level]
        dinv_b = jac.dinv * b
        x = dinv_b
        for _ in range(self.smooth - 1):
            x = jac.sweep(x, dinv_b)
        e = self.vcycle(block_sum(b - op(x)), level + 1)
        x = add_prolonged(x, op.mask, e, self.over)
        for _ in range(self.smooth):
            x = jac.sweep(x, dinv_b)
        return x


def solve_quadratic(nb: GridNeighbourhood, seed_mask: Tensor, seed_onehot: Tensor, lam: float,
                    prior_weight: Tensor | None = None, prior: Tensor | None = None,
                    active: Tensor | None = None, x0: Tensor | None = None,
                    tol: float = 1e-6, max_iter: int = 100,
                    dtype: torch.dtype = torch.float64,
                    smoothing_sweeps: int | None = None) -> tuple[Tensor, int]:
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
        dtype: precision of the multigrid smoothing: float64 (default) or float32 (mixed precision:
            CG vectors, hierarchy and coarsest inverse in float64, the CG vectors float32 when
            ``prior_weight > 0`` on every unknown; module docstring), 1.3–1.6× faster
            on CamVid frames (seed propagation, 6 iterations).
        smoothing_sweeps: Jacobi sweeps before and after each coarse-grid correction (None:
            :data:`SMOOTHING_SWEEPS`).

    Returns ``(y, iterations)``: ``y`` ``B×K×H×W`` of ``dtype`` (seeds = ``ȳ``; sums to 1 per pixel up
    to the tolerance; not clamped).
    """
    b_, k, h, w = seed_onehot.shape
    seed_mask = seed_mask.bool()
    active = (~seed_mask if active is None else active.bool()) & ~seed_mask
    anchored = prior_weight is not None and bool((prior_weight > 0)[active.expand_as(prior_weight)].all())
    # the CG's vectors and operator (``dtype`` for the smoothing): float64 under float32 smoothing unless
    # every unknown has a prior (module docstring)
    dt = dtype if anchored else CG_DTYPE.get(dtype, dtype)
    tiny = torch.finfo(dt).tiny
    ybar = seed_onehot.to(dt) * seed_mask
    mask = active.to(dt)
    x0 = 1.0 / k if x0 is None else x0.to(dt)
    nb = nb.to(HIERARCHY_DTYPE)
    seeds_h = seed_mask.to(HIERARCHY_DTYPE)
    mask_h = active.to(HIERARCHY_DTYPE)
    to_seeds = nb.apply_weights(seeds_h)  # grounding of each unknown through its seed edges
    nb_uu = nb.drop_pairs_outside(active[:, 0])
    c = torch.zeros_like(mask_h) if prior_weight is None else prior_weight.to(HIERARCHY_DTYPE) * mask_h
    rhs = (lam * nb.to(dt).apply_weights(ybar) * mask)
    if prior_weight is not None:
        rhs = rhs + c.to(dt) * prior.to(dt) * mask
    c_total = lam * to_seeds * mask_h + c
    nb_uu = replace(nb_uu, weights=tuple(lam * wt for wt in nb_uu.weights))
    op_h = _Op(nb_uu, (nb_uu.degree() + c_total) * mask_h, mask_h, lam)
    mg = _Multigrid(op_h, c_total, smoothing_sweeps or SMOOTHING_SWEEPS, OVER_CORRECTION, dtype)
    op = op_h if dt == HIERARCHY_DTYPE else _Op(nb_uu.to(dt), op_h.diag.to(dt), mask, lam)

    def dot(a: Tensor, b: Tensor) -> Tensor:
        return torch.einsum("bkn,bkn->bk", a.flatten(2), b.flatten(2))[..., None, None]  # B×K×1×1

    x = (x0 * mask).expand(b_, k, h, w).contiguous()
    r = rhs - op(x)
    z = mg.vcycle(r.to(dtype)).to(dt)
    p = z
    rz = dot(r, z)
    rz0 = rz.abs().clamp_min(tiny)
    it = 0
    for it in range(1, max_iter + 1):
        ap = op(p)
        pap = dot(p, ap)
        alpha = torch.where(pap > 0, rz / pap.clamp_min(tiny), torch.zeros_like(pap))
        x = x.addcmul_(alpha, p)
        if it == max_iter:  # the last step needs no new search direction
            break
        r = r.addcmul_(alpha, ap, value=-1.0)
        z = mg.vcycle(r.to(dtype)).to(dt)
        rz_new = dot(r, z)
        if bool(((rz_new.abs() / rz0).sqrt() < tol).all()):
            break
        p = torch.addcmul(z, rz_new / rz.clamp_min(tiny), p)
        rz = rz_new
    y = x.add_(ybar)  # the CG keeps x = 0 off the unknowns (every update is masked)
    rest = ~(active | seed_mask)  # non-seed pixels that are no unknowns keep x0
    if bool(rest.any()):
        y = torch.where(rest, x0, y)
    return y.to(dtype), it
