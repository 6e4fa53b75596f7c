"""Block-wise annotation (Tree Energy Loss, used for Cityscapes and ADE20k).

The dense mask is cut into a grid of square blocks of ``block_size`` px (blocks on the right and
bottom edges may be smaller); a fraction ``keep`` of the blocks, chosen at random, keeps its dense
labels and the rest becomes 255. Fragments below the object rule's minimum size
(:mod:`wsss.annotations.rule`) stay unlabelled inside kept blocks too, as they do for scribbles and
clicks. The exact TEL protocol (block size, whether blocks are counted over the whole image) is not
published: both are options here.
"""

from __future__ import annotations

import numpy as np

from wsss.constants import IGNORE_INDEX


def block_grid(shape: tuple[int, int], block_size: int) -> tuple[int, int]:
    """(rows, cols) of blocks covering an (H, W) image."""
    return -(-shape[0] // block_size), -(-shape[1] // block_size)


def blocks_from_mask(mask: np.ndarray, block_size: int, keep: float, rng: np.random.Generator,
                     unlabelled: np.ndarray | None = None) -> np.ndarray:
    """Keep a random fraction of grid blocks of a dense mask.

    Args:
        mask: H×W uint8 dense labels (255 stays 255).
        unlabelled: H×W bool pixels left unlabelled even inside kept blocks (the fragments below the
            object rule's minimum size, :func:`wsss.annotations.rule.unannotated_pixels`); None = none.
        block_size: block side in px (≥ 1).
        keep: fraction of blocks kept, in [0, 1]; ``round(keep · n)`` of the ``n`` blocks.
        rng: one permutation of the ``n`` blocks is drawn; the first ones are kept, so for the same
            seed a larger ``keep`` keeps a superset of blocks.

    Returns:
        H×W uint8 label map: dense labels inside kept blocks, 255 elsewhere.
    """
    if block_size < 1:
        raise ValueError("block_size must be at least 1")
    if not 0.0 <= keep <= 1.0:
        raise ValueError("keep must be in [0, 1]")
    h, w = mask.shape
    gy, gx = block_grid((h, w), block_size)
    n = gy * gx
    order = rng.permutation(n)
    kept = np.zeros(n, dtype=bool)
    kept[order[: int(round(keep * n))]] = True
    grid = kept.reshape(gy, gx)
    full = np.repeat(np.repeat(grid, block_size, axis=0), block_size, axis=1)[:h, :w]
    if unlabelled is not None:
        full = full & ~unlabelled
    return np.where(full, mask, IGNORE_INDEX).astype(np.uint8)
