"""Batched multigrid-preconditioned conjugate gradients for the convex quadratic problem
("random walker with priors", self-labeling.md §6) on grid neighbourhoods.

Problem, per image and class (``U`` = active unknowns: valid non-seed pixels):

    minimize  λ Σ_{pq∈N} w_pq ½‖y_p − y_q‖² + Σ_{p∈U} ½ c_p ‖y_p − t_p‖²,    y = ȳ on seeds,

i.e. the sparse system ``(λ L_UU + diag(c)) y_U = c t_U − λ L_US ȳ_S``. With ``c = η`` and ``t = σ`` this is
the exact optimum of the quadratic-Potts / quadratic-unary energy; with ``c = 0`` it is the random walker.

The preconditioner is one symmetric V-cycle of aggregation multigrid: 2×2 pixel blocks, piecewise-constant
interpolation, Galerkin coarse operators (:meth:`GridNeighbourhood.coarsen` sums the crossing weights),
damped-Jacobi smoothing, and a dense solve on the coarsest grid. Everything is matrix-free on shifted
tensors and batched over images and classes, on any device; the solve runs in float64 (edge weights span
many orders of magnitude).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from wsss.potts.neighbourhoods import GridNeighbourhood, _slices

#: Jacobi damping of the multigrid smoother.
JACOBI_OMEGA = 0.7
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
    nb: GridNeighbourhood  # edges between active nodes only
    diag: Tensor  # B×1×H×W: λ·degree + c (the Jacobi diagonal); 0 on inactive nodes
    mask: Tensor  # B×1×H×W float: 1 on active nodes
    lam: float

    def __call__(self, x: Tensor) -> Tensor:
        return self.mask * (self.diag * x - self.lam * self.nb.apply_weights(x))

    def coarsen(self, c: Tensor) -> tuple["_Op", Tensor]:
        nb = self.nb.coarsen()
        cc = block_sum(c)
        mask = (block_sum(self.mask) > 0).to(c.dtype)
        return _Op(nb, (self.lam * nb.degree() + cc) * mask, mask, self.lam), cc


class _Multigrid:
    def __init__(self, op: _Op, c: Tensor, smooth: int = 2, over: float = 1.0):
        self.ops = [op]
        self.smooth = smooth
        self.over = over
        while self.ops[-1].diag.shape[-2] * self.ops[-1].diag.shape[-1] > COARSEST_NODES:
            nxt, c = self.ops[-1].coarsen(c)
            self.ops.append(nxt)
        self._factor_coarsest()

    def _factor_coarsest(self) -> None:
        op = self.ops[-1]
        b, _, h, w = op.diag.shape
        n = h * w
        eye = torch.eye(n, dtype=op.diag.dtype, device=op.diag.device).reshape(1, n, h, w).expand(b, n, h, w)
        a = op(op.mask * eye).reshape(b, n, n)  # column j = A e_j
        a = 0.5 * (a + a.transpose(1, 2))
        inactive = op.mask.reshape(b, n) == 0
        scale = op.diag.reshape(b, n).amax(1).clamp_min(1e-300)
        # inactive nodes: identity rows; a tiny ridge keeps components without any seed or prior solvable
        a = a + torch.diag_embed(inactive.to(a.dtype) + 1e-12 * scale[:, None])
        self.coarse_inv = torch.linalg.pinv(a, hermitian=True)

    def _jacobi(self, op: _Op, x: Tensor, b: Tensor) -> Tensor:
        dinv = op.mask / op.diag.clamp_min(1e-300)
        return x + JACOBI_OMEGA * dinv * (b - op(x))

    def vcycle(self, b: Tensor, level: int = 0) -> Tensor:
        op = self.ops[level]
        if level == len(self.ops) - 1:
            bb, k, h, w = b.shape
            x = torch.einsum("bij,bkj->bki", self.coarse_inv, b.reshape(bb, k, h * w))
            return x.reshape(bb, k, h, w) * op.mask
        x = torch.zeros_like(b)
        for _ in range(self.smooth):
            x = self._jacobi(op, x, b)
        r = b - op(x)
        e = self.vcycle(block_sum(r), level + 1)
        x = x + self.over * op.mask * prolong(e, *b.shape[-2:])
        for _ in range(self.smooth):
            x = self._jacobi(op, x, b)
        return x


def strong_components(nb: GridNeighbourhood, active: Tensor, threshold: float, min_size: int,
                      max_count: int) -> tuple[Tensor, int]:
    """Label the connected components of the graph of strong edges (``w ≥ threshold``) among active
    pixels, keeping the ``max_count`` largest of at least ``min_size`` pixels per image.

    nb: grid neighbourhood; active: ``B×1×H×W`` bool. Returns ``(labels, m)``: ``labels`` ``B×H×W``
    int64 in ``[0, m)`` or −1 (no kept component), on the input device. Computed on the CPU with
    ``scipy.sparse.csgraph`` (boolean maps only move).
    """
    import numpy as np
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    b, h, w = nb.shape
    n = h * w
    idx = np.arange(n).reshape(h, w)
    act = active[:, 0].cpu().numpy()
    strong = [(wt >= threshold).cpu().numpy() for wt in nb.weights]
    out = np.full((b, h, w), -1, dtype=np.int64)
    m = 0
    for i in range(b):
        rows, cols = [], []
        for (dy, dx), st in zip(nb.offsets, strong):
            (rp, cp), (rq, cq) = _slices(h, w, dy, dx)
            sel = st[i][rp, cp] & act[i][rp, cp] & act[i][rq, cq]
            rows.append(idx[rp, cp][sel])
            cols.append(idx[rq, cq][sel])
        g = sp.coo_matrix((np.ones(sum(len(r) for r in rows)), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(n, n))
        _, lab = connected_components(g, directed=False)
        lab = np.where(act[i].ravel(), lab, -1)
        counts = np.bincount(lab[lab >= 0], minlength=1)
        order = np.argsort(-counts, kind="stable")
        keep = order[counts[order] >= min_size][:max_count]
        remap = np.full(counts.shape[0] + 1, -1, dtype=np.int64)
        remap[keep] = np.arange(len(keep))
        out[i] = remap[lab].reshape(h, w)
        m = max(m, len(keep))
    return torch.from_numpy(out).to(active.device), m


class _Deflation:
    """Coarse space of strong-edge components: ``Q r = Z (ZᵀAZ)⁻¹ Zᵀ r`` with ``Z`` their indicators."""

    def __init__(self, op: _Op, labels: Tensor, m: int):
        b, h, w = labels.shape
        self.m = m
        dt = op.diag.dtype
        lab = labels.reshape(b, h * w)
        self.valid = (lab >= 0)
        self.lab = lab.clamp_min(0)
        base = (torch.arange(b, device=lab.device) * m * m)[:, None]
        ac = torch.zeros(b * m * m, dtype=dt, device=lab.device)
        # diagonal: Σ_{p∈a} D_p
        dg = (op.diag * op.mask).reshape(b, h * w) * self.valid
        ac.index_add_(0, (base + self.lab * (m + 1)).reshape(-1), dg.reshape(-1))
        for wt, (rp, cp), (rq, cq) in op.nb._pairs():
            la, lb = labels[:, rp, cp], labels[:, rq, cq]
            ok = (la >= 0) & (lb >= 0)
            val = (-op.lam * wt * ok).reshape(b, -1)
            la, lb = la.clamp_min(0).reshape(b, -1), lb.clamp_min(0).reshape(b, -1)
            ac.index_add_(0, (base + la * m + lb).reshape(-1), val.reshape(-1))
            ac.index_add_(0, (base + lb * m + la).reshape(-1), val.reshape(-1))
        ac = ac.reshape(b, m, m)
        ridge = 1e-12 * ac.diagonal(dim1=1, dim2=2).abs().amax(1).clamp_min(1e-300)
        self.inv = torch.linalg.pinv(ac + torch.diag_embed(ridge[:, None].expand(b, m)), hermitian=True)

    def __call__(self, r: Tensor) -> Tensor:
        b, k, h, w = r.shape
        rf = (r.reshape(b, k, h * w) * self.valid[:, None])
        zr = torch.zeros(b, k, self.m, dtype=r.dtype, device=r.device)
        zr.scatter_add_(2, self.lab[:, None].expand(b, k, h * w), rf)
        e = torch.einsum("bij,bkj->bki", self.inv, zr)
        out = torch.gather(e, 2, self.lab[:, None].expand(b, k, h * w)) * self.valid[:, None]
        return out.reshape(b, k, h, w)


def solve_quadratic(nb: GridNeighbourhood, seed_mask: Tensor, seed_onehot: Tensor, lam: float,
                    prior_weight: Tensor | None = None, prior: Tensor | None = None,
                    active: Tensor | None = None, x0: Tensor | None = None,
                    tol: float = 1e-6, max_iter: int = 100, smooth: int = 2, over: float = 1.0,
                    deflation: tuple | None = (1e-2, 16, 256)) -> tuple[Tensor, int]:
    """Solve the random walker with priors by multigrid-preconditioned CG.

    Args:
        nb: grid neighbourhood with the edge weights ``w`` (pairs already restricted to valid pixels).
        seed_mask: ``B×1×H×W`` bool, the seeds ``S``.
        seed_onehot: ``B×K×H×W`` float one-hot ``ȳ`` on ``S`` (0 elsewhere).
        lam: Potts weight ``λ``.
        prior_weight: ``B×1×H×W`` float ``c_p ≥ 0`` (e.g. ``η`` on ``V∖S``), or ``None`` (0).
        prior: ``B×K×H×W`` float target ``t`` (e.g. ``σ``), needed when ``prior_weight`` is given.
        active: ``B×1×H×W`` bool unknowns (default: not seeds); inactive non-seed pixels stay at ``x0``.
        x0: ``B×K×H×W`` float initial guess (default uniform).
        tol: stop when every right-hand side's preconditioned residual norm is below ``tol`` times its
            initial value.
        max_iter: maximum CG iterations.

    Returns ``(y, iterations)``: ``y`` ``B×K×H×W`` float64 (seeds = ``ȳ``; sums to 1 per pixel up to
    the tolerance; not clamped).
    """
    dt = torch.float64
    b_, k, h, w = seed_onehot.shape
    seed_mask = seed_mask.bool()
    ybar = seed_onehot.to(dt) * seed_mask
    if active is None:
        active = ~seed_mask
    active = active.bool() & ~seed_mask
    mask = active.to(dt)
    if x0 is None:
        x0 = torch.full((b_, k, h, w), 1.0 / k, dtype=dt, device=ybar.device)
    x0 = x0.to(dt)
    nb = nb.to(dt)
    # grounding: weight of the edges from each unknown to seeds; then keep only unknown–unknown edges
    to_seeds = nb.apply_weights(seed_mask.to(dt))
    nb_uu = nb.drop_pairs_outside(active[:, 0])
    c = torch.zeros_like(mask) if prior_weight is None else prior_weight.to(dt) * mask
    rhs = lam * nb.apply_weights(ybar) * mask
    if prior_weight is not None:
        rhs = rhs + c * prior.to(dt) * mask
    c_total = lam * to_seeds * mask + c
    op = _Op(nb_uu, (lam * nb_uu.degree() + c_total) * mask, mask, lam)
    mg = _Multigrid(op, c_total, smooth, over)
    precond = mg.vcycle
    if deflation is not None:
        labels, m = strong_components(nb_uu, active, *deflation)
        if m > 0:
            defl = _Deflation(op, labels, m)
            precond = lambda r: mg.vcycle(r) + defl(r)  # noqa: E731

    def dot(a: Tensor, b: Tensor) -> Tensor:
        return (a * b).flatten(2).sum(2)[..., None, None]  # B×K×1×1

    x = x0 * mask
    r = rhs - op(x)
    z = precond(r)
    p = z
    rz = dot(r, z)
    rz0 = rz.abs().clamp_min(1e-300)
    it = 0
    for it in range(1, max_iter + 1):
        ap = op(p)
        alpha = rz / dot(p, ap).clamp_min(1e-300)
        x = x + alpha * p
        r = r - alpha * ap
        z = precond(r)
        rz_new = dot(r, z)
        if bool(((rz_new.abs() / rz0).sqrt() < tol).all()):
            break
        p = z + (rz_new / rz.clamp_min(1e-300)) * p
        rz = rz_new
    y = torch.where(seed_mask, ybar, torch.where(active, x, x0))
    return y, it
