"""Permutohedral lattice (Adams, Baek & Davis 2010) in pure PyTorch tensor ops.

Splat → blur → slice approximation of the Gaussian transform ``y_p = Σ_q exp(-‖f_p - f_q‖²/2) x_q``
for points ``f ∈ R^D`` (here the scaled RGBXY features of :func:`wsss.filters.bilateral.image_features`).

Construction (once per point set, all batched, no loops over points):

1. Elevate ``f`` onto the hyperplane ``H = {y ∈ R^{D+1}: Σ y = 0}`` with an orthonormal basis of ``H``
   scaled by ``feature_scale·sqrt(2/3)·(D+1)`` (Adams' scaling when ``feature_scale = 1``).
2. Find the enclosing simplex of the lattice ``(D+1)·A*_D``: nearest remainder-0 point, the ranking of
   the residual coordinates, and the ``D+1`` vertices with their barycentric weights.
3. Hash vertices as packed int64 keys (batch index, lattice coordinates divided by ``D+1`` and the
   remainder, in mixed radix). Points of one simplex share its vertices: one ``torch.sort`` of the N
   simplex keys groups the points, one sort of the ``S·(D+1)`` vertex keys of the ``S`` distinct
   simplices gives the vertex list, and the splat layout is expanded from the simplices; the
   neighbours ``v ± u_j`` along the ``D+1`` lattice directions are found with ``searchsorted``
   (missing neighbours point to an extra all-zero row). The 0.1 build, which sorted all ``N·(D+1)``
   keys, is :class:`wsss.filters.permutohedral_reference.ReferenceLattice` (same lattice).

Filtering: splat with a CSR matrix product (weights ``b_r``), blur with ``[1/4, 1/2, 1/4]`` passes along the
``D+1`` directions, averaged over the two orders ``0..D`` and ``D..0`` (one order alone is not symmetric on
a sparse lattice: Adams' filter, and rloss's, are asymmetric by a few %), slice with the transposed CSR product. Multiplying by :attr:`PermutohedralLattice.norm` restores the scale of
the exact transform (Gaussian mass ``(2π)^{D/2}`` over the feature-space volume of one lattice cell),
times a fitted correction ``SCALE_FIT`` (docs/bilateral.md).
"""

from __future__ import annotations

import math

import torch

from wsss.filters.lattice_sum import Bags, LatticeSum

__all__ = ["PermutohedralLattice", "SCALE_FIT"]

#: global correction of the analytic normalization, per feature dimension D. RGBXY (D = 5): 1 / 0.786,
#: the fitted scale of the uncorrected lattice on CamVid frames at σ_rgb 15 / σ_xy 50
#: (benchmarks/bilateral.py --calibrate), so that c_tk ≈ 1 there: the sparse 5-D lattice loses the
#: mass that the blur sends to unpopulated vertices. Spatial only (D = 2): the lattice is fully
#: populated and the analytic normalization is already right (1). docs/bilateral.md.
SCALE_FIT = {5: 1.0 / 0.786}


def _elevate(pts: torch.Tensor, inv_std: float) -> torch.Tensor:
    """``N×D`` float64 points onto the hyperplane ``Σ y = 0`` of ``R^{D+1}``, as ``(D+1)×N``, with the
    orthonormal basis of that plane scaled by ``inv_std`` (column j: ``1/sqrt((j+1)(j+2))`` on rows
    ``0..j``, ``-(j+1)/sqrt((j+1)(j+2))`` on row ``j+1``)."""
    d = pts.shape[1]
    basis = torch.zeros(d + 1, d, dtype=torch.float64, device=pts.device)
    for j in range(d):
        c = 1.0 / math.sqrt((j + 1) * (j + 2))
        basis[: j + 1, j] = c
        basis[j + 1, j] = -(j + 1) * c
    return (pts @ basis.T).mul_(inv_std).t().contiguous()  # (the rounding of the 0.1 build)


def _radix(coords: torch.Tensor, num_batches: int, q: int) -> tuple[list, int]:
    """Mixed radices of the packed vertex keys for ``D×N`` int64 lattice coordinates (one below the
    smallest vertex and one above the largest neighbour per coordinate) and the key range
    ``num_batches·q·Π radix`` (an exact Python int)."""
    if coords.shape[1] == 0:
        radix = [4] * coords.shape[0]
    else:
        radix = (coords.amax(dim=1) - coords.amin(dim=1) + 4).tolist()
    total = num_batches * q
    for rr in radix:
        total *= rr
    return radix, total


def _compress_gaps(values: torch.Tensor) -> torch.Tensor:
    """``D×N`` int64 lattice coordinates with every gap > 4 between occupied values (per row) shrunk
    to 4: vertex and neighbour coordinates stay within ``[v-2, v+1]`` of an occupied value ``v``, so
    no equality between keys changes, and the map is monotone, so neither does their order; the radix
    stays ≤ 4·(#distinct values) (tiny bandwidths)."""
    rows = []
    for v in values:  # loop over the D coordinates
        u, inv = torch.unique(v, return_inverse=True)
        pos = torch.zeros_like(u)
        pos[1:] = torch.cumsum((u[1:] - u[:-1]).clamp_max(4), 0)
        rows.append(pos.index_select(0, inv))
    return torch.stack(rows, 0)


def _neighbour_tables(uniqs: list, starts: list, strides: list, q: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(nbr_plus, nbr_minus)``, each ``q×(M+1)`` int64: the index of vertex ``v ± u_j``, ``M``
    where it is not populated.

    ``uniqs[r]``: the sorted packed keys of remainder class ``r`` (vertices ``starts[r]`` to
    ``starts[r+1] - 1``). ``u_j = 1 - q e_j`` is linear in the packed key, with a carry when the
    remainder is ``q - 1``, and moves class ``r`` to class ``r + 1 (mod q)``: the queries of one
    class and direction are one sorted sequence.
    """
    m = starts[q]
    dev = uniqs[0].device
    nbr_plus = torch.full((q, m + 1), m, dtype=torch.int64, device=dev)
    nbr_minus = torch.full((q, m + 1), m, dtype=torch.int64, device=dev)
    sum_st = int(sum(strides))
    stride_j = torch.tensor(strides[: q - 1] + [0], dtype=torch.int64, device=dev)
    row = torch.arange(q, device=dev)[:, None] * (m + 1)
    for r in range(q):  # loop over the D+1 remainder classes
        t = (r + 1) % q
        src, dst = uniqs[r], uniqs[t]
        if src.numel() == 0 or dst.numel() == 0:
            continue
        step = (sum_st - q if r == q - 1 else 0) + 1 - stride_j  # q
        target = src[None, :] + step[:, None]  # q×M_r, each row sorted
        pos = torch.searchsorted(dst, target).clamp_max_(dst.numel() - 1)
        found = dst.index_select(0, pos.reshape(-1)).view_as(pos) == target
        ids = torch.arange(starts[r], starts[r + 1], device=dev).expand(q, -1)
        nbr_plus[:, starts[r]:starts[r + 1]] = torch.where(found, pos + starts[t], torch.full_like(pos, m))
        nbr_minus.view(-1)[(pos + starts[t] + row).masked_select(found)] = ids.masked_select(found)
    return nbr_plus, nbr_minus


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
        inv_std = feature_scale * math.sqrt(2.0 / 3.0) * q
        # Point-level work in the (D+1)×N layout: one contiguous row per coordinate.
        y = _elevate(points.to(torch.float64), inv_std)  # q×N, columns sum to 0

        # Nearest remainder-0 point q·k and the ranking of the residuals:
        # rank_i = #{j: res_j > res_i} + #{j < i: res_j == res_i} (0 = largest; ties by index),
        # shifted by Σ k and wrapped into 0..D (moving k by ∓1 on the wrapped coordinates).
        k_float = torch.round(y / q)
        res = y - q * k_float
        count = torch.zeros(q, n, dtype=torch.uint8, device=dev)
        for i in range(q):  # the (D+1)·D/2 pairs of coordinates
            for j in range(i + 1, q):
                i_first = res[i] >= res[j]
                count[j] += i_first
                count[i] += ~i_first
        rank = count.to(torch.int64) + k_float.sum(0).to(torch.int64)
        wrap = torch.div(rank, q, rounding_mode="floor")  # -1, 0 or 1
        rank -= q * wrap
        k = k_float.to(torch.int64) - wrap  # q×N
        self.rank = rank.t()  # N×q: rank of each elevated coordinate's residual (0 = largest)

        # Barycentric weights. With vs[k] the residual/(D+1) of rank k (descending):
        # b_r = vs[D-r] - vs[D+1-r] for r = 1..D and b_0 = 1 - vs[0] + vs[D].
        vs = torch.empty(n, q, dtype=torch.float64, device=dev)
        vs.scatter_(1, rank.t(), ((y - q * k) / q).t())  # (the N×q scatter is the faster one)
        vs = vs.t().flip(0)  # vs[D - r], q×N
        bary = torch.empty(q, n, dtype=torch.float64, device=dev)
        bary[1:] = vs[1:] - vs[:d]
        bary[0] = 1.0 - vs[d] + vs[0]
        self.bary = bary.clamp_min_(0.0).t()  # N×q (a view of the q×N rows)

        # Vertex r of the simplex: key_r = q·k + (r if rank <= d - r else r - q) (all coordinates
        # ≡ r mod q). Packed as ((b·R_0 + k_0)·R_1 + k_1)…·q + r with k_i = key_i div q - kmin_i,
        # where key_i div q = k_i - [rank_i > d - r]. Only the first D coordinates are kept.
        nb = int(batch_id.max().item()) + 1 if n > 0 else 1
        base_q = k[:d]
        radix, total = _radix(base_q, nb, q)
        if total >= 2**62:  # sparse coordinates (tiny bandwidths): close the gaps
            base_q = _compress_gaps(base_q)
            radix, total = _radix(base_q, nb, q)
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
        st = torch.tensor(strides + [0], dtype=torch.int64, device=dev)  # coordinate d: not stored
        kmin = base_q.amin(dim=1) - 2 if n > 0 else torch.zeros(d, dtype=torch.int64, device=dev)
        base = batch_id.to(torch.int64) * acc - int((kmin * st[:d]).sum())  # N, multiples of q
        for i in range(d):
            base += base_q[i] * strides[i]

        # Vertex r of point p: key = base_p - Σ_{i: rank_i > d - r} st_i + r, ≡ r (mod q) in its
        # last digit. Keys of different remainders never coincide, so each remainder class is
        # sorted, numbered and searched on its own (q sorts of N keys instead of one of N·q: the
        # class fits in cache, and its neighbour queries are sorted). Vertices are numbered class
        # by class, in key order within a class.
        by_rank = torch.zeros(q, n, dtype=torch.int64, device=dev)
        by_rank.scatter_(0, rank, st[:, None].expand(q, n))  # [k, p]: stride of p's rank-k coordinate
        suffix = torch.cumsum(by_rank.flip(0), 0)  # [r - 1]: Σ_{k > d - r} by_rank[k]
        vert = torch.empty(q, n, dtype=torch.int64, device=dev)
        uniqs, starts, cols, perms, first_at = [], [0], [], [], []
        for r in range(q):  # loop over the D+1 remainder classes
            key_r = base + r if r == 0 else base - suffix[r - 1] + r
            sorted_r, perm_r = torch.sort(key_r, stable=True)  # points of a vertex in order
            first = torch.ones_like(sorted_r, dtype=torch.bool)
            first[1:] = sorted_r[1:] != sorted_r[:-1]
            vert[r].scatter_(0, perm_r, torch.cumsum(first.to(torch.int64), 0).add_(starts[r] - 1))
            uniqs.append(sorted_r[first])
            starts.append(starts[r] + uniqs[r].numel())
            cols.append(perm_r)
            perms.append(perm_r * q + r)
            first_at.append(torch.nonzero(first, as_tuple=False).squeeze(1).add_(r * n))
        m = starts[q]
        self.num_vertices = m
        self.vert = vert.t().contiguous()  # N×q

        # Splat layout: bags of (point, r) entries per vertex, in vertex order.
        self._splat_col = torch.cat(cols)  # point of each entry
        self._splat_perm = torch.cat(perms)  # position of each entry in the N×q ``bary``
        self._splat_crow = torch.cat(first_at + [torch.full((1,), n * q, dtype=torch.int64, device=dev)])
        self._ops: dict = {}  # LatticeSum of this lattice per dtype
        self._blur: dict = {}  # blur_bags per direction
        self.nbr_plus, self.nbr_minus = _neighbour_tables(uniqs, starts, strides, q)
        vol = q ** (d - 0.5) / inv_std**d
        self.norm = SCALE_FIT.get(d, 1.0) * (2.0 * math.pi) ** (d / 2.0) / vol

    def splat_bags(self) -> Bags:
        """Splat layout: ``M`` bags (one per vertex) of the points in it, ``N·(D+1)`` entries in
        vertex order, float64 barycentric weights."""
        return Bags(self._splat_col, self._splat_crow, self.bary.reshape(-1).index_select(0, self._splat_perm))

    def blur_bags(self, j: int) -> Bags:
        """``B_j = [1/4, 1/2, 1/4]`` along ``u_j`` as ``M`` bags: the vertex itself (1/2) and its
        populated neighbours ``v ± u_j`` (1/4 each; mass sent to unpopulated vertices is dropped)."""
        if j in self._blur:
            return self._blur[j]
        m = self.num_vertices
        dev = self.vert.device
        idx = torch.stack([torch.arange(m, device=dev), self.nbr_minus[j, :m], self.nbr_plus[j, :m]], 1)
        keep = idx < m
        offsets = torch.zeros(m + 1, dtype=torch.int64, device=dev)
        torch.cumsum(keep.sum(1), 0, out=offsets[1:])
        weights = torch.full((int(offsets[-1]),), 0.25, dtype=torch.float64, device=dev)
        weights[offsets[:-1]] = 0.5  # the first entry of each bag is the vertex itself
        self._blur[j] = Bags(idx.masked_select(keep), offsets, weights)
        return self._blur[j]

    def filter(self, rows: torch.Tensor) -> torch.Tensor:
        """Gaussian transform of ``N×C`` values (float32/float64): returns ``N×C``, same dtype.

        Splat, symmetrized blur ``½(B_0…B_D + B_D…B_0)``, slice and ``norm`` as one
        :class:`~wsss.filters.lattice_sum.LatticeSum` (layout cached per dtype)."""
        op = self._ops.get(rows.dtype)
        if op is None:
            op = LatticeSum([self], dtype=rows.dtype)
            self._ops[rows.dtype] = op
        return op(rows)

    def self_weight(self) -> torch.Tensor:
        """``N`` float64: the exact diagonal ``W̃_pp`` of this lattice operator.

        ``W̃_pp = norm · Σ_{r,r'} b_r b_r' G[v_r, v_r']`` with ``G`` the symmetrized blur. With one
        ``[1/4, 1/2, 1/4]`` pass per direction, ``G[v_r, v_r']`` (two vertices of one simplex) is the
        sum over the two (three if ``r = r'``) lattice paths ``n ∈ {-1, 0, 1}^{D+1}``,
        ``Σ_j n_j u_j = v_r - v_r'``, of ``(1/4)^{#moves} (1/2)^{#stays}``, counted only if every
        intermediate vertex exists (the blur drops mass sent to unpopulated vertices), averaged over
        the two pass orders. Paths are walked with the neighbour tables: ``O((D+1)^3)`` gathers of
        length ``N``; computed on demand.
        """
        q = self.d + 1
        m = self.num_vertices
        n = self.vert.shape[0]
        total = torch.zeros(n, dtype=torch.float64, device=self.vert.device)
        orders = [list(range(q)), list(range(q - 1, -1, -1))]

        def walk(start: torch.Tensor, steps: torch.Tensor, order) -> torch.Tensor:
            x = start
            for j in order:
                s_j = steps[:, j]
                x = torch.where(s_j > 0, self.nbr_plus[j][x], torch.where(s_j < 0, self.nbr_minus[j][x], x))
            return x != m

        for rs in range(q):
            for rt in range(q):
                lo, hi = sorted((rs, rt))
                # v_rt - v_rs = sign · Σ_{j: d-hi < rank_j <= d-lo} u_j
                in_a = (self.rank > self.d - hi) & (self.rank <= self.d - lo)
                sign = 1 if rt > rs else -1
                cnt = int(hi - lo)
                paths = [(sign * in_a.to(torch.int64), 0.25**cnt * 0.5 ** (q - cnt)),
                         (-sign * (~in_a).to(torch.int64), 0.5**cnt * 0.25 ** (q - cnt))]
                if rs == rt:  # A empty: stay everywhere (always exists), or go round (+1 or -1 on all)
                    paths = [(torch.ones_like(self.rank), 0.25**q), (-torch.ones_like(self.rank), 0.25**q)]
                    contrib = torch.full((n,), 0.5**q, dtype=torch.float64, device=total.device)
                else:
                    contrib = torch.zeros(n, dtype=torch.float64, device=total.device)
                for steps, wgt in paths:
                    for order in orders:
                        contrib += 0.5 * wgt * walk(self.vert[:, rs], steps, order).to(torch.float64)
                total += self.bary[:, rs] * self.bary[:, rt] * contrib
        return self.norm * total
