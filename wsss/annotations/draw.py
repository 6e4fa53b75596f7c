"""Drawing strokes: polyline rasterisation and w-px-wide footprints.

A stroke of width ``w`` is its 1-px centre line (8-connected, Bresenham via
``skimage.draw.line``) stamped with :func:`footprint` ``(w)``: the pixels of a disk of diameter
``w`` (for odd ``w`` centred on the pixel; for even ``w`` centred half a pixel up-left). ``w = 3``
gives the 3×3 square, i.e. a line 3 px wide, the rloss convention for ScribbleSup
(docs/methods.md §7); ``w = 1`` gives the centre line alone.
"""

from __future__ import annotations

import numpy as np

from wsss.validation import check_allocation

#: Bytes per candidate offset while building a footprint: two int64 meshgrids, the bool mask and the
#: M×2 int64 result.
FOOTPRINT_BYTES = 8 * 2 + 1 + 16


def footprint(width: int) -> np.ndarray:
    """Offsets covered by a stroke of ``width`` px around a centre-line pixel.

    Args:
        width: stroke width in pixels (≥ 1).

    Returns:
        M×2 int64 (drow, dcol) offsets; M = 1 for width 1, 9 for width 3.
    """
    if width < 1:
        raise ValueError("width must be at least 1")
    check_allocation(FOOTPRINT_BYTES * (width + 1) ** 2, f"--width {width}: the stroke footprint of {width}×{width} px",
                     "Use a stroke width below the image size.")
    lo, hi = -(width // 2), (width - 1) // 2
    centre = 0.0 if width % 2 else -0.5
    d = np.arange(lo, hi + 1)
    dr, dc = np.meshgrid(d, d, indexing="ij")
    keep = (dr - centre) ** 2 + (dc - centre) ** 2 <= (width / 2.0) ** 2 + 1e-9
    return np.stack([dr[keep], dc[keep]], axis=1).astype(np.int64)


def disk_offsets(radius: int) -> np.ndarray:
    """Offsets of a disk of ``radius`` px (``dr² + dc² ≤ radius²``); radius 0 = the pixel alone.

    Returns:
        M×2 int64 (drow, dcol) offsets.
    """
    check_allocation(FOOTPRINT_BYTES * (2 * radius + 1) ** 2, f"--radius {radius}: a disk of {2 * radius + 1}×{2 * radius + 1} px",
                     "Use a radius below the image size.")
    d = np.arange(-radius, radius + 1)
    dr, dc = np.meshgrid(d, d, indexing="ij")
    keep = dr**2 + dc**2 <= radius**2
    return np.stack([dr[keep], dc[keep]], axis=1).astype(np.int64)


def rasterize_polyline(points_rc: np.ndarray) -> np.ndarray:
    """The 1-px, 8-connected pixel path through a sequence of vertices.

    Args:
        points_rc: N×2 integer (row, col) vertices, N ≥ 1.

    Returns:
        P×2 int64 (row, col) pixels in drawing order, consecutive pixels 8-adjacent and distinct.
    """
    from skimage.draw import line

    pts = np.asarray(points_rc, dtype=np.int64).reshape(-1, 2)
    if len(pts) == 1:
        return pts.copy()
    pieces = []
    for (r0, c0), (r1, c1) in zip(pts[:-1], pts[1:]):
        rr, cc = line(int(r0), int(c0), int(r1), int(c1))
        pieces.append(np.stack([rr, cc], axis=1))
    path = np.concatenate(pieces).astype(np.int64)
    keep = np.ones(len(path), dtype=bool)
    keep[1:] = np.any(path[1:] != path[:-1], axis=1)
    return path[keep]


def stamp(path_rc: np.ndarray, offsets: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels covered by stamping ``offsets`` at every path pixel, clipped to the image.

    Args:
        path_rc: P×2 int (row, col) pixels.
        offsets: M×2 int offsets (:func:`footprint` or :func:`disk_offsets`).
        shape: (H, W) of the image.

    Returns:
        Q×2 int64 distinct (row, col) pixels inside the image (Q ≤ P·M), sorted row-major.
    """
    check_allocation(3 * 16.0 * len(path_rc) * len(offsets), f"a stroke of {len(path_rc)} px stamped with {len(offsets)} offsets",
                     "Use a smaller --width or --radius.")
    cover = (np.asarray(path_rc, dtype=np.int64)[:, None, :] + offsets[None, :, :]).reshape(-1, 2)
    inside = (cover[:, 0] >= 0) & (cover[:, 0] < shape[0]) & (cover[:, 1] >= 0) & (cover[:, 1] < shape[1])
    cover = cover[inside]
    flat = np.unique(cover[:, 0] * shape[1] + cover[:, 1])
    return np.stack([flat // shape[1], flat % shape[1]], axis=1)
