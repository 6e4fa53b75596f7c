"""Block-wise annotation (wsss.annotations.blocks)."""

from __future__ import annotations

import numpy as np

from wsss.annotations import blocks_from_mask, image_rng


def dense(h=70, w=90):
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 5, size=(h, w)).astype(np.uint8)
    mask[:3] = 255
    return mask


def test_kept_blocks_copy_dense_labels_and_count():
    mask = dense()
    label = blocks_from_mask(mask, 16, 0.4, image_rng(0, "a", "blocks"))
    gy, gx = 5, 6  # ceil(70/16), ceil(90/16)
    kept = 0
    for by in range(gy):
        for bx in range(gx):
            sl = np.s_[by * 16 : (by + 1) * 16, bx * 16 : (bx + 1) * 16]
            block, ref = label[sl], mask[sl]
            if np.array_equal(block, ref):
                kept += 1
            else:
                assert np.all(block == 255)
    assert kept == round(0.4 * gy * gx)
    assert np.all(label[mask == 255] == 255)


def test_blocks_seeded_nested_and_seed_dependent():
    mask = dense()
    a = blocks_from_mask(mask, 10, 0.3, image_rng(1, "a", "blocks"))
    b = blocks_from_mask(mask, 10, 0.3, image_rng(1, "a", "blocks"))
    c = blocks_from_mask(mask, 10, 0.3, image_rng(2, "a", "blocks"))
    more = blocks_from_mask(mask, 10, 0.6, image_rng(1, "a", "blocks"))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.all(more[a != 255] == a[a != 255])
    assert np.all(blocks_from_mask(mask, 10, 1.0, image_rng(1, "a", "blocks")) == mask)
    assert np.all(blocks_from_mask(mask, 10, 0.0, image_rng(1, "a", "blocks")) == 255)
