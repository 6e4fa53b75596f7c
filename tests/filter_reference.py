"""Brute-force reference of the 5×5 image blurs (tests of wsss.training.rotation_blur and photometric)."""

from __future__ import annotations

import numpy as np


def mirror(k: int, n: int) -> int:
    """Index ``k`` reflected into ``0..n-1`` without repeating the edge pixel (OpenCV's default border)."""
    return -k if k < 0 else 2 * (n - 1) - k if k >= n else k


def filter_brute_force(image: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``1×C×H×W`` image correlated with the ``(2r+1)×(2r+1)`` ``weight``, mirrored borders, by explicit loops."""
    _, _, h, w = image.shape
    r = weight.shape[0] // 2
    out = np.zeros_like(image)
    for i in range(h):
        for j in range(w):
            for a in range(-r, r + 1):
                for b in range(-r, r + 1):
                    out[0, :, i, j] += weight[a + r, b + r] * image[0, :, mirror(i + a, h), mirror(j + b, w)]
    return out
