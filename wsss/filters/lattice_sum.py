"""Lattice filtering as weighted gathers ("embedding bags"): splat, blur and slice of one or several
permutohedral lattices over the same points, fused into one operator.

A sparse linear map ``y_r = Σ_{e ∈ bag r} w_e · x[idx_e]`` is stored as a :class:`Bags` layout
(entry indices, bag offsets, entry weights) and applied with ``torch.nn.functional.embedding_bag``
(mode ``sum``, per-entry weights): one pass that reads the gathered rows of ``x`` and writes each
output row once, with all ``C`` channels of a row contiguous. On the CPU this is 2–4× faster than a
CSR matrix product or ``index_select`` + ``add`` passes for the ``C = 21`` rows of a DenseCRF.

:class:`LatticeSum` applies ``y = Σ_m diag(o_m) K̃_m diag(i_m) x`` for lattices ``K̃_m`` (each the
splat → symmetrized blur → slice of :class:`wsss.filters.PermutohedralLattice`, times its ``norm``)
and per-point input / output scales ``i_m``, ``o_m``: one splat into the concatenated vertices of all
lattices, ``2·(D_max+1)`` blur steps (a lattice with fewer directions copies its vertices on the
steps it does not use), and one slice whose bag per point holds the ``D_m+1`` vertices of every
lattice. The DenseCRF engine (:mod:`wsss.crf_lattice`) applies both of its normalized kernels this
way per mean-field iteration; ``PermutohedralLattice.filter`` is the one-lattice case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

__all__ = ["Bags", "LatticeSum"]


@dataclass
class Bags:
    """Layout of ``y_r = Σ_{e ∈ [offsets[r], offsets[r+1])} weights[e] · x[indices[e]]``.

    Attributes:
        indices: ``E`` int64 (or int32) rows of ``x``.
        offsets: ``R+1`` int64 (or int32) non-decreasing, ``offsets[0] = 0``, ``offsets[R] = E``.
        weights: ``E`` float (float64 while building; cast by :meth:`to`).
        rows: the number of rows of the tables ``x`` it reads (``indices < rows``), or ``None``
            (unknown: :meth:`to` then reads the largest index).
    """

    indices: torch.Tensor
    offsets: torch.Tensor
    weights: torch.Tensor
    rows: Optional[int] = None

    @property
    def num_bags(self) -> int:
        return self.offsets.numel() - 1

    def to(self, dtype: torch.dtype) -> "Bags":
        """The layout for applying: ``weights`` of ``dtype``, indices and offsets int32 when they fit
        (less index traffic per pass; ``embedding_bag`` takes either)."""
        fits = self.indices.numel() < 2**31 and (
            self.indices.numel() == 0
            or (self.rows if self.rows is not None else int(self.indices.max()) + 1) <= 2**31)
        if fits:
            return Bags(self.indices.to(torch.int32), self.offsets.to(torch.int32), self.weights.to(dtype), self.rows)
        return Bags(self.indices, self.offsets, self.weights.to(dtype), self.rows)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``R×C`` output for the ``T×C`` contiguous table ``x`` (dtype of ``weights``)."""
        return F.embedding_bag(self.indices, x, self.offsets, mode="sum",
                               per_sample_weights=self.weights, include_last_offset=True)

    @staticmethod
    def concat(parts: Sequence["Bags"], shifts: Sequence[int]) -> "Bags":
        """Bags of ``parts`` one after another; the indices of part ``m`` move by ``shifts[m]``
        (its table rows sit at ``shifts[m]`` in the concatenated table)."""
        if len(parts) == 1 and shifts[0] == 0:
            return parts[0]
        idx, off, wts = [], [parts[0].offsets[:1]], []
        start = 0
        for part, shift in zip(parts, shifts):
            idx.append(part.indices + shift)
            off.append(part.offsets[1:] + start)
            wts.append(part.weights)
            start += part.indices.numel()
        known = all(part.rows is not None for part in parts)
        rows = max(part.rows + shift for part, shift in zip(parts, shifts)) if known else None
        return Bags(torch.cat(idx), torch.cat(off), torch.cat(wts), rows)


def identity_bags(m: int, device: torch.device) -> Bags:
    """``m`` bags copying row ``r`` to row ``r`` (weight 1)."""
    ar = torch.arange(m, device=device)
    return Bags(ar, torch.arange(m + 1, device=device), torch.ones(m, dtype=torch.float64, device=device), m)


class LatticeSum:
    """``y = Σ_m diag(o_m) K̃_m diag(i_m) x`` for lattices over the same ``N`` points.

    Args:
        lattices: :class:`~wsss.filters.PermutohedralLattice` objects built on the same ``N`` points
            (in the same order).
        dtype: dtype of the values (float32 or float64); weights are formed in float64 and cast.

    The scales start at 1; :meth:`scaled` returns the operator with other scales, sharing the
    layout. Calling it on ``N×C`` values of ``dtype`` returns ``N×C``.
    """

    def __init__(self, lattices: Sequence, dtype: torch.dtype = torch.float32) -> None:
        self.dtype = dtype
        self.sizes = [lat.num_vertices for lat in lattices]
        self.shifts = [sum(self.sizes[:m]) for m in range(len(lattices))]
        dev = lattices[0].vert.device
        # splat: the bags of all lattices' vertices, one after another (float64 base weights kept)
        self._splat64 = Bags.concat([lat.splat_bags() for lat in lattices], [0] * len(lattices))
        # Blur step s applies B_s of every lattice with more than s directions (identity otherwise);
        # the order D_max..0 is the same steps reversed, which gives every lattice its own D_m..0.
        qmax = max(lat.d + 1 for lat in lattices)
        self.steps = []
        for s in range(qmax):
            parts = [lat.blur_bags(s, dtype) if s <= lat.d else identity_bags(lat.num_vertices, dev)
                     for lat in lattices]
            self.steps.append(Bags.concat(parts, self.shifts).to(dtype))
        # slice: per point, the D_m+1 vertices of every lattice in one bag (½ of the two blur orders
        # and each lattice's norm folded into the weights), formed directly in the applied dtypes
        self._lattices = list(lattices)
        self._qs = [lat.d + 1 for lat in lattices]
        per_point = sum(self._qs)
        n = lattices[0].vert.shape[0]
        small = n * per_point < 2**31 and sum(self.sizes) < 2**31
        vert = torch.empty(n, per_point, dtype=torch.int32 if small else torch.int64, device=dev)
        c0 = 0
        for lat, sh, q in zip(lattices, self.shifts, self._qs):
            torch.add(lat.vert, sh, out=vert[:, c0:c0 + q])
            c0 += q
        offsets = torch.arange(0, n * per_point + 1, per_point, dtype=vert.dtype, device=dev)
        self.slice = Bags(vert.view(-1), offsets, self._slice_weights(dtype), sum(self.sizes))
        self.splat = self._splat64.to(dtype)

    def _slice_weights(self, dtype: torch.dtype) -> torch.Tensor:
        """``N·ΣM_m(D_m+1)`` slice weights ``½·norm_m·b`` of ``dtype`` (formed in float64, point-major)."""
        n = self._lattices[0].vert.shape[0]
        wts = torch.empty(n, sum(self._qs), dtype=dtype, device=self._lattices[0].vert.device)
        c0 = 0
        for lat, q in zip(self._lattices, self._qs):
            torch.mul(lat.bary, 0.5 * lat.norm, out=wts[:, c0:c0 + q])
            c0 += q
        return wts.view(-1)

    def scaled(self, in_scales: Sequence[Optional[torch.Tensor]],
               out_scales: Sequence[Optional[torch.Tensor]]) -> "LatticeSum":
        """The operator with per-point scales ``i_m`` (folded into the splat weights) and ``o_m``
        (folded into the slice weights): one ``None`` or ``N`` float tensor per lattice."""
        op = object.__new__(LatticeSum)
        op.__dict__.update(self.__dict__)
        w = self._splat64.weights
        n = self.slice.num_bags
        parts, start = [], 0
        for scale, q in zip(in_scales, self._qs):  # lattice m's splat: N·(D_m+1) entries
            seg = w[start:start + n * q]
            if scale is not None:
                seg = seg * scale.to(torch.float64).reshape(-1).index_select(0, self._splat64.indices[start:start + n * q])
            parts.append(seg)
            start += n * q
        op.splat = Bags(self.splat.indices, self.splat.offsets, torch.cat(parts).to(self.dtype))
        w = self._slice_weights(torch.float64).view(n, -1)
        cols, c0 = [], 0
        for scale, q in zip(out_scales, self._qs):
            seg = w[:, c0:c0 + q]
            cols.append(seg if scale is None else seg * scale.to(torch.float64).reshape(-1, 1))
            c0 += q
        op.slice = Bags(self.slice.indices, self.slice.offsets, torch.cat(cols, 1).reshape(-1).to(self.dtype))
        return op

    def blurred(self, x: torch.Tensor) -> torch.Tensor:
        """Splat and both blur orders of ``N×C`` values: the ``(Σ M_m)×C`` table the slice reads."""
        lat = self.splat(x.contiguous())
        a = lat
        for step in self.steps:
            a = step(a)
        b = lat
        for step in reversed(self.steps):
            b = step(b)
        return a.add_(b)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``N×C`` values → ``N×C`` (``Σ_m o_m ⊙ K̃_m (i_m ⊙ x)``)."""
        return self.slice(self.blurred(x))

    def separately(self, x: torch.Tensor) -> list:
        """``[o_m ⊙ K̃_m (i_m ⊙ x)]`` for each lattice, ``N×C`` each (the table split by lattice
        into separate channels before one slice)."""
        table = self.blurred(x)
        c = table.shape[1]
        blocks = table.new_zeros(table.shape[0], c * len(self.sizes))
        for m, (sh, size) in enumerate(zip(self.shifts, self.sizes)):
            blocks[sh:sh + size, m * c:(m + 1) * c] = table[sh:sh + size]
        return list(self.slice(blocks).split(c, dim=1))
