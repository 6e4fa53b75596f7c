"""The permutohedral lattice build of wsss 0.1 (one sort of all ``N·(D+1)`` vertex keys) and the
CSR / ``index_select`` filtering of wsss 0.1–0.2 (:func:`csr_filter`), kept as references: tests check
that :class:`wsss.filters.PermutohedralLattice` builds and applies the same operator, and
``benchmarks/bilateral.py`` / ``benchmarks/crf_engines.py`` time old and new in one run. Not used by
the toolkit otherwise.
"""

from __future__ import annotations

import math
import warnings

import torch

from wsss.filters.permutohedral import SCALE_FIT, PermutohedralLattice

__all__ = ["ReferenceLattice", "csr_filter"]


class ReferenceLattice(PermutohedralLattice):
    """:class:`~wsss.filters.PermutohedralLattice` built the 0.1 way (same arguments, same
    attributes, same filtering); every point's ``D+1`` vertex keys are sorted together."""

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
        # rank_i = #{j: res_j > res_i} + #{j < i: res_j == res_i} (0 = largest; ties by index)
        res = y - rem0
        rank = s[:, None].expand(n, q).clone()
        idx = torch.arange(q, device=dev)
        for j in range(q):  # loop over the D+1 coordinates
            rj = res[:, j : j + 1]
            rank += (rj > res) | ((rj == res) & (idx > j))
        lo = rank < 0
        hi = rank > d
        rank = torch.where(lo, rank + q, torch.where(hi, rank - q, rank))
        rem0 = rem0 + q * lo.to(rem0.dtype) - q * hi.to(rem0.dtype)

        self.rank = rank  # N×q: rank of each elevated coordinate's residual (0 = largest)

        # Barycentric weights.
        # With vs[k] the residual/(D+1) of rank k (descending): b_r = vs[D-r] - vs[D+1-r] for
        # r = 1..D and b_0 = 1 - vs[0] + vs[D].
        vs = torch.empty(n, q, dtype=torch.float64, device=dev)
        vs.scatter_(1, rank, (y - rem0) / q)
        bary = torch.empty(n, q, dtype=torch.float64, device=dev)
        bary[:, 1:] = vs[:, :d].flip(1) - vs[:, 1:].flip(1)
        bary[:, 0] = 1.0 - vs[:, 0] + vs[:, d]
        self.bary = bary.clamp_min(0.0)

        # Vertex r of the simplex: key_r = rem0 + (r if rank <= d - r else r - q) (all coordinates
        # ≡ r mod q). Packed as ((b·R_0 + k_0)·R_1 + k_1)…·q + r with k_i = key_i div q - kmin_i,
        # where key_i div q = rem0_i/q - [rank_i > d - r]. Only the first D coordinates are kept.
        base_q = torch.div(rem0[:, :d], q, rounding_mode="floor").to(torch.int64)  # N×d
        # Compress each coordinate: gaps > 4 between occupied values shrink to 4. Vertex and
        # neighbour coordinates stay within [v-2, v+1] of an occupied value v, so no equality
        # between keys changes, while the radix stays ≤ 4·(#distinct values) (tiny bandwidths).
        cols = []
        for i in range(d):  # loop over the D coordinates
            u, inv_i = torch.unique(base_q[:, i], return_inverse=True)
            pos = torch.zeros_like(u)
            pos[1:] = torch.cumsum((u[1:] - u[:-1]).clamp_max(4), 0)
            cols.append(pos[inv_i])
        base_q = torch.stack(cols, 1)
        kmin = base_q.amin(dim=0) - 2  # one below the smallest vertex, one for neighbours
        kmax = base_q.amax(dim=0) + 1
        radix = (kmax - kmin + 1).tolist()
        nb = int(batch_id.max().item()) + 1 if n > 0 else 1
        total = nb * q
        for rr in radix:
            total *= rr
        if total >= 2**62:
            raise ValueError(
                "permutohedral lattice keys overflow int64 (bandwidths tiny for this image size): "
                "use larger sigma_xy / sigma_rgb or the exact DenseGaussianFilter"
            )
        strides = []
        acc = q
        for rr in reversed(radix):
            strides.append(acc)
            acc *= rr
        strides = list(reversed(strides))  # stride of coordinate i
        bstride = acc
        st = torch.tensor(strides + [0], dtype=torch.int64, device=dev)  # coordinate d: not stored
        base = batch_id.to(torch.int64) * bstride + ((base_q - kmin) * st[:d]).sum(-1)  # N
        by_rank = torch.zeros(n, q, dtype=torch.int64, device=dev)
        by_rank.scatter_(1, rank, st.expand(n, q))  # [n, k] = stride of the coordinate of rank k
        # suffix[n, r] = Σ_{k > d - r} by_rank[n, k]
        suffix = torch.cumsum(by_rank.flip(1), 1)
        suffix = torch.cat([torch.zeros(n, 1, dtype=torch.int64, device=dev), suffix[:, :d]], 1)
        enc = base[:, None] - suffix + idx[None, :]  # N×q
        # One sort gives the vertex list, each point's vertex indices and the splat CSR layout.
        sorted_enc, perm = torch.sort(enc.reshape(-1))
        first = torch.ones_like(sorted_enc, dtype=torch.bool)
        first[1:] = sorted_enc[1:] != sorted_enc[:-1]
        uniq = sorted_enc[first]
        m = uniq.numel()
        self.num_vertices = m
        ids = torch.cumsum(first.to(torch.int64), 0) - 1
        inv = torch.empty_like(ids)
        inv[perm] = ids
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
        self.norm = SCALE_FIT.get(d, 1.0) * (2.0 * math.pi) ** (d / 2.0) / vol
        # Splat layout (bags of points per vertex, in vertex order).
        self._splat_crow = torch.nonzero(first, as_tuple=False).squeeze(1)
        self._splat_crow = torch.cat([self._splat_crow, self._splat_crow.new_full((1,), n * q)])
        self._splat_col = torch.div(perm, q, rounding_mode="floor")
        self._splat_perm = perm
        self._ops: dict = {}
        self._blur: dict = {}
        self._splat = None
        self._mats: dict = {}

    def filter(self, rows: torch.Tensor) -> torch.Tensor:
        """Gaussian transform of ``N×C`` values, the 0.1 way (:func:`csr_filter`)."""
        return csr_filter(self, rows)


def _csr(crow, col, val, size) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(crow, col, val, size=size, check_invariants=False)


def _csr_matrices(lattice, dtype: torch.dtype):
    """Cached ``(splat (M+1)×N, slice N×(M+1))`` CSR matrices of ``dtype`` (row ``M``: the missing
    neighbour, all zero)."""
    mats = lattice.__dict__.setdefault("_mats", {})
    if dtype not in mats:
        n, q = lattice.vert.shape
        m = lattice.num_vertices
        w = lattice.bary.to(dtype).reshape(-1)
        crow = torch.cat([lattice._splat_crow, lattice._splat_crow[-1:]])
        splat = _csr(crow, lattice._splat_col, w[lattice._splat_perm], (m + 1, n))
        slice_crow = torch.arange(0, n * q + 1, q, dtype=torch.int64, device=w.device)
        slc = _csr(slice_crow, lattice.vert.reshape(-1), w, (n, m + 1))
        mats[dtype] = (splat, slc)
    return mats[dtype]


def csr_filter(lattice, rows: torch.Tensor) -> torch.Tensor:
    """The filtering of wsss 0.1–0.2 on any lattice (``PermutohedralLattice`` or ``ReferenceLattice``):
    splat and slice as CSR matrix products, the blur as ``index_select`` + ``add`` passes over an
    ``(M+1)×C`` table (row ``M`` zero). ``rows``: ``N×C`` float; returns ``N×C``, same dtype."""
    splat, slc = _csr_matrices(lattice, rows.dtype)
    lat = splat @ rows  # (M+1)×C, last row 0
    q = lattice.d + 1
    out = None
    for order in (range(q), range(q - 1, -1, -1)):
        v = lat
        for j in order:
            t = torch.index_select(v, 0, lattice.nbr_plus[j])
            t.add_(torch.index_select(v, 0, lattice.nbr_minus[j])).mul_(0.25)
            v = t.add_(v, alpha=0.5)
        out = v if out is None else out.add_(v)
    return (slc @ out.mul_(0.5)) * lattice.norm
