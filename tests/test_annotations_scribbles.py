"""Skeleton scribbles, shorten / shrink / drop, rendering (wsss.annotations.scribbles)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from wsss.annotations import (
    Scribble,
    apply_drop,
    find_objects,
    image_rng,
    path_length,
    render_scribbles,
    scribbles_from_mask,
    shorten,
    shrink,
    skeleton_path,
)
from wsss.annotations.draw import footprint, rasterize_polyline
from wsss.annotations.scribbles import edit_scribbles

K = 4
RATIOS = (0.0, 0.3, 0.5, 0.8, 1.0)


def synthetic_mask(seed: int, h: int = 96, w: int = 128, n: int = 5, boundary: bool = True) -> np.ndarray:
    """Background 0 with ``n`` random ellipses of classes 1..3; a 255 band on class boundaries."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((h, w), np.uint8)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(n):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(6, h / 4), rng.uniform(6, w / 4)
        mask[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = rng.integers(1, K)
    if boundary:
        edge = ndimage.maximum_filter(mask, 3) != ndimage.minimum_filter(mask, 3)
        mask[edge] = 255
    return mask


def generate(mask, *, ratio=1.0, shrink_rate=0.0, drop=0.0, width=3, seed=0, image_id="img", **kw):
    scribbles, objects = scribbles_from_mask(mask, K, **kw)
    scribbles = edit_scribbles(scribbles, length_ratio=ratio, shrink_rate=shrink_rate,
                               shrink_rng=image_rng(seed, image_id, "shrink"))
    scribbles, _ = apply_drop(scribbles, drop, image_rng(seed, image_id, "drop"), background=0)
    return render_scribbles(scribbles, mask.shape, width, objects=objects), objects


def is_path(path):
    steps = np.abs(np.diff(path, axis=0))
    return bool(np.all(steps.max(axis=1) == 1)) if len(path) > 1 else True


def test_footprint_widths():
    assert footprint(1).tolist() == [[0, 0]]
    assert sorted(map(tuple, footprint(3).tolist())) == [(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)]
    # even widths: w rows and w columns span
    f = footprint(6)
    assert f[:, 0].max() - f[:, 0].min() + 1 == 6 and f[:, 1].max() - f[:, 1].min() + 1 == 6


def test_skeleton_path_of_a_bar_is_long_connected_and_inside():
    region = np.zeros((20, 80), bool)
    region[5:15, 5:75] = True
    path = skeleton_path(region)
    assert is_path(path)
    assert region[path[:, 0], path[:, 1]].all()
    assert len(np.unique(path, axis=0)) == len(path)
    assert path_length(path) >= 55  # the bar's long axis is 70 px; the skeleton loses the ends


def test_skeleton_path_with_a_hole_still_a_path():
    yy, xx = np.mgrid[:60, :60]
    ring = ((yy - 30) ** 2 + (xx - 30) ** 2 <= 25**2) & ((yy - 30) ** 2 + (xx - 30) ** 2 >= 10**2)
    path = skeleton_path(ring)
    assert is_path(path) and ring[path[:, 0], path[:, 1]].all() and path_length(path) > 30


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_generated_scribbles_lie_inside_their_object_and_label(seed):
    mask = synthetic_mask(seed)
    label, objects = generate(mask, width=5)
    seeded = label != 255
    assert seeded.any()
    assert np.all(label[seeded] == mask[seeded])  # inside the label, never on 255
    assert np.all(mask[seeded] != 255)
    # inside their own object: every connected seed blob sits in one object only
    blobs, n = ndimage.label(seeded, structure=np.ones((3, 3)))
    for b in range(1, n + 1):
        assert len(np.unique(objects.labels[blobs == b])) == 1
    scribbles, objs = scribbles_from_mask(mask, K)
    for s in scribbles:
        own = render_scribbles([s], mask.shape, 7, objects=objs) != 255
        assert own.any() and np.all(objs.labels[own] == s.obj + 1)
    # every object of at least 0.2 % of the image (the object rule) got a scribble, no smaller one did
    large = np.flatnonzero(objects.areas() >= 0.002 * mask.size) + 1
    assert set(np.unique(objects.labels[seeded])) - {0} == set(large.tolist())


@pytest.mark.parametrize("seed", [3, 4])
def test_length_ratios_are_nested_and_grow(seed):
    mask = synthetic_mask(seed, n=7)
    labels = {r: generate(mask, ratio=r, drop=0.3, seed=seed)[0] for r in RATIOS}
    objects = find_objects(mask, K)
    previous = None
    for r in RATIOS:
        seeded = labels[r] != 255
        with_seed = set(np.unique(objects.labels[seeded]).tolist())
        if previous is not None:
            prev_seeded, prev_with_seed = previous
            assert np.all(seeded[prev_seeded]), f"ratio {r} lost pixels of a smaller ratio"
            assert prev_with_seed <= with_seed
            assert seeded.sum() >= prev_seeded.sum()
        previous = (seeded, with_seed)
    assert (labels[1.0] != 255).sum() > 3 * (labels[0.0] != 255).sum()
    same = (labels[0.5] != 255)
    assert np.array_equal(labels[1.0][same], labels[0.5][same])


def test_ratio_zero_gives_exactly_one_click_per_object():
    mask = synthetic_mask(5, n=6)
    label, objects = generate(mask, ratio=0.0, width=1)
    counts = np.bincount(objects.labels[label != 255], minlength=len(objects) + 1)[1:]
    large = objects.areas() >= 0.002 * mask.size  # the object rule: smaller fragments get no click
    assert not large.all() and np.all(counts == large)
    # width 3: one blob per object, at most 3×3
    label3, _ = generate(mask, ratio=0.0, width=3)
    for i in np.flatnonzero(large) + 1:
        pix = np.argwhere((label3 != 255) & (objects.labels == i))
        assert 1 <= len(pix) <= 9 and np.ptp(pix, axis=0).max() <= 2


def test_shorten_keeps_centred_fraction():
    path = rasterize_polyline(np.array([[10, 10], [10, 110]]))
    total = path_length(path)
    for r in RATIOS:
        piece = shorten(path, r)
        assert abs(path_length(piece) - r * total) <= 1.0 + 1e-9
        mid = path[len(path) // 2]
        assert (piece == mid).all(axis=1).any()
    assert np.array_equal(shorten(path, 1.0), path)


def test_shrink_never_lengthens_and_is_a_contiguous_piece():
    rng = np.random.default_rng(0)
    for _ in range(50):
        vertices = rng.integers(0, 100, size=(rng.integers(1, 6), 2))
        path = rasterize_polyline(vertices)
        for s in (0.0, 0.2, 0.5, 0.9, 1.0):
            piece = shrink(path, s, float(rng.random()), centred=bool(rng.integers(2)))
            assert path_length(piece) <= path_length(path) + 1e-9
            starts = np.flatnonzero((path == piece[0]).all(axis=1))  # a polyline may cross itself
            assert any(np.array_equal(path[i : i + len(piece)], piece) for i in starts)
            if s == 1.0:
                assert len(piece) == 1
            if s == 0.0:
                assert np.array_equal(piece, path)
            else:
                assert path_length(piece) <= (1 - s) * path_length(path) + 1.5


def test_drop_rate_removes_about_d_of_objects():
    # 4σ binomial tolerance on n = 4000 independent objects
    n, d = 4000, 0.3
    scribbles = [Scribble(cls=1 + i % 3, path=np.array([[0, 0]]), obj=i) for i in range(n)]
    kept, dropped = apply_drop(scribbles, d, image_rng(0, "many", "drop"), background=0)
    assert dropped == n - len(kept)
    assert abs(dropped - n * d) <= 4 * np.sqrt(n * d * (1 - d))


def test_drop_keeps_background_unless_asked_and_units():
    # two scribbles per object; background objects 0..9, class 1 objects 10..19
    scribbles = [Scribble(cls=0 if i < 10 else 1, path=np.array([[i, k]]), obj=i) for i in range(20) for k in range(2)]
    kept, _ = apply_drop(scribbles, 1.0, image_rng(0, "x", "drop"), background=0)
    assert {s.cls for s in kept} == {0} and len(kept) == 20
    kept, _ = apply_drop(scribbles, 1.0, image_rng(0, "x", "drop"), background=0, drop_background=True)
    assert kept == []
    # per object: both scribbles of an object share the fate; per scribble: not always
    kept, _ = apply_drop(scribbles, 0.5, image_rng(1, "x", "drop"), background=None)
    objs = [s.obj for s in kept]
    assert all(objs.count(o) == 2 for o in set(objs))
    fates = []
    for seed in range(20):
        kept, _ = apply_drop(scribbles, 0.5, image_rng(seed, "x", "drop"), unit="scribble", background=None)
        objs = [s.obj for s in kept]
        fates.extend(objs.count(o) for o in set(objs))
    assert 1 in fates


def test_drop_over_generated_objects_statistics():
    masks = [synthetic_mask(s, n=12, boundary=False) for s in range(6)]
    total = dropped = 0
    for s, mask in enumerate(masks):
        label, objects = generate(mask, drop=0.4, seed=7, image_id=f"im{s}", objects_rule="all")
        fg = np.flatnonzero(objects.classes != 0) + 1
        seeded = set(np.unique(objects.labels[label != 255]).tolist())
        total += len(fg)
        dropped += sum(1 for i in fg if i not in seeded)
        # background always kept (--drop-background off)
        bg = np.flatnonzero(objects.classes == 0) + 1
        assert all(i in seeded for i in bg)
    assert abs(dropped - 0.4 * total) <= 4 * np.sqrt(total * 0.4 * 0.6)


def test_same_seed_same_result_and_different_seed_differs():
    mask = synthetic_mask(8, n=10)
    a, _ = generate(mask, drop=0.5, shrink_rate=0.5, seed=11)
    b, _ = generate(mask, drop=0.5, shrink_rate=0.5, seed=11)
    c, _ = generate(mask, drop=0.5, shrink_rate=0.5, seed=12)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_small_objects_get_a_point_and_never_255():
    mask = np.full((30, 30), 255, np.uint8)
    mask[5:8, 5:8] = 1  # 9 px < min_area
    mask[15:28, 10:25] = 2
    label, objects = generate(mask, width=1, min_area=16, objects_rule="all")
    assert (label[5:8, 5:8] != 255).sum() == 1 and label[6, 6] == 1  # the distance-transform peak
    assert np.all(label[mask == 255] == 255)


def test_full_scribbles_cover_a_few_percent_of_voc_sized_images():
    # ScribbleSup covers about 3 % of VOC pixels (spec); one skeleton scribble per object, 3 px wide,
    # on 375×500 synthetic masks: between 1 % and 5 %
    fractions = [(generate(synthetic_mask(s, h=375, w=500, n=3))[0] != 255).mean() for s in range(2)]
    assert all(0.01 <= f <= 0.05 for f in fractions), fractions
