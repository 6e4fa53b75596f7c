"""The SPML final classifier's augmentations (wsss.training.photometric) against direct computations:
grayscale against the per-pixel weighted sum, the SPML blur against a brute-force 5×5 sum of the code's
kernel exp(−(x²+y²)/s²) with mirrored borders, σ drawn in [0.1, 5]/√2; in augment: probabilities, the
default random stream unchanged, off by default; bad --blur-kernel / --grayscale refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from wsss.errors import UserError
from wsss.training import TrainConfig
from wsss.training.data import AugmentConfig, augment
from wsss.training.photometric import SPML_BLUR_RANGE, draw_spml_blur, grayscale, spml_blur_sigma
from wsss.training.rotation_blur import gaussian_blur

from filter_reference import filter_brute_force


def test_grayscale_is_the_weighted_sum_in_every_channel():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (1, 3, 5, 6))
    out = grayscale(torch.from_numpy(image)).numpy()
    for i in range(5):
        for j in range(6):
            r, g, b = image[0, :, i, j]
            assert out[0, :, i, j] == pytest.approx([0.3 * r + 0.59 * g + 0.11 * b] * 3, rel=1e-12)


@pytest.mark.parametrize("s", [0.1, 1.0, 2.7, 5.0])
def test_spml_blur_is_the_codes_5x5_kernel_with_mirrored_borders(s):
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 255, (1, 3, 7, 9))
    yy, xx = np.meshgrid(np.linspace(-2, 2, 5), np.linspace(-2, 2, 5), indexing="ij")
    weight = np.exp(-(xx ** 2 + yy ** 2) / s ** 2)
    weight /= weight.sum()

    expect = filter_brute_force(image, weight)
    out = gaussian_blur(torch.from_numpy(image), sigma=spml_blur_sigma(s))
    np.testing.assert_allclose(out.numpy(), expect, rtol=1e-10, atol=1e-9)


def test_spml_blur_draws_cover_the_codes_range():
    rng = np.random.default_rng(0)
    sigmas = np.array([draw_spml_blur(rng) for _ in range(2000)]) * math.sqrt(2)
    lo, hi = SPML_BLUR_RANGE
    assert sigmas.min() >= lo and sigmas.max() <= hi
    assert sigmas.mean() == pytest.approx((lo + hi) / 2, abs=0.15)


def _sample(cfg: AugmentConfig, seed: int, image=None, h: int = 20, w: int = 24):
    if image is None:
        image = np.random.default_rng(5).integers(0, 256, (h, w, 3)).astype(np.uint8)
    labels = np.random.default_rng(6).integers(0, 3, (h, w)).astype(np.uint8)
    return augment(image, labels, None, cfg, np.random.default_rng(seed))


def test_augment_grayscale_with_its_probability_and_labels_untouched():
    """crop = image (16²), so the window is the same whatever the draws: a gray sample is the gray version of
    the plain one, the others equal it, labels always equal it."""
    base = AugmentConfig(crop_size=16, scale_min=1.0, scale_max=1.0, flip=False)
    gray_cfg = AugmentConfig(crop_size=16, scale_min=1.0, scale_max=1.0, flip=False, grayscale=0.3)
    grays = 0
    for seed in range(60):
        s, plain = _sample(gray_cfg, seed, h=16, w=16), _sample(base, seed, h=16, w=16)
        assert torch.equal(s["labels"], plain["labels"]) and torch.equal(s["valid"], plain["valid"])
        if torch.equal(s["image"], plain["image"]):
            continue
        grays += 1
        torch.testing.assert_close(s["image"], grayscale(plain["image"][None])[0])
    assert 8 <= grays <= 30  # p = 0.3 of 60 samples: 18 expected


def test_augment_spml_blur_and_the_default_stream():
    """Defaults draw nothing new (the augmentation of a run made before these options is unchanged); with
    --blur --blur-kernel spml a flat image stays flat and a textured one is smoothed in about half the samples."""
    off = AugmentConfig(crop_size=16, scale_min=0.8, scale_max=1.2)
    unused_kernel = AugmentConfig(crop_size=16, scale_min=0.8, scale_max=1.2, blur_kernel="spml")
    for seed in range(5):
        a, b = _sample(off, seed), _sample(unused_kernel, seed)
        assert all(torch.equal(a[k], b[k]) for k in a)
    spml = AugmentConfig(crop_size=16, scale_min=1.0, scale_max=1.0, flip=False, blur=True, blur_kernel="spml")
    flat = np.full((20, 24, 3), 120, np.uint8)
    s = _sample(spml, 0, image=flat)
    assert torch.allclose(s["image"][:, s["valid"]], torch.tensor(120.0), atol=1e-3)
    plain = AugmentConfig(crop_size=16, scale_min=1.0, scale_max=1.0, flip=False)
    smoothed = 0
    for seed in range(40):  # crop = image: the same window whatever the draws
        x, y = _sample(spml, seed, h=16, w=16), _sample(plain, seed, h=16, w=16)
        assert torch.equal(x["labels"], y["labels"])
        smoothed += not torch.equal(x["image"], y["image"])
    assert 10 <= smoothed <= 30  # p = 0.5


def test_off_by_default_and_bad_values_refused(tmp_path):
    cfg = AugmentConfig.of(TrainConfig(out=""))
    assert cfg.grayscale == 0 and cfg.blur is False and cfg.blur_kernel == "urss"
    with pytest.raises(UserError, match="--blur-kernel"):
        AugmentConfig(blur_kernel="gauss")
    from wsss_cli.main import app

    runner = CliRunner()
    for args in (["--blur-kernel", "gauss"], ["--grayscale", "1.5"]):
        result = runner.invoke(app, ["train", "--out", str(tmp_path / "run"), "--seeds", str(tmp_path / "none.h5"), *args])
        assert result.exit_code == 2, result.output
        assert args[0] in result.output
    assert not (tmp_path / "run").exists()
