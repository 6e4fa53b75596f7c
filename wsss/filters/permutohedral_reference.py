"""Earlier permutohedral lattice builds and filterings, kept as references: the build of wsss 0.1
(:class:`ReferenceLattice`, one sort of all ``N·(D+1)`` vertex keys), the simplex-level build that
replaced it (:class:`SimplexLattice`) and the CSR / ``index_select`` filtering of wsss 0.1–0.2
(:func:`csr_filter`). Tests check that :class:`wsss.filters.PermutohedralLattice` builds and applies
the same operator, and ``benchmarks/bilateral.py`` / ``benchmarks/crf_engines.py`` time old and new
in one run. Not used by the toolkit otherwise."""

from __future__ import annotations

import math
import warnings

import torch

from wsss.filters.lattice_sum import Bags
from wsss.filters.permutohedral import SCALE_FIT, PermutohedralLattice, _compress_gaps, key_strides

__all__ = ["ReferenceLattice", "SimplexLattice", "csr_filter"]


def _simplex_elevate(pts: torch.Tensor, inv_std: float) -> torch.Tensor:
    """``N×D`` float64 points onto ``Σ y = 0`` as ``(D+1)×N`` (basis made on every call)."""
    d = pts.shape[1]
    basis = torch.zeros(d + 1, d, dtype=torch.float64, device=pts.device)
    for j in range(d):
        c = 1.0 / math.sqrt((j + 1) * (j + 2))
        basis[: j + 1, j] = c
        basis[j + 1, j] = -(j + 1) * c
    return (pts @ basis.T).mul_(inv_std).t().contiguous()


def _simplex_radix(coords: torch.Tensor, num_batches: int, q: int) -> tuple[list, int]:
    """Mixed radices of the packed keys for ``D×N`` int64 coordinates and the key range."""
    if coords.shape[1] == 0:
        radix = [4] * coords.shape[0]
    else:
        radix = (coords.amax(dim=1) - coords.amin(dim=1) + 4).tolist()
    total = num_batches * q
    for rr in radix:
        total *= rr
    return radix, total


def _simplex_neighbour_tables(uniq: torch.Tensor, strides: list, q: int) -> tuple[torch.Tensor, torch.Tensor]:
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



class _PointBags:
    """The splat and blur layouts of the 0.1 and simplex builds, from their ``_splat_col`` /
    ``_splat_crow`` / ``_splat_perm`` attributes and neighbour tables (bags of varying length)."""

    def splat_bags(self) -> Bags:
        """Splat layout: ``M`` bags (one per vertex) of the points in it, ``N·(D+1)`` entries in
        vertex order, float64 barycentric weights."""
        if self._splat is None:
            self._splat = Bags(self._splat_col, self._splat_crow,
                               self.bary.reshape(-1).index_select(0, self._splat_perm))
        return self._splat

    def blur_bags(self, j: int, dtype: torch.dtype = torch.float64) -> Bags:
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



class SimplexLattice(_PointBags, PermutohedralLattice):
    """:class:`~wsss.filters.PermutohedralLattice` built the way of the simplex-level build that
    replaced the 0.1 build (N simplex keys sorted, then the S·(D+1) vertex keys of the S distinct
    simplices; the splat layout expanded with ``repeat_interleave``; one ``searchsorted`` per
    direction): the reference of the "new / simplex build" ratio. Same arguments, attributes and
    filtering."""

    def __init__(self, points: torch.Tensor, batch_id: torch.Tensor, feature_scale: float = 1.0):
        if points.dim() != 2:
            raise ValueError(f"points must be N×D, got {tuple(points.shape)}")
        dev = points.device
        n, d = points.shape
        q = d + 1
        self.d = d
        inv_std = feature_scale * math.sqrt(2.0 / 3.0) * q
        # Point-level work in the (D+1)×N layout: one contiguous row per coordinate.
        y = _simplex_elevate(points.to(torch.float64), inv_std)  # q×N, columns sum to 0

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
        radix, total = _simplex_radix(base_q, nb, q)
        if total // q * q**q >= 2**62:  # sparse coordinates (tiny bandwidths): close the gaps
            base_q = _compress_gaps(base_q)
            radix, total = _simplex_radix(base_q, nb, q)
        strides, acc = key_strides(radix, q, total)
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
        self.nbr_plus, self.nbr_minus = _simplex_neighbour_tables(uniq, strides, q)
        vol = q ** (d - 0.5) / inv_std**d
        self.norm = SCALE_FIT.get(d, 1.0) * (2.0 * math.pi) ** (d / 2.0) / vol




class ReferenceLattice(_PointBags, PermutohedralLattice):
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
        strides, acc = key_strides(radix, q, total)
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
        bags = lattice.splat_bags()
        crow = torch.cat([bags.offsets, bags.offsets[-1:]])
        splat = _csr(crow, bags.indices, bags.weights.to(dtype), (m + 1, n))
        w = lattice.bary.to(dtype).reshape(-1)
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
