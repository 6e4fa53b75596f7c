"""Permutohedral lattice (Adams, Baek & Davis 2010) in pure PyTorch tensor ops.

Splat → blur → slice approximation of the Gaussian transform ``y_p = Σ_q exp(-‖f_p - f_q‖²/2) x_q``
for points ``f ∈ R^D`` (here the scaled RGBXY features of :func:`wsss.filters.bilateral.image_features`).

Construction (once per point set, all batched, no loops over points):

1. Elevate ``f`` onto the hyperplane ``H = {y ∈ R^{D+1}: Σ y = 0}`` with an orthonormal basis of ``H``
   scaled by ``feature_scale·sqrt(2/3)·(D+1)`` (Adams' scaling when ``feature_scale = 1``).
2. Find the enclosing simplex of the lattice ``(D+1)·A*_D``: nearest remainder-0 point, the ranking of
   the residual coordinates, and the ``D+1`` vertices with their barycentric weights.
3. Hash vertices as packed int64 keys (batch index, lattice coordinates divided by ``D+1`` and the
   remainder, in mixed radix); ``torch.unique`` gives the vertex list and each point's vertex indices;
   the neighbours ``v ± u_j`` along the ``D+1`` lattice directions are found with ``searchsorted``
   (missing neighbours point to an extra all-zero row).

Filtering: splat with ``index_add_`` (weights ``b_r``), blur with ``[1/4, 1/2, 1/4]`` passes along the
``D+1`` directions, averaged over the two orders ``0..D`` and ``D..0`` (one order alone is not symmetric on
a sparse lattice: Adams' filter, and rloss's, are asymmetric by a few %), slice with a gather. Multiplying by :attr:`PermutohedralLattice.norm` restores the scale of
the exact transform (Gaussian mass ``(2π)^{D/2}`` over the feature-space volume of one lattice cell),
times a fitted correction ``SCALE_FIT`` (docs/bilateral.md).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

__all__ = ["PermutohedralLattice", "SCALE_FIT"]

#: global correction of the analytic normalization: 1 / 0.786, the fitted scale of the uncorrected
#: lattice on CamVid frames at σ_rgb 15 / σ_xy 50 (benchmarks/bilateral.py --calibrate), so that
#: c_tk ≈ 1 there (docs/bilateral.md).
SCALE_FIT = 1.0 / 0.786


@lru_cache(maxsize=None)
def _simplex_response(d: int) -> tuple:
    """Blur response ``g[m]`` between two vertices ``m`` steps apart on one simplex (full lattice).

    On a fully populated lattice the passes commute and the response at offset ``Σ_{j∈A} u_j``
    (``|A| = m``) is ``Σ_t κ(1+t)^m κ(t)^{D+1-m}``, ``κ = [1/4, 1/2, 1/4]``, i.e.
    ``(1/4)^m (1/2)^{D+1-m} + (1/2)^m (1/4)^{D+1-m}``. Returns ``D+1`` floats (``m = 0..D``).
    """
    q = d + 1
    return tuple(0.25**m * 0.5 ** (q - m) + 0.5**m * 0.25 ** (q - m) for m in range(q))


class PermutohedralLattice:
    """Lattice built once for ``N`` points; :meth:`filter` applies the Gaussian transform.

    Args:
        points: ``N×D`` float (float64 recommended) features; the kernel is ``exp(-‖Δf‖²/2)``.
        batch_id: ``N`` int64 group of each point (points of different groups never interact).
        feature_scale: lattice refinement factor relative to Adams' scaling (default 1).

    Attributes:
        vert: ``N×(D+1)`` int64 vertex indices of each point's simplex (into ``0..M-1``).
        bary: ``N×(D+1)`` float64 barycentric weights (non-negative, sum 1).
        nbr_plus, nbr_minus: ``(D+1)×(M+1)`` int64 neighbour indices along ``±u_j`` (``M`` = missing).
        norm: float, scale making the output comparable to the exact transform.
        num_vertices: ``M``.
    """

    def __init__(self, points: torch.Tensor, batch_id: torch.Tensor, feature_scale: float = 1.0):
        if points.dim() != 2:
            raise ValueError(f"points must be N×D, got {tuple(points.shape)}")
        dev = points.device
        n, d = points.shape
        q = d + 1
        self.d = d
        pts = points.to(torch.float64)
        inv_std = feature_scale * math.sqrt(2.0 / 3.0) * q
        # Orthonormal basis of H: column j has 1/sqrt((j+1)(j+2)) on rows 0..j, -(j+1)/sqrt(..) on j+1.
        basis = torch.zeros(q, d, dtype=torch.float64, device=dev)
        for j in range(d):
            c = 1.0 / math.sqrt((j + 1) * (j + 2))
            basis[: j + 1, j] = c
            basis[j + 1, j] = -(j + 1) * c
        y = (pts @ basis.T) * inv_std  # N×q, rows sum to 0

        # Nearest remainder-0 point and the ranking of residuals.
        rem0 = torch.round(y / q) * q
        s = torch.div(rem0.sum(1), q, rounding_mode="floor").to(torch.int64)  # exact: integers
        order = torch.argsort(y - rem0, dim=1, descending=True)
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(q, device=dev).expand(n, q).contiguous())
        rank = rank + s[:, None]
        lo = rank < 0
        hi = rank > d
        rank = torch.where(lo, rank + q, torch.where(hi, rank - q, rank))
        rem0 = rem0 + q * lo.to(rem0.dtype) - q * hi.to(rem0.dtype)

        # Barycentric weights.
        v = (y - rem0) / q
        bary = torch.zeros(n, q + 1, dtype=torch.float64, device=dev)
        bary.scatter_add_(1, d - rank, v)
        bary.scatter_add_(1, d + 1 - rank, -v)
        bary[:, 0] += 1.0 + bary[:, q]
        self.bary = bary[:, :q].clamp_min(0.0).contiguous()

        # Vertices of the simplex: key_r = rem0 + (r if rank <= d - r else r - q); keep D coords.
        rem0_i = rem0.to(torch.int64)[:, :d]
        rank_d = rank[:, :d]
        r = torch.arange(q, device=dev).view(1, q, 1)
        keys = rem0_i[:, None, :] + torch.where(rank_d[:, None, :] <= d - r, r, r - q)  # N×q×d
        kq = torch.div(keys - r, q, rounding_mode="floor")  # N×q×d, exact division
        kmin = kq.amin(dim=(0, 1)) - 1
        kmax = kq.amax(dim=(0, 1)) + 1
        radix = (kmax - kmin + 1).tolist()
        nb = int(batch_id.max().item()) + 1 if n > 0 else 1
        total = nb * q
        for rr in radix:
            total *= rr
        if total >= 2**62:
            raise ValueError(
                "permutohedral lattice keys overflow int64: bandwidths too small for this image size"
            )
        # strides: enc = ((b·R0 + k0)·R1 + k1)…·q + r
        strides = []
        acc = q
        for rr in reversed(radix):
            strides.append(acc)
            acc *= rr
        strides = list(reversed(strides))  # stride of coordinate i
        bstride = acc
        st = torch.tensor(strides, dtype=torch.int64, device=dev)
        enc = (
            batch_id.to(torch.int64)[:, None] * bstride
            + ((kq - kmin) * st).sum(-1)
            + r.view(1, q)
        )  # N×q
        uniq, inv = torch.unique(enc.reshape(-1), sorted=True, return_inverse=True)
        m = uniq.numel()
        self.num_vertices = m
        self.vert = inv.view(n, q)

        # Neighbours along +u_j (u_j = 1 - q e_j): linear in the packed key, with a carry when r = d.
        rem = uniq % q
        carry = (rem == d).to(torch.int64)
        sum_st = int(sum(strides))
        nbr_plus = torch.full((q, m + 1), m, dtype=torch.int64, device=dev)
        nbr_minus = torch.full((q, m + 1), m, dtype=torch.int64, device=dev)
        src = torch.arange(m, device=dev)
        for j in range(q):  # loop over the D+1 lattice directions
            step = carry * (sum_st - q) + 1 - (strides[j] if j < d else 0)
            target = uniq + step
            pos = torch.searchsorted(uniq, target).clamp_max_(m - 1)
            found = uniq[pos] == target
            nbr_plus[j, :m] = torch.where(found, pos, torch.full_like(pos, m))
            nbr_minus[j, pos[found]] = src[found]
        self.nbr_plus = nbr_plus
        self.nbr_minus = nbr_minus
        vol = q ** (d - 0.5) / inv_std**d
        self.norm = SCALE_FIT * (2.0 * math.pi) ** (d / 2.0) / vol
        self._bary_cache: dict = {}

    def _weights(self, dtype: torch.dtype) -> torch.Tensor:
        w = self._bary_cache.get(dtype)
        if w is None:
            w = self.bary.to(dtype)
            self._bary_cache[dtype] = w
        return w

    def filter(self, rows: torch.Tensor) -> torch.Tensor:
        """Gaussian transform of ``N×C`` values (float32/float64): returns ``N×C``, same dtype."""
        n, c = rows.shape
        q = self.d + 1
        m = self.num_vertices
        bw = self._weights(rows.dtype)
        lat = torch.zeros(m + 1, c, dtype=rows.dtype, device=rows.device)
        for r in range(q):  # splat: one index_add per simplex vertex
            lat.index_add_(0, self.vert[:, r], rows * bw[:, r : r + 1])
        lat = self._blur(lat)
        out = lat[self.vert[:, 0]] * bw[:, 0:1]
        for r in range(1, q):  # slice
            out += lat[self.vert[:, r]] * bw[:, r : r + 1]
        return out * self.norm

    def _blur(self, lat: torch.Tensor) -> torch.Tensor:
        """Symmetrized blur ``½(B_0…B_D + B_D…B_0)``, ``B_j = [1/4, 1/2, 1/4]`` along ``u_j``.

        ``lat``: ``(M+1)×C`` (last row zero). Returns ``(M+1)×C``. Each ``B_j`` is symmetric (the
        neighbour relation is), so the average of the two orders is symmetric.
        """
        q = self.d + 1
        fwd = lat
        for j in range(q):
            fwd = 0.5 * fwd + 0.25 * (fwd[self.nbr_plus[j]] + fwd[self.nbr_minus[j]])
        bwd = lat
        for j in range(q - 1, -1, -1):
            bwd = 0.5 * bwd + 0.25 * (bwd[self.nbr_plus[j]] + bwd[self.nbr_minus[j]])
        return 0.5 * (fwd + bwd)

    def self_weight(self) -> torch.Tensor:
        """``N`` float64: analytic self-weight ``norm·Σ_{r,r'} b_r b_r' g(|r-r'|)`` (full lattice)."""
        g = torch.tensor(_simplex_response(self.d), dtype=torch.float64, device=self.bary.device)
        q = self.d + 1
        idx = torch.arange(q, device=self.bary.device)
        gm = g[(idx[:, None] - idx[None, :]).abs()]  # q×q
        return self.norm * torch.einsum("nr,rs,ns->n", self.bary, gm, self.bary)
