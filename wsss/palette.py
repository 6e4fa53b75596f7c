"""The PASCAL VOC colour palette and label-map colouring.

The VOC palette gives label ``i`` the colour whose red, green and blue bytes are filled, from the
most significant bit down, with bits (0, 3, 6, ...), (1, 4, 7, ...) and (2, 5, 8, ...) of ``i``:
0 = black (background), 1 = (128, 0, 0), 2 = (0, 128, 0), ..., 255 = (224, 224, 192) (the colour
VOC uses for its "void" boundary band, our ignore value).
"""

from __future__ import annotations

import numpy as np


def voc_palette(n: int = 256) -> np.ndarray:
    """The first ``n`` colours of the VOC palette.

    Returns:
        n×3 uint8 array, row ``i`` = RGB colour of label ``i``.
    """
    labels = np.arange(n, dtype=np.int64)
    colours = np.zeros((n, 3), dtype=np.int64)
    for step in range(8):  # 8 groups of 3 bits cover labels up to 2**24
        bits = labels >> (3 * step)
        for channel in range(3):
            colours[:, channel] |= ((bits >> channel) & 1) << (7 - step)
    return colours.astype(np.uint8)


#: 256×3 uint8: the full palette (index 255 = ignore colour).
VOC_PALETTE = voc_palette(256)


def colorize(label: np.ndarray) -> np.ndarray:
    """Colour a label map with the VOC palette.

    Args:
        label: H×W integer array with values in 0..255.

    Returns:
        H×W×3 uint8 RGB image.
    """
    return VOC_PALETTE[np.asarray(label, dtype=np.uint8)]


def palette_bytes() -> list[int]:
    """The palette as the flat list of 768 ints Pillow's ``Image.putpalette`` expects."""
    return VOC_PALETTE.reshape(-1).tolist()
