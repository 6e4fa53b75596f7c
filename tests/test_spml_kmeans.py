"""SPML segments (wsss.spml.kmeans): spherical k-means against a plain NumPy loop with the same grid
initialisation, segments pure in region and label, prototypes against a brute-force per-segment mean."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsss.constants import IGNORE_INDEX
from wsss.spml import grid_labels, kmeans_features, segment_prototypes, segments, spherical_kmeans


def _reference_features(embedding: np.ndarray) -> np.ndarray:
    """normalize([ê; y − 0.5; x − 0.5]) pixel by pixel; embedding d×H×W → (d+2)×H×W."""
    d, h, w = embedding.shape
    out = np.zeros((d + 2, h, w))
    for r in range(h):
        for c in range(w):
            e = embedding[:, r, c] / np.linalg.norm(embedding[:, r, c])
            y = r / (h - 1) if h > 1 else 0.0
            x = c / (w - 1) if w > 1 else 0.0
            v = np.concatenate([e, [y - 0.5, x - 0.5]])
            out[:, r, c] = v / np.linalg.norm(v)
    return out


def _reference_kmeans(v: np.ndarray, valid: np.ndarray, grid: int, iterations: int):
    """Plain loops: v D×H×W unit, valid H×W bool. Returns labels H×W (-1 invalid), prototypes K×D."""
    d, h, w = v.shape
    k = grid * grid
    labels = np.full((h, w), -1)
    for r in range(h):
        for c in range(w):
            if valid[r, c]:
                labels[r, c] = (r * grid // h) * grid + (c * grid // w)

    def means(labels):
        protos = np.zeros((k, d))
        counts = np.zeros(k, dtype=int)
        for r in range(h):
            for c in range(w):
                if labels[r, c] >= 0:
                    protos[labels[r, c]] += v[:, r, c]
                    counts[labels[r, c]] += 1
        for s in range(k):
            n = np.linalg.norm(protos[s])
            if n > 0:
                protos[s] /= n
        return protos, counts

    for _ in range(iterations):
        protos, counts = means(labels)
        new = np.full((h, w), -1)
        for r in range(h):
            for c in range(w):
                if not valid[r, c]:
                    continue
                best, best_sim = -1, -np.inf
                for s in range(k):
                    if counts[s] == 0:
                        continue
                    sim = float(protos[s] @ v[:, r, c])
                    if sim > best_sim:
                        best, best_sim = s, sim
                new[r, c] = best
        labels = new
    protos, counts = means(labels)
    return labels, protos, counts


def test_kmeans_features_match_the_pixel_formula():
    torch.manual_seed(0)
    e = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    v = kmeans_features(e)
    for i in range(2):
        np.testing.assert_allclose(v[i].numpy(), _reference_features(e[i].numpy()), atol=1e-12)


def test_grid_labels_cells():
    g = grid_labels(4, 6, 2)
    expected = np.array([[0, 0, 0, 1, 1, 1]] * 2 + [[2, 2, 2, 3, 3, 3]] * 2)
    np.testing.assert_array_equal(g.numpy(), expected)


@pytest.mark.parametrize("grid,iterations", [(2, 10), (3, 10), (3, 0), (5, 4)])
def test_spherical_kmeans_matches_numpy_reference(grid, iterations):
    torch.manual_seed(grid * 10 + iterations)
    b, d, h, w = 3, 4, 7, 8
    # a few well separated directions plus noise, so the clustering moves away from the grid
    centres = torch.randn(3, d, dtype=torch.float64)
    pick = torch.randint(0, 3, (b, h, w))
    e = centres[pick].permute(0, 3, 1, 2) + 0.3 * torch.randn(b, d, h, w, dtype=torch.float64)
    valid = torch.rand(b, h, w) > 0.2
    valid[2] = True
    v = kmeans_features(e)
    result = spherical_kmeans(v, valid, grid=grid, iterations=iterations)
    moved = False
    for i in range(b):
        labels, protos, counts = _reference_kmeans(v[i].numpy(), valid[i].numpy(), grid, iterations)
        np.testing.assert_array_equal(result.labels[i].numpy(), labels)
        np.testing.assert_allclose(result.prototypes[i].numpy(), protos, atol=1e-10)
        np.testing.assert_array_equal(result.counts[i].numpy(), counts)
        moved |= not np.array_equal(labels[valid[i].numpy()], grid_labels(h, w, grid).numpy()[valid[i].numpy()])
    assert moved == (iterations > 0)


def test_kmeans_without_mask_and_empty_grid_cells():
    torch.manual_seed(1)
    v = kmeans_features(torch.randn(1, 3, 3, 4, dtype=torch.float64))
    result = spherical_kmeans(v, grid=5, iterations=3)  # 25 cells on 3×4 pixels: some start empty
    labels, protos, _ = _reference_kmeans(v[0].numpy(), np.ones((3, 4), bool), 5, 3)
    np.testing.assert_array_equal(result.labels[0].numpy(), labels)
    np.testing.assert_allclose(result.prototypes[0].numpy(), protos, atol=1e-10)
    assert (result.labels >= 0).all()


def _constructed_maps():
    torch.manual_seed(2)
    b, h, w = 2, 6, 7
    cluster = torch.randint(0, 3, (b, h, w))
    cluster[0, 0, :3] = -1  # excluded pixels
    region = torch.randint(0, 4, (b, h, w)) * 7  # region ids need not be contiguous
    label = torch.randint(0, 3, (b, h, w))
    label[torch.rand(b, h, w) > 0.5] = IGNORE_INDEX
    return cluster, region, label


def test_segments_are_pure_and_the_finest_split():
    cluster, region, label = _constructed_maps()
    segs = segments(cluster, region, label)
    assert (segs.ids[cluster < 0] == -1).all() and (segs.ids[cluster >= 0] >= 0).all()
    seen = {}
    for bi, r, c in np.ndindex(*cluster.shape):
        if cluster[bi, r, c] < 0:
            continue
        key = (bi, int(cluster[bi, r, c]), int(region[bi, r, c]), int(label[bi, r, c]))
        s = int(segs.ids[bi, r, c])
        assert seen.setdefault(key, s) == s, "one (image, cluster, region, label) → one segment"
        assert (int(segs.image[s]), int(segs.cluster[s]), int(segs.region[s]), int(segs.label[s])) == key
    assert len(seen) == segs.count, "different combinations → different segments"
    assert len(set(seen.values())) == segs.count
    counts = torch.bincount(segs.ids[segs.ids >= 0], minlength=segs.count)
    assert torch.equal(counts, segs.counts)
    assert torch.equal(segs.labelled, segs.label != IGNORE_INDEX)
    assert (segs.label == IGNORE_INDEX).any() and segs.labelled.any()


def test_segment_prototypes_match_brute_force_means_and_carry_gradient():
    cluster, region, label = _constructed_maps()
    segs = segments(cluster, region, label)
    e = torch.randn(2, 5, 6, 7, dtype=torch.float64, requires_grad=True)
    protos = segment_prototypes(e, segs)
    unit = (e / e.norm(dim=1, keepdim=True)).detach().numpy()
    ids = segs.ids.numpy()
    totals = np.zeros((segs.count, 5))
    for bi, r, c in np.ndindex(*ids.shape):
        if ids[bi, r, c] >= 0:
            totals[ids[bi, r, c]] += unit[bi, :, r, c]
    expected = totals / np.linalg.norm(totals, axis=1, keepdims=True)
    np.testing.assert_allclose(protos.detach().numpy(), expected, atol=1e-12)
    weights = torch.randn(segs.count, 5, dtype=torch.float64)
    (protos * weights).sum().backward()
    assert e.grad is not None and e.grad.abs().sum() > 0
    assert (e.grad[0, :, 0, :3] == 0).all(), "excluded pixels get no gradient"
    # an independent check of the gradient on a small case
    e2 = torch.randn(1, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    segs2 = segments(torch.tensor([[[0, 0, 1], [1, 0, 1]]]), torch.zeros(1, 2, 3, dtype=torch.long),
                     torch.full((1, 2, 3), IGNORE_INDEX))
    w2 = torch.randn(segs2.count, 3, dtype=torch.float64)
    (grad,) = torch.autograd.grad((segment_prototypes(e2, segs2) * w2).sum(), e2)
    step = 1e-6
    flat = e2.detach().clone().reshape(-1)
    for j in range(flat.numel()):
        plus, minus = flat.clone(), flat.clone()
        plus[j] += step
        minus[j] -= step
        f = [float((segment_prototypes(x.reshape(e2.shape), segs2) * w2).sum()) for x in (plus, minus)]
        assert abs((f[0] - f[1]) / (2 * step) - float(grad.reshape(-1)[j])) < 1e-6


def test_empty_clusters_never_win():
    """A pixel opposed to every non-empty prototype stays in a non-empty cluster, as in the NumPy loop
    (an empty cluster's zero prototype would otherwise score 0 and win)."""
    a = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    e = (-a)[None, :, None, None].repeat(1, 1, 5, 5)
    e[0, :, 0, 0] = a
    valid = torch.ones(1, 5, 5, dtype=torch.bool)
    valid[0, :3, 3:] = False  # grid cells 1 and 2 hold no valid pixel
    valid[0, 3:, :3] = False
    v = kmeans_features(e)
    first = spherical_kmeans(v, valid, grid=2, iterations=0)
    assert (torch.einsum("d,kd->k", v[0, :, 0, 0], first.prototypes[0])[first.counts[0] > 0] < 0).all()
    result = spherical_kmeans(v, valid, grid=2, iterations=2)
    labels, protos, _ = _reference_kmeans(v[0].numpy(), valid[0].numpy(), 2, 2)
    np.testing.assert_array_equal(result.labels[0].numpy(), labels)
    assert set(result.labels[0][valid[0]].tolist()) <= {0, 3}
