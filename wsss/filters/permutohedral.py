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

Filtering (:class:`wsss.filters.lattice_sum.LatticeSum`, weighted gathers applied with
``embedding_bag``): splat (per vertex, its points with weights ``b_r``), blur with ``[1/4, 1/2, 1/4]``
passes along the ``D+1`` directions, averaged over the two orders ``0..D`` and ``D..0`` (one order alone
is not symmetric on a sparse lattice: Adams' filter, and rloss's, are asymmetric by a few %), slice (per
point, its ``D+1`` vertices with weights ``b_r``). Multiplying by :attr:`PermutohedralLattice.norm` restores the scale of
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


def _neighbour_tables(uniq: torch.Tensor, strides: list, q: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(nbr_plus, nbr_minus)``, each ``q×(M+1)`` int64: the index of vertex ``v ± u_j`` in the
    sorted packed keys ``uniq`` (M), ``M`` where it is not populated. ``u_j = 1 - q e_j`` is linear in
    the packed key, with a carry when the remainder is ``q - 1``."""
    m = uniq.numel()
    dev = uniq.device
    rem = uniq % q
    carry = (rem == q - 1).to(torch.int64)
    sum_st = int(sum(strides))
    nbr_plus = torch.full((q, m + 1), m, dtype=torch.int64, device=dev)
    nbr_minus = torch.full((q, m + 1), m, dtype=torch.int64, device=dev)
    src = torch.arange(m, device=dev)
    for j in range(q):  # loop over the D+1 lattice directions
        step = carry * (sum_st - q) + 1 - (strides[j] if j < q - 1 else 0)
        target = uniq + step
        pos = torch.searchsorted(uniq, target).clamp_max_(m - 1)
        found = uniq[pos] == target
        nbr_plus[j, :m] = torch.where(found, pos, torch.full_like(pos, m))
        nbr_minus[j, pos[found]] = src[found]
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
        if total // q * q**q >= 2**62:  # sparse coordinates (tiny bandwidths): close the gaps
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

        # Points of one simplex share its vertices: sort the N simplex keys (base, rank), build the
        # vertices of the S distinct simplices only (one sort of S·q keys), then expand to the points.
        if total // q * q**q < 2**62:
            skey = base // q * q**q
            for j in range(q):
                skey += rank[j] * q**j
        else:  # no room for the rank in the key: every point is its own simplex
            skey = torch.arange(n, dtype=torch.int64, device=dev)
        sorted_skey, pperm = torch.sort(skey)
        sfirst = torch.ones_like(sorted_skey, dtype=torch.bool)
        sfirst[1:] = sorted_skey[1:] != sorted_skey[:-1]
        sstart = torch.nonzero(sfirst, as_tuple=False).squeeze(1)  # S: first sorted point of each simplex
        ns = sstart.numel()
        scount = torch.diff(sstart, append=torch.tensor([n], device=dev))
        sinv = torch.empty(n, dtype=torch.int64, device=dev)
        sinv[pperm] = torch.cumsum(sfirst.to(torch.int64), 0) - 1
        rep = pperm.index_select(0, sstart)  # a point of each simplex
        by_rank = torch.zeros(ns, q, dtype=torch.int64, device=dev)
        by_rank.scatter_(1, rank.index_select(1, rep).t(), st.expand(ns, q))  # [s, j]: stride of the rank-j coordinate
        # suffix[s, r] = Σ_{j > d - r} by_rank[s, j]
        suffix = torch.cumsum(by_rank.flip(1), 1)
        suffix = torch.cat([torch.zeros(ns, 1, dtype=torch.int64, device=dev), suffix[:, :d]], 1)
        enc = base.index_select(0, rep)[:, None] - suffix + torch.arange(q, device=dev)[None, :]  # S×q keys
        sorted_enc, eperm = torch.sort(enc.reshape(-1))
        first = torch.ones_like(sorted_enc, dtype=torch.bool)
        first[1:] = sorted_enc[1:] != sorted_enc[:-1]
        uniq = sorted_enc[first]
        m = uniq.numel()
        self.num_vertices = m
        svert = torch.empty(ns * q, dtype=torch.int64, device=dev)
        svert[eperm] = torch.cumsum(first.to(torch.int64), 0) - 1
        self.vert = svert.view(ns, q).index_select(0, sinv)  # N×q

        # Splat CSR layout: the (simplex, r) pairs in vertex order, each expanded to its points.
        pair_s = torch.div(eperm, q, rounding_mode="floor")
        count = scount.index_select(0, pair_s)
        offset = torch.cumsum(count, 0) - count  # first entry of each pair
        entry = torch.repeat_interleave(sstart.index_select(0, pair_s) - offset, count)
        entry += torch.arange(n * q, device=dev)  # position in pperm of each entry's point
        self._splat_col = pperm.index_select(0, entry)
        self._splat_perm = torch.repeat_interleave(eperm - pair_s * q, count).add_(self._splat_col, alpha=q)
        self._splat_crow = torch.full((m + 1,), n * q, dtype=torch.int64, device=dev)  # bag offsets
        self._splat_crow[:m] = offset[torch.nonzero(first, as_tuple=False).squeeze(1)]
        self._ops: dict = {}  # LatticeSum of this lattice per dtype
        self._blur: dict = {}  # blur_bags per direction
        self._splat = None  # splat_bags
        self.nbr_plus, self.nbr_minus = _neighbour_tables(uniq, strides, q)
        vol = q ** (d - 0.5) / inv_std**d
        self.norm = SCALE_FIT.get(d, 1.0) * (2.0 * math.pi) ** (d / 2.0) / vol

    def splat_bags(self) -> Bags:
        """Splat layout: ``M`` bags (one per vertex) of the points in it, ``N·(D+1)`` entries in
        vertex order, float64 barycentric weights."""
        if self._splat is None:
            self._splat = Bags(self._splat_col, self._splat_crow,
                               self.bary.reshape(-1).index_select(0, self._splat_perm))
        return self._splat

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
