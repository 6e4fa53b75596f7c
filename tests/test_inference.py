"""wsss.inference.multiscale_flip_sum against a direct numpy computation: explicit bilinear
interpolation matrices (both ``align_corners`` conventions), explicit mirroring, every pass summed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsss.inference import multiscale_flip_sum, scaled_size


def _interp_matrix(n_out: int, n_in: int, align_corners: bool) -> np.ndarray:
    """``n_out×n_in`` weights of 1-D linear interpolation (PyTorch's source-index rule)."""
    dst = np.arange(n_out, dtype=np.float64)
    if align_corners:
        src = dst * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(n_out)
    else:
        src = np.maximum((dst + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = src - i0
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), i0), 1 - frac)
    np.add.at(m, (np.arange(n_out), i1), frac)
    return m


def _resize(x: np.ndarray, size, align_corners: bool) -> np.ndarray:
    """``C×h×w`` → ``C×H×W`` separable bilinear resize."""
    rows = _interp_matrix(size[0], x.shape[-2], align_corners)
    cols = _interp_matrix(size[1], x.shape[-1], align_corners)
    return np.einsum("Hh,chw,Ww->cHW", rows, x, cols)


WEIGHT = np.array([[0.02, -0.01, 0.03], [0.0, 0.04, -0.02]])


def _forward_np(x: np.ndarray) -> np.ndarray:
    """``3×h×w`` → ``2×h'×w'``: a 1×1 convolution plus a left-to-right ramp (not flip-symmetric),
    on every second row and column (a coarser output grid, like a CAM)."""
    y = np.einsum("kc,chw->khw", WEIGHT, x)[:, ::2, ::2]
    return y + np.linspace(-1.0, 1.0, y.shape[-1])


def _forward_torch(x: torch.Tensor) -> torch.Tensor:
    y = torch.einsum("kc,bchw->bkhw", torch.from_numpy(WEIGHT).to(x.dtype), x)[:, :, ::2, ::2]
    return y + torch.linspace(-1.0, 1.0, y.shape[-1], dtype=x.dtype)


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("flip", [False, True])
def test_sum_over_scales_and_flips_equals_direct_computation(align_corners, flip):
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (3, 11, 14))
    full = image.shape[1:]
    scales = (0.5, 1.0, 1.5)

    def image_np(scale):
        return _resize(image, scaled_size(full, scale), align_corners=False)

    total, passes = multiscale_flip_sum(_forward_torch, lambda s: torch.from_numpy(image_np(s))[None], full, scales,
                                        flip, align_corners=align_corners)
    ref = np.zeros((2, *full))
    for scale in scales:
        x = image_np(scale)
        ref += _resize(_forward_np(x), full, align_corners)
        if flip:
            ref += _resize(_forward_np(x[..., ::-1])[..., ::-1], full, align_corners)
    assert passes == len(scales) * (2 if flip else 1)
    assert total.shape == (1, 2, *full) and total.dtype == torch.float64
    np.testing.assert_allclose(total[0].numpy(), ref, rtol=1e-10, atol=1e-10)


def test_output_at_full_size_is_not_resized_and_sizes_round():
    image = torch.arange(2 * 3 * 4 * 5, dtype=torch.float64).view(2, 3, 4, 5)
    total, passes = multiscale_flip_sum(lambda x: x * 2, lambda s: image, (4, 5), (1.0,), flip=True)
    assert passes == 2
    torch.testing.assert_close(total, 4 * image)  # the mirrored pass mirrored back is the image again
    assert scaled_size((11, 14), 0.5) == (6, 7) and scaled_size((3, 3), 0.1) == (1, 1)
    with pytest.raises(ValueError):
        multiscale_flip_sum(lambda x: x, lambda s: image, (4, 5), ())
