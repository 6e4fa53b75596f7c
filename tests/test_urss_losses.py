"""URSS losses against brute-force references: soft entropy with pseudo-boundaries and padding
excluded; the eigenspace self-supervision for flip and translation by explicit double loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wsss.stages.superpixels import superpixel_boundaries
from wsss.errors import UserError
from wsss.losses.urss import (
    GridTransform,
    aligned_energies,
    eigenspace_sums,
    eigenspace_term,
    flip_permutation,
    soft_entropy_term,
)


def test_soft_entropy_matches_brute_force_with_boundaries_and_padding():
    g = torch.Generator().manual_seed(0)
    b, k, h, w = 2, 4, 5, 6
    logits = torch.randn(b, k, h, w, generator=g, dtype=torch.float64) * 3
    valid = torch.ones(b, h, w, dtype=torch.bool)
    valid[0, :, 4:] = False  # crop padding
    valid[1, 3:, :] = False
    segments = np.zeros((h, w), np.int32)
    segments[:, 3:] = 1
    segments[2:, :2] = 2
    boundary = torch.from_numpy(np.stack([superpixel_boundaries(segments), superpixel_boundaries(segments[::-1].copy())]))
    term = soft_entropy_term(logits, valid, boundary, weight=1.0)
    total, count = 0.0, 0
    for bi in range(b):
        for r in range(h):
            for c in range(w):
                if not valid[bi, r, c] or boundary[bi, r, c]:
                    continue
                z = [float(logits[bi, j, r, c]) for j in range(k)]
                zmax = max(z)
                s = sum(math.exp(v - zmax) for v in z)
                p = [math.exp(v - zmax) / s for v in z]
                total += -sum(pi * math.log(pi) for pi in p)
                count += 1
    assert 0 < count < b * h * w
    assert int(term.count) == count
    assert float(term.value()) == pytest.approx(total / count, rel=1e-10)
    weighted = soft_entropy_term(logits, valid, boundary, weight=2.5)
    assert float(weighted.value()) == pytest.approx(2.5 * total / count, rel=1e-10)


def test_soft_entropy_is_finite_on_saturated_logits_and_empty_mask():
    logits = torch.tensor([[[[1e4]], [[-1e4]]]])
    term = soft_entropy_term(logits, torch.ones(1, 1, 1, dtype=torch.bool))
    assert torch.isfinite(term.total) and float(term.total) == pytest.approx(0.0, abs=1e-6)
    empty = soft_entropy_term(logits, torch.zeros(1, 1, 1, dtype=torch.bool))
    assert float(empty.count) == 0 and float(empty.value()) == 0.0


def _dense_flip(h, w):
    t = np.zeros((h * w, h * w))
    for r in range(h):
        for c in range(w):
            t[r * w + c, r * w + (w - 1 - c)] = 1.0
    return torch.from_numpy(t)


def test_flip_permutation_equals_dense_matrix_product():
    h, w = 3, 5
    e = torch.randn(2, h * w, h * w, dtype=torch.float64)
    t = _dense_flip(h, w)
    perm = flip_permutation(h, w)
    assert torch.equal(e[:, perm][:, :, perm], t @ e @ t)
    # the flipped image's grid really is the column-reversed grid
    f = torch.arange(h * w).view(h, w)
    assert torch.equal(f.flip(1).reshape(-1), f.reshape(-1)[perm])


def _brute_ss(e_pred, e_tgt, index_pred, index_tgt, m, axis, gamma):
    """Per-image ss by explicit loops: entries (i, j) of the M×M matrices; index_* map i to the rows of
    the given energies."""
    out = []
    for b in range(e_pred.shape[0]):
        def soft(e, index):
            z = [[float(e[b, index(i), index(j)]) for j in range(m)] for i in range(m)]
            q = [[0.0] * m for _ in range(m)]
            if axis == "columns":
                for j in range(m):
                    s = sum(math.exp(z[i][j]) for i in range(m))
                    for i in range(m):
                        q[i][j] = math.exp(z[i][j]) / s
            else:
                for i in range(m):
                    s = sum(math.exp(z[i][j]) for j in range(m))
                    for j in range(m):
                        q[i][j] = math.exp(z[i][j]) / s
            return q
        qp, qt = soft(e_pred, index_pred), soft(e_tgt, index_tgt)
        kl = sum(qt[i][j] * (math.log(qt[i][j]) - math.log(qp[i][j])) for i in range(m) for j in range(m))
        tr = abs(sum(qt[i][i] for i in range(m)) - sum(qp[i][i] for i in range(m)))
        out.append(kl / (m * m) + gamma * tr)
    return out


@pytest.mark.parametrize("axis", ["columns", "rows"])
def test_eigenspace_flip_matches_double_loop(axis):
    g = torch.Generator().manual_seed(1)
    h, w, b = 4, 5, 2
    n = h * w
    e = torch.randn(b, n, n, generator=g, dtype=torch.float64) * 2
    et = torch.randn(b, n, n, generator=g, dtype=torch.float64) * 2
    got = eigenspace_sums(*aligned_energies(e, et, (h, w), GridTransform("flip")), axis=axis, gamma=0.3)

    def flipped(i):
        r, c = divmod(i, w)
        return r * w + (w - 1 - c)

    want = _brute_ss(e, et, lambda i: i, flipped, n, axis, 0.3)
    assert got.tolist() == pytest.approx(want, rel=1e-10)
    term = eigenspace_term(e, et, (h, w), GridTransform("flip"), axis=axis, gamma=0.3, weight=30.0)
    assert int(term.count) == b
    assert float(term.value()) == pytest.approx(30.0 * sum(want) / b, rel=1e-10)


@pytest.mark.parametrize("first", [True, False])
def test_eigenspace_translation_matches_double_loop(first):
    g = torch.Generator().manual_seed(2)
    h, w, rows, b = 6, 4, 4, 2
    n, m = h * w, rows * w
    e = torch.randn(b, n, n, generator=g, dtype=torch.float64)
    et = torch.randn(b, m, m, generator=g, dtype=torch.float64)
    tr = GridTransform("translation", first=first, rows=rows)
    got = eigenspace_sums(*aligned_energies(e, et, (h, w), tr), axis="columns", gamma=0.01)
    offset = 0 if first else h - rows

    def in_x(i):  # position i of the transformed crop's grid → its position in x's grid
        r, c = divmod(i, w)
        return (r + offset) * w + c

    want = _brute_ss(e, et, in_x, lambda i: i, m, "columns", 0.01)
    assert got.tolist() == pytest.approx(want, rel=1e-10)


def test_eigenspace_no_gradient_to_target_and_gradcheck_prediction():
    g = torch.Generator().manual_seed(3)
    h, w = 3, 3
    e = torch.randn(1, 9, 9, generator=g, dtype=torch.float64, requires_grad=True)
    et = torch.randn(1, 9, 9, generator=g, dtype=torch.float64, requires_grad=True)
    term = eigenspace_term(e, et, (h, w), GridTransform("flip"))
    term.total.backward()
    assert et.grad is None and e.grad is not None and torch.isfinite(e.grad).all()
    target = et.detach()

    def f(x):
        return eigenspace_term(x, target, (h, w), GridTransform("flip"), gamma=0.5).total

    assert torch.autograd.gradcheck(f, (e.detach().clone().requires_grad_(True),), eps=1e-6, atol=1e-7)
    tr = GridTransform("translation", first=False, rows=2)
    t2 = torch.randn(1, 6, 6, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: eigenspace_term(x, t2, (h, w), tr, axis="rows").total,
                                    (e.detach().clone().requires_grad_(True),), eps=1e-6, atol=1e-7)


def test_eigenspace_identical_views_give_zero_and_bad_axis_is_an_error():
    e = torch.randn(2, 6, 6, dtype=torch.float64)
    term = eigenspace_term(e, e.clone(), (2, 3), GridTransform("translation", first=True, rows=2))
    assert float(term.total) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(UserError, match="axis"):
        eigenspace_sums(e, e, axis="diagonal")
