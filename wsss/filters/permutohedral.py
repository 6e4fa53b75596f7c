"""Permutohedral lattice (Adams, Baek & Davis 2010) in pure PyTorch tensor ops.

Splat → blur → slice approximation of the Gaussian transform ``y_p = Σ_q exp(-‖f_p - f_q‖²/2) x_q``
for points ``f ∈ R^D`` (here the scaled RGBXY features of :func:`wsss.filters.bilateral.image_features`).

Construction (once per point set, all batched, no loops over points):

1. Elevate ``f`` onto the hyperplane ``H = {y ∈ R^{D+1}: Σ y = 0}`` with an orthonormal basis of ``H``
   scaled by ``feature_scale·sqrt(2/3)·(D+1)`` (Adams' scaling when ``feature_scale = 1``).
2. Find the enclosing simplex of the lattice ``(D+1)·A*_D``: nearest remainder-0 point, the ranking of
   the residual coordinates, and the ``D+1`` vertices with their barycentric weights.
3. Hash vertices as packed int64 keys (batch index, lattice coordinates divided by ``D+1`` and the
   remainder, in mixed radix). Points of one simplex share its vertices: one sort of the N simplex
   keys (base point and ranks) groups the points, one sort of the ``S·(D+1)`` vertex keys of the
   ``S`` distinct simplices gives the vertex list (``unique_consecutive``), and the splat layout is
   expanded from the simplices with one running index (cumulative sum) over its ``N·(D+1)`` entries;
   the neighbours ``v ± u_j`` along the ``D+1`` lattice directions are found with one
   ``searchsorted`` for all directions (missing neighbours point to an extra all-zero row). On the
   CPU, key lists of 8192–32767 entries are padded to 32768 so that ``torch.sort`` takes its radix
   sort (:func:`_sort_keys`). The 0.1 build, which sorted all ``N·(D+1)`` keys, is
   :class:`wsss.filters.permutohedral_reference.ReferenceLattice`, the simplex build that preceded
   this one :class:`~wsss.filters.permutohedral_reference.SimplexLattice` (same lattice).

Filtering (:class:`wsss.filters.lattice_sum.LatticeSum`, weighted gathers applied with
``embedding_bag``): splat (per vertex, its points with weights ``b_r``), blur with ``[1/4, 1/2, 1/4]``
passes along the ``D+1`` directions, averaged over the two orders ``0..D`` and ``D..0`` (one order alone
is not symmetric on a sparse lattice: Adams' filter, and rloss's, are asymmetric by a few %), slice (per
point, its ``D+1`` vertices with weights ``b_r``). Multiplying by :attr:`PermutohedralLattice.norm` restores the scale of
the exact transform (Gaussian mass ``(2π)^{D/2}`` over the feature-space volume of one lattice cell),
times a fitted correction ``SCALE_FIT`` (docs/bilateral.md).
"""

from __future__ import annotations

import functools
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


#: ``torch.sort`` on the CPU takes its radix sort only for 1-D integer tensors of at least this many
#: elements (``at::internal::GRAIN_SIZE``); below, its comparison sort costs ≈ 50 ns per element, so
#: that 16 384 keys sort ≈ 2.5× faster padded to this length (measured, docs/bilateral.md).
_RADIX_SORT_MIN = 32768
#: shortest key list worth padding (below, the comparison sort is the faster one)
_PAD_SORT_MIN = 8192


@functools.lru_cache(maxsize=None)
def _basis(d: int, device: torch.device) -> torch.Tensor:
    """``(D+1)×D`` float64 orthonormal basis of the plane ``Σ y = 0`` (column j: ``1/sqrt((j+1)(j+2))``
    on rows ``0..j``, ``-(j+1)/sqrt((j+1)(j+2))`` on row ``j+1``), made once per (D, device)."""
    basis = torch.zeros(d + 1, d, dtype=torch.float64)
    for j in range(d):
        c = 1.0 / math.sqrt((j + 1) * (j + 2))
        basis[: j + 1, j] = c
        basis[j + 1, j] = -(j + 1) * c
    return basis.to(device)


def _elevate(pts: torch.Tensor, inv_std: float) -> torch.Tensor:
    """``N×D`` float64 points onto the hyperplane ``Σ y = 0`` of ``R^{D+1}``, as ``(D+1)×N``, with the
    orthonormal basis of that plane (:func:`_basis`) scaled by ``inv_std``."""
    y = pts @ _basis(pts.shape[1], pts.device).T  # N×(D+1) (the rounding of the 0.1 build)
    return torch.mul(y.t(), inv_std, out=y.new_empty(y.shape[1], y.shape[0]))


@functools.lru_cache(maxsize=None)
def _cpu_radix_sort() -> bool:
    """Whether this torch build sorts long CPU integer tensors with its radix sort (built with FBGEMM
    and OpenMP); without it, padding would only lengthen the comparison sort."""
    return torch.backends.openmp.is_available() and "USE_FBGEMM" in torch.__config__.show()


def _sort_keys(keys: torch.Tensor, bound: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.sort`` of ``K`` int64 keys in ``[0, bound)``: ``(sorted K, permutation K)``. On the CPU
    a list of ``_PAD_SORT_MIN ≤ K < _RADIX_SORT_MIN`` keys is padded with ``bound`` up to
    ``_RADIX_SORT_MIN`` (the pads sort last) so that torch takes its radix sort."""
    k = keys.numel()
    if keys.device.type != "cpu" or not _PAD_SORT_MIN <= k < _RADIX_SORT_MIN or not _cpu_radix_sort():
        return torch.sort(keys)
    padded = torch.cat([keys, keys.new_full((_RADIX_SORT_MIN - k,), bound)])
    values, perm = torch.sort(padded)
    return values[:k], perm[:k]


def _radix(lo: list, hi: list, num_batches: int, q: int) -> tuple[list, int]:
    """Mixed radices of the packed vertex keys for lattice coordinates with per-coordinate minima
    ``lo`` and maxima ``hi`` (one below the smallest vertex and one above the largest neighbour per
    coordinate) and the key range ``num_batches·q·Π radix`` (an exact Python int)."""
    radix = [h - l + 4 for l, h in zip(lo, hi)]
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


def _ranks(res: torch.Tensor) -> torch.Tensor:
    """``(D+1)×N`` int8 ranks of the ``(D+1)×N`` float64 residuals ``res`` per point:
    ``rank_i = #{j: res_j > res_i} + #{j < i: res_j == res_i}`` (0 = largest; ties by index), as
    ``(D - i) + Σ_{j<i} [res_j ≥ res_i] − Σ_{j>i} [res_i ≥ res_j]``: one comparison per pair, counted
    in int8 (bool comparisons viewed as 0/1 bytes)."""
    q = res.shape[0]
    rank = torch.arange(q - 1, -1, -1, dtype=torch.int8, device=res.device)[:, None].repeat(1, res.shape[1])
    for i in range(q - 1):  # each coordinate against the later ones, (D - i)×N at once
        ge = torch.ge(res[i], res[i + 1:]).view(torch.int8)
        rank[i + 1:] += ge
        rank[i] -= ge.sum(0, dtype=torch.int8)
    return rank


def _neighbour_tables(uniq: torch.Tensor, last: torch.Tensor, strides: list, q: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(nbr_plus, nbr_minus)``, each ``q×(M+1)`` int64: the index of vertex ``v ± u_j`` in the
    sorted packed keys ``uniq`` (M), ``M`` where it is not populated. ``u_j = 1 - q e_j`` is linear in
    the packed key, with a carry where the remainder is ``q - 1`` (``last``, M bool); all ``q``
    directions are searched at once."""
    m = uniq.numel()
    dev = uniq.device
    carry = last.to(torch.int64) * (sum(strides) - q)
    step = torch.tensor([1 - s for s in strides] + [1], dtype=torch.int64, device=dev)
    target = (uniq + carry)[None, :] + step[:, None]  # q×M keys of v + u_j
    pos = torch.searchsorted(uniq, target).clamp_max_(m - 1)
    found = uniq[pos] == target
    nbr_plus = torch.full((q, m + 1), m, dtype=torch.int64, device=dev)
    nbr_plus[:, :m] = torch.where(found, pos, m)
    nbr_minus = torch.full((q, m + 1), m, dtype=torch.int64, device=dev)
    # v = w + u_j  ⇔  w = v - u_j; the missing ones land in column M, reset after
    nbr_minus.scatter_(1, nbr_plus[:, :m], torch.arange(m, device=dev).expand(q, m))
    nbr_minus[:, m] = m
    return nbr_plus, nbr_minus



def key_strides(radix: list[int], q: int, total: int) -> tuple[list[int], int]:
    """Strides of the packed lattice keys ``((b·R_0 + k_0)·R_1 + k_1)…·q + r``: ``(strides, batch stride)``,
    ``strides[i]`` (Python ints) the stride of coordinate ``i`` given its mixed radices ``radix`` and ``q = D+1``.
    Raises ``ValueError`` when the key range ``total`` does not fit int64 (with a margin)."""
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
    return list(reversed(strides)), acc

class PermutohedralLattice:
    """Lattice built once for ``N`` points; :meth:`filter` applies the Gaussian transform.

    Args:
        points: ``N×D`` float (float64 recommended) features; the kernel is ``exp(-‖Δf‖²/2)``.
        batch_id: ``N`` int64 group of each point (points of different groups never interact).
        feature_scale: lattice refinement factor relative to Adams' scaling (default 1).

    Attributes:
        vert: ``N×(D+1)`` int64 vertex indices of each point's simplex (into ``0..M-1``).
        bary: ``N×(D+1)`` float64 barycentric weights (non-negative, sum 1).
        rank: ``N×(D+1)`` int64 rank of each elevated coordinate's residual (0 = largest).
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

        # Nearest remainder-0 point q·k and the ranking of the residuals, shifted by Σ k and wrapped
        # into 0..D (moving k by ∓1 on the wrapped coordinates).
        k_float = torch.round(y / q)
        rank = _ranks(torch.sub(y, k_float, alpha=q)).add_(k_float.sum(0).to(torch.int8))  # Σ k ∈ [-D, D]
        wrap = torch.gt(rank, d).view(torch.int8) - torch.lt(rank, 0).view(torch.int8)  # -1, 0 or 1
        rank = rank.sub_(wrap, alpha=q).to(torch.int64)  # q×N
        k = k_float.to(torch.int64).sub_(wrap)  # q×N
        self.rank = rank.t()  # N×q

        # Barycentric weights. With vs[k] the residual/(D+1) of rank k (descending):
        # b_r = vs[D-r] - vs[D+1-r] for r = 1..D and b_0 = 1 - vs[0] + vs[D].
        vs = torch.empty(n, q, dtype=torch.float64, device=dev)
        vs.scatter_(1, self.rank, torch.sub(y, k, alpha=q).div_(q).t())  # (the N×q scatter is the faster one)
        vs = vs.t().flip(0)  # vs[D - r], q×N
        bary = torch.empty(q, n, dtype=torch.float64, device=dev)
        torch.sub(vs[1:], vs[:d], out=bary[1:])
        torch.add(torch.rsub(vs[d], 1.0), vs[0], out=bary[0])
        bary.clamp_min_(0.0)
        self.bary = bary.t()  # N×q (a view of the q×N rows)

        # Vertex r of the simplex: key_r = q·k + (r if rank <= d - r else r - q) (all coordinates
        # ≡ r mod q). Packed as ((b·R_0 + k_0)·R_1 + k_1)…·q + r with k_i = key_i div q - kmin_i,
        # where key_i div q = k_i - [rank_i > d - r]. Only the first D coordinates are kept.
        nb = int(batch_id.max()) + 1 if n > 0 else 1
        base_q = k[:d]
        lo, hi = torch.stack(torch.aminmax(base_q, dim=1)).tolist() if n > 0 else ([0] * d, [0] * d)
        radix, total = _radix(lo, hi, nb, q)
        if total // q * q**q >= 2**62:  # sparse coordinates (tiny bandwidths): close the gaps
            base_q = _compress_gaps(base_q)
            lo, hi = torch.stack(torch.aminmax(base_q, dim=1)).tolist()
            radix, total = _radix(lo, hi, nb, q)
        strides, acc = key_strides(radix, q, total)
        base = (base_q * torch.tensor(strides, dtype=torch.int64, device=dev)[:, None]).sum(0)
        base -= sum((l - 2) * s for l, s in zip(lo, strides))  # N, multiples of q (kmin = lo - 2)
        if nb > 1:
            base.add_(batch_id.to(torch.int64), alpha=acc)

        # Points of one simplex share its vertices: sort the N simplex keys (base, rank), build the
        # vertices of the S distinct simplices only (one sort of S·q keys), then expand to the points.
        sbound = total // q * q**q
        if sbound < 2**62:
            code = (rank * torch.tensor([q**j for j in range(q)], device=dev)[:, None]).sum(0)  # int64
            skey = torch.add(code, base, alpha=q ** (q - 1))  # (base / q)·q^q + Σ_j rank_j q^j
        else:  # no room for the rank in the key: every point is its own simplex
            skey = torch.arange(n, dtype=torch.int64, device=dev)
            sbound = max(n, 1)
        sorted_skey, pperm = _sort_keys(skey, sbound)
        _, sid, scount = torch.unique_consecutive(sorted_skey, return_inverse=True, return_counts=True)
        ns = scount.numel()
        send = torch.cumsum(scount, 0)
        sstart = send - scount  # first sorted point of each simplex
        sinv = torch.empty_like(sid).scatter_(0, pperm, sid)  # N: simplex of each point
        rep = pperm.index_select(0, sstart)  # a point of each simplex
        # enc[s, r] = base_s - Σ_{i: rank_i > d - r} (stride_i - 1) (r terms: the remainder r), as a
        # running sum over the coordinates in descending rank (column q - rank_i, column 0 empty).
        w = torch.zeros(ns, q + 1, dtype=torch.int64, device=dev)
        st1 = torch.tensor([s - 1 for s in strides] + [-1], dtype=torch.int64, device=dev)
        w.scatter_(1, torch.rsub(rank.index_select(1, rep), q).t(), st1.expand(ns, q))
        enc = base.index_select(0, rep)[:, None] - torch.cumsum(w[:, :q], 1)  # S×q keys
        sorted_enc, eperm = _sort_keys(enc.reshape(-1), total)
        uniq, vid, vcount = torch.unique_consecutive(sorted_enc, return_inverse=True, return_counts=True)
        m = uniq.numel()
        self.num_vertices = m
        svert = torch.empty_like(vid).scatter_(0, eperm, vid)  # S·q: vertex of each (simplex, r)
        self.vert = svert.view(ns, q).index_select(0, sinv)  # N×q
        self._simplices = (sinv, rep)  # simplex of each point, a point of each simplex

        # Splat bags: per vertex its (simplex, r) pairs in key order, each expanded to the points of
        # the simplex (consecutive in the sorted order), read from the tables in sorted point order.
        # Entry e of pair t reads g(e) = r_t·N + sstart_t + (e - offset_t): +1 within a pair, so g is
        # the running sum of 1s with the jump to the next pair's start at each pair's first entry.
        pair_s = torch.div(eperm, q, rounding_mode="floor")
        pair_r = eperm - pair_s * q  # the remainder of the pair's vertex
        g_start = torch.add(sstart.index_select(0, pair_s), pair_r, alpha=n)  # S·q
        count = scount.index_select(0, pair_s)
        offset = torch.cumsum(count, 0) - count  # first entry of each pair
        jump = torch.ones(n * q, dtype=torch.int64, device=dev)
        jump.scatter_(0, offset, g_start - torch.cat([g_start.new_zeros(1), g_start[:-1] + count[:-1] - 1]))
        g = torch.cumsum(jump, 0)  # r·N + position in the sorted points
        first_pair = torch.cumsum(vcount, 0) - vcount  # pairs are grouped by vertex
        bags_off = torch.cat([offset.index_select(0, first_pair), offset.new_full((1,), n * q)])
        at = (pperm + torch.arange(0, n * q, n, device=dev)[:, None]).view(-1).index_select(0, g)  # r·N + point
        itype = torch.int32 if n * q < 2**28 else torch.int64  # (the layouts applied are int32)
        self._splat = Bags(pperm.to(itype).repeat(q).index_select(0, g), bags_off.to(itype),
                           bary.view(-1).index_select(0, at), n)
        self._ops: dict = {}  # LatticeSum of this lattice per dtype
        self._blur = None  # (indices, offsets, weights) of all blur directions
        last = pair_r.index_select(0, first_pair) == d  # vertices of remainder D
        self.nbr_plus, self.nbr_minus = _neighbour_tables(uniq, last, strides, q)
        vol = q ** (d - 0.5) / inv_std**d
        self.norm = SCALE_FIT.get(d, 1.0) * (2.0 * math.pi) ** (d / 2.0) / vol

    def splat_bags(self) -> Bags:
        """Splat layout: ``M`` bags (one per vertex) of the points in it, ``N·(D+1)`` entries, int32
        indices and offsets (int64 from 2^28 entries), float64 barycentric weights."""
        return self._splat

    def blur_bags(self, j: int, dtype: torch.dtype = torch.float64) -> Bags:
        """``B_j = [1/4, 1/2, 1/4]`` along ``u_j`` as ``M`` bags of three entries: the vertex itself
        (1/2) and its neighbours ``v ∓ u_j`` (1/4 each; an unpopulated neighbour is read from the
        vertex itself with weight 0: the mass the blur sends there is dropped). Weights of ``dtype``;
        indices and offsets int32 (int64 beyond 2^31 entries); the layout of all ``D+1`` directions
        is made once."""
        if self._blur is None:
            m = self.num_vertices
            dev = self.vert.device
            q = self.d + 1
            own = torch.arange(m, device=dev).expand(q, m)
            idx = torch.stack([own, self.nbr_minus[:, :m], self.nbr_plus[:, :m]], 2)  # q×M×3
            missing = idx == m
            idx = torch.where(missing, own[:, :, None], idx)
            wts = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64, device=dev).expand(q, m, 3)
            itype = torch.int32 if 3 * m < 2**31 else torch.int64
            self._blur = (idx.to(itype), torch.arange(0, 3 * m + 1, 3, dtype=itype, device=dev),
                          {torch.float64: wts.masked_fill(missing, 0.0)})
        idx, offsets, wts = self._blur
        if dtype not in wts:
            wts[dtype] = wts[torch.float64].to(dtype)
        return Bags(idx[j].view(-1), offsets, wts[dtype][j].view(-1), self.num_vertices)

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
        the two pass orders. ``G`` is symmetric and its entries are exact dyadic numbers, so the
        ``(D+1)(D+2)/2`` pairs ``r ≤ r'`` are walked, once per distinct simplex (the points of one
        simplex share its vertices), all pairs and both paths at once: ``2·(D+1)`` gathers of
        ``(D+1)(D+2)·S`` vertex indices; computed on demand.
        """
        q = self.d + 1
        m = self.num_vertices
        n = self.vert.shape[0]
        dev = self.vert.device
        sid, rep = getattr(self, "_simplices", (None, None))
        if sid is None:  # (a build that does not record its simplices: every point its own)
            sid = rep = torch.arange(n, device=dev)
        vert = self.vert.index_select(0, rep)  # S×q
        rank = self.rank.index_select(0, rep)  # S×q
        pairs = [(r, t) for r in range(q) for t in range(r, q)]
        lo = torch.tensor([r for r, _ in pairs], device=dev)
        hi = torch.tensor([t for _, t in pairs], device=dev)[:, None, None]
        # v_t - v_r = Σ_{j: d-t < rank_j <= d-r} u_j: the path along +u_j over those j, or the one
        # along -u_j over the others (r = t: all +1 or all -1, going round; staying is counted below)
        in_a = (rank[None] > self.d - hi) & (rank[None] <= self.d - lo[:, None, None])  # P×S×q
        moves = torch.stack([in_a | (lo[:, None, None] == hi), ~in_a], 1)  # P×2×S×q bool
        sign = torch.tensor([1, -1], device=dev)[:, None]  # path 0 along +u_j, path 1 along -u_j
        cnt = [t - r for r, t in pairs]
        wgt = torch.tensor([[0.25**c * 0.5 ** (q - c), 0.5**c * 0.25 ** (q - c)] if c else [0.25**q] * 2
                            for c in cnt], dtype=torch.float64, device=dev)  # P×2
        tables = torch.stack([self.nbr_minus, torch.arange(m + 1, device=dev).expand(q, m + 1),
                              self.nbr_plus], 1).view(q, -1)  # q×3(M+1): steps -1, 0, +1
        start = vert.t().index_select(0, lo)[:, None].expand(-1, 2, -1)  # P×2×S
        reached = torch.zeros(start.shape, dtype=torch.float64, device=dev)
        for order in (range(q), range(q - 1, -1, -1)):
            x = start
            for j in order:
                at = (moves[..., j] * sign + 1) * (m + 1) + x
                x = tables[j].index_select(0, at.view(-1)).view(x.shape)
            reached += x != m
        contrib = (0.5 * wgt[:, :, None] * reached).sum(1)  # P×S
        total = torch.zeros(n, dtype=torch.float64, device=dev)
        for i, (r, t) in enumerate(pairs):
            c = contrib[i] + 0.5**q if r == t else 2.0 * contrib[i]  # (r = t: staying put, always there)
            total += c.index_select(0, sid) * self.bary[:, r] * self.bary[:, t]
        return self.norm * total
