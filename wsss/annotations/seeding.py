"""Per-image random streams: results depend on (seed, image id, purpose) only.

A stage that draws random numbers for an image calls :func:`image_rng` with the command's
``--seed``, the image id and a purpose string (``"drop"``, ``"shrink"``, ``"blocks"``, ...). The
stream is the same whichever worker process or ``torchrun`` rank computes the image, and separate
purposes never share draws, so e.g. the drop decisions do not change when ``--length-ratio`` or
``--shrink-rate`` change (which keeps shortened scribbles nested across ratios).
"""

from __future__ import annotations

import hashlib

import numpy as np


def _words(text: str) -> list[int]:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]


def image_rng(seed: int, image_id: str, purpose: str) -> np.random.Generator:
    """A numpy Generator seeded from (seed, image id, purpose).

    Args:
        seed: the command's ``--seed`` (a non-negative integer).
        image_id: the image id.
        purpose: what the draws are for; different purposes give independent streams.

    Returns:
        a fresh ``np.random.Generator`` (PCG64).
    """
    if seed < 0:
        raise ValueError("seed must be non-negative")
    entropy = [int(seed) & 0xFFFFFFFF, int(seed) >> 32, *_words(image_id), *_words(purpose)]
    return np.random.default_rng(np.random.SeedSequence(entropy))
