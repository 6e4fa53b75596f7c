"""The URSS code's optional augmentations (wsss.training.rotation_blur) against direct computations:
rotation against a per-pixel loop and numpy.rot90, rotated-in pixels outside the validity mask (and
excluded from the soft entropy like crop padding), blur against a brute-force 5×5 sum; off by default."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wsss.training.data import AugmentConfig, augment
from wsss.training.rotation_blur import BLUR_SIGMA, gaussian_blur, gaussian_kernel, rotate_maps

from filter_reference import filter_brute_force


def _maps(h: int, w: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    image = rng.uniform(0, 255, (1, 3, h, w))
    labels = rng.integers(0, 5, (1, 2, h, w)).astype(np.float64)
    return torch.from_numpy(image).float(), torch.from_numpy(labels).float()


@pytest.mark.parametrize("h,w,angle", [(9, 13, 7.3), (12, 8, -9.5), (10, 10, 33.0)])
def test_rotation_labels_match_a_per_pixel_loop(h, w, angle):
    """Nearest-neighbour labels and the inside mask equal an explicit loop over output pixels: the
    output offset from the centre turned back by the angle, rounded to the nearest source pixel."""
    image, labels = _maps(h, w)
    _, out, _, inside = rotate_maps(image, labels, None, angle)
    t = math.radians(angle)
    checked = 0
    for i in range(h):
        for j in range(w):
            yo, xo = i + 0.5 - h / 2, j + 0.5 - w / 2
            xs = math.cos(t) * xo - math.sin(t) * yo + w / 2 - 0.5
            ys = math.sin(t) * xo + math.cos(t) * yo + h / 2 - 0.5
            if min(abs(xs % 1 - 0.5), abs(ys % 1 - 0.5)) < 1e-6:
                continue  # a tie of the rounding
            r, c = int(round(ys)), int(round(xs))
            ok = 0 <= r < h and 0 <= c < w
            assert bool(inside[i, j]) == ok, (i, j)
            if ok:
                assert torch.equal(out[0, :, i, j], labels[0, :, r, c]), (i, j)
                checked += 1
    assert checked > h * w // 2
    assert not inside.all()  # corners are rotated in


def test_rotation_by_90_degrees_is_rot90_and_by_0_the_identity():
    image, labels = _maps(8, 8, seed=1)
    img, lab, _, inside = rotate_maps(image, labels, None, 90.0)
    assert inside.all()
    assert torch.equal(lab, torch.from_numpy(np.rot90(labels.numpy(), axes=(-2, -1)).copy()))
    torch.testing.assert_close(img, torch.from_numpy(np.rot90(image.numpy(), axes=(-2, -1)).copy()), atol=1e-3, rtol=0)
    img0, lab0, _, inside0 = rotate_maps(image, labels, None, 0.0)
    assert inside0.all() and torch.equal(lab0, labels)
    torch.testing.assert_close(img0, image, atol=1e-3, rtol=0)


def test_blur_matches_a_brute_force_sum_with_mirrored_borders():
    rng = np.random.default_rng(2)
    image = rng.uniform(0, 255, (1, 3, 7, 9))
    g = np.exp(-np.arange(-2, 3) ** 2 / (2 * BLUR_SIGMA ** 2))
    g /= g.sum()
    np.testing.assert_allclose(gaussian_kernel().numpy(), g)
    # OpenCV's σ of a 5-pixel kernel: 0.3·((5 − 1)/2 − 1) + 0.8
    assert BLUR_SIGMA == pytest.approx(0.3 * ((5 - 1) / 2 - 1) + 0.8)

    expect = filter_brute_force(image, np.outer(g, g))
    out = gaussian_blur(torch.from_numpy(image))
    np.testing.assert_allclose(out.numpy(), expect, rtol=1e-10, atol=1e-9)


def test_augment_rotated_in_pixels_are_invalid_and_excluded_like_padding():
    """With --rotate, rotated-in pixels are outside V: label 255, image 0, pseudo-boundary True (so the
    soft entropy skips them), soft targets 0; inside V the labels are the rotated labels."""
    h, w = 30, 40
    image = np.full((h, w, 3), 200, np.uint8)
    labels = np.zeros((h, w), np.uint8)  # every pixel labelled 0: any 255 inside the crop is not from the image
    boundary = np.zeros((h, w), bool)
    probs = np.full((2, h, w), 0.5, np.float32)
    cfg = AugmentConfig(crop_size=48, scale_min=1.0, scale_max=1.0, flip=True, rotation=10.0, blur=True)
    rotated = 0
    for seed in range(8):
        s = augment(image, labels, probs, cfg, np.random.default_rng(seed), boundary=boundary)
        v = s["valid"]
        assert (s["labels"][v] == 0).all() and (s["labels"][~v] == 255).all()
        assert (s["image"][:, ~v] == 0).all() and s["boundary"][~v].all() and not s["boundary"][v].any()
        assert (s["probs"][:, ~v] == 0).all() and torch.allclose(s["probs"][:, v], torch.tensor(0.5))
        assert torch.allclose(s["image"][:, v], torch.tensor(200.0), atol=1e-3)  # flat image: blur changes nothing
        rotated += int(v.sum()) < h * w  # rotated: corners lost, corners rotated in
    assert 0 < rotated < 8  # p = 0.5


def test_rotation_and_blur_are_off_by_default():
    from wsss.training import TrainConfig

    cfg = AugmentConfig.of(TrainConfig(out=""))
    assert cfg.rotation == 0 and cfg.blur is False
    on = AugmentConfig.of(TrainConfig(out="", rotation=10.0, blur=True))
    assert on.rotation == 10.0 and on.blur is True
