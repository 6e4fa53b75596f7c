"""Scribbles: skeleton scribbles from dense masks; shorten, shrink and drop; rendering.

A :class:`Scribble` is an ordered 1-px path (8-connected pixels) with a class and the object it
belongs to. Generated scribbles are the longest path of the skeleton of each object that the object
rule selects (:mod:`wsss.annotations.rule`: regions of at least 0.2 % of the image); imported
ScribbleSup polylines become scribbles through :func:`wsss.annotations.draw.rasterize_polyline`.
Both then go through the same edits:

- :func:`shorten` (``--length-ratio r``, ScribbleSup / regularized-losses "shortened
  scribbles"): the contiguous piece of relative arc length ``r`` centred on the path's midpoint;
  ``r = 0`` keeps the single pixel nearest to the midpoint. Pieces are nested in ``r``.
- :func:`shrink` (``--shrink-rate s``, URSS scribble-shrink): a contiguous piece of relative
  length ``1 − s`` starting at a uniformly random position (or centred); ``s = 1`` leaves one spot.
- :func:`apply_drop` (``--drop-rate d``, URSS scribble-drop): every object (or every scribble)
  loses its scribbles with probability ``d``; background kept unless asked.

Lengths are arc lengths along the path: 1 per horizontal/vertical step, √2 per diagonal step.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, dijkstra

from wsss.annotations.draw import footprint, stamp
from wsss.annotations.objects import Objects, find_objects, interior_peak
from wsss.annotations.rule import MIN_OBJECT_FRACTION, annotated_objects
from wsss.constants import IGNORE_INDEX


@dataclass
class Scribble:
    """One scribble.

    Attributes:
        cls: class index.
        path: P×2 int64 (row, col) pixels in stroke order, consecutive pixels 8-adjacent (P ≥ 1).
        obj: object index (0-based): the dense-mask object for generated scribbles, the polyline
            index for imported ones (each polyline is one object, docs/methods.md §7.2).
        clip: draw only inside object ``obj`` of the image's :class:`Objects` (generated scribbles).
    """

    cls: int
    path: np.ndarray
    obj: int
    clip: bool = False

    @property
    def length(self) -> float:
        return path_length(self.path)


def arc_positions(path: np.ndarray) -> np.ndarray:
    """(P,) float64 arc length from the first pixel to each pixel of a path (P×2 int)."""
    if len(path) < 2:
        return np.zeros(len(path))
    steps = np.sqrt((np.diff(path, axis=0).astype(np.float64) ** 2).sum(axis=1))
    return np.concatenate([[0.0], np.cumsum(steps)])


def path_length(path: np.ndarray) -> float:
    """Arc length of a path (P×2 int): 1 per axis step, √2 per diagonal step; 0 for one pixel."""
    s = arc_positions(path)
    return float(s[-1]) if len(s) else 0.0


def _piece(path: np.ndarray, start: float, stop: float) -> np.ndarray:
    """Pixels of ``path`` whose arc position lies in [start, stop]; the pixel nearest to the
    interval's centre when none does."""
    s = arc_positions(path)
    eps = 1e-9
    sel = (s >= start - eps) & (s <= stop + eps)
    if not sel.any():
        sel[int(np.argmin(np.abs(s - 0.5 * (start + stop))))] = True
    return path[sel]


def shorten(path: np.ndarray, ratio: float) -> np.ndarray:
    """Keep the contiguous piece of relative length ``ratio`` centred on the midpoint.

    Args:
        path: P×2 int64 pixel path.
        ratio: in [0, 1]; 1 keeps everything, 0 keeps the pixel nearest to the midpoint.

    Returns:
        Q×2 sub-path (Q ≥ 1). For ratios r ≤ r', the result for r is a subset of the one for r'.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError("ratio must be in [0, 1]")
    total = path_length(path)
    mid, half = 0.5 * total, 0.5 * ratio * total
    return _piece(path, mid - half, mid + half)


def shrink(path: np.ndarray, rate: float, u: float, centred: bool = False) -> np.ndarray:
    """URSS scribble-shrink: keep a contiguous piece of relative length ``1 − rate``.

    Args:
        path: P×2 int64 pixel path.
        rate: s in [0, 1]; 0 keeps the path, 1 leaves a single spot.
        u: a uniform draw in [0, 1) placing the piece: it starts at arc position ``u · s · L``
            (uniformly random start, the toolkit default; the paper only says "shrunk randomly").
        centred: put the piece in the middle instead (``u`` unused).

    Returns:
        Q×2 sub-path, never longer than ``path``.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError("rate must be in [0, 1]")
    total = path_length(path)
    keep = (1.0 - rate) * total
    slack = total - keep
    start = 0.5 * slack if centred else u * slack
    return _piece(path, start, start + keep)


def _peak(region: np.ndarray) -> np.ndarray:
    """(2,) int64 distance-transform peak of a region (:func:`~wsss.annotations.objects.interior_peak`)."""
    return np.array(interior_peak(region), dtype=np.int64)


_STEPS = ((0, 1, 1.0), (1, 0, 1.0), (1, 1, np.sqrt(2.0)), (1, -1, np.sqrt(2.0)))


def skeleton_path(region: np.ndarray, erode: int = 0) -> np.ndarray:
    """Longest path of a region's skeleton (``skimage.morphology.skeletonize``).

    The skeleton pixels form a graph (8-neighbours, edge length 1 or √2); the path joins the two
    ends found by a double Dijkstra sweep (from any pixel to the farthest ``a``, then from ``a`` to
    the farthest ``b``): the exact longest path when the skeleton is a tree, a long shortest path
    when the region has holes. If the skeleton is empty, the distance-transform peak is returned.

    Args:
        region: h×w bool, one connected object.
        erode: erode the region by a disk of this radius first (skipped if that empties it).

    Returns:
        P×2 int64 (row, col) pixels of the region, in path order, consecutive pixels 8-adjacent.
    """
    from skimage.morphology import disk, skeletonize

    region = np.asarray(region, dtype=bool)
    # a disk wider than the region fits nowhere: the erosion would be empty (and skipped), so skip it
    # without building a huge structuring element
    if erode > 0 and 2 * erode + 1 <= min(region.shape):
        eroded = ndimage.binary_erosion(region, structure=disk(erode))
        if eroded.any():
            region = eroded
    skel = skeletonize(region) & region
    n = int(skel.sum())
    if n == 0:
        return _peak(region)[None, :]
    if n == 1:
        return np.argwhere(skel).astype(np.int64)
    index = np.full(skel.shape, -1, dtype=np.int64)
    nodes = np.argwhere(skel)
    index[skel] = np.arange(n)
    h, w = skel.shape
    rows, cols, weights = [], [], []
    for dr, dc, length in _STEPS:
        # pairs (p, p + (dr, dc)) with both pixels on the skeleton
        r0, r1 = 0, h - dr
        c0, c1 = max(0, -dc), w - max(0, dc)
        a = index[r0:r1, c0:c1]
        b = index[r0 + dr : r1 + dr, c0 + dc : c1 + dc]
        both = (a >= 0) & (b >= 0)
        rows.append(a[both])
        cols.append(b[both])
        weights.append(np.full(int(both.sum()), length))
    graph = coo_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsr()
    ncomp, comp = connected_components(graph, directed=False)
    if ncomp > 1:  # keep the largest piece of a broken skeleton
        big = int(np.argmax(np.bincount(comp)))
        start = int(np.flatnonzero(comp == big)[0])
    else:
        start = 0
    d0 = dijkstra(graph, directed=False, indices=start)
    a = int(np.argmax(np.where(np.isfinite(d0), d0, -1.0)))
    da, pred = dijkstra(graph, directed=False, indices=a, return_predecessors=True)
    b = int(np.argmax(np.where(np.isfinite(da), da, -1.0)))
    order = [b]
    while order[-1] != a:
        order.append(int(pred[order[-1]]))
    return nodes[np.array(order[::-1])].astype(np.int64)


def scribbles_from_objects(objects: Objects, *, min_area: int = 16, erode: int = 0,
                           selected: np.ndarray | None = None) -> list[Scribble]:
    """One skeleton scribble per object (see :func:`skeleton_path`).

    Args:
        objects: the image's objects (:func:`~wsss.annotations.objects.find_objects`).
        min_area: objects with fewer pixels get a single point at their distance-transform peak
            instead (toolkit default 16 px: "objects smaller than a minimum area get a point").
        erode: erosion radius before skeletonising (default 0).
        selected: (N,) bool, the objects to scribble (:func:`wsss.annotations.rule.annotated_objects`);
            None = all.

    Returns:
        one :class:`Scribble` per selected object, in object order, with ``clip=True``; paths in
        image coordinates.
    """
    areas = objects.areas()
    out = []
    for i in range(len(objects)):
        if selected is not None and not selected[i]:
            continue
        region, sl = objects.region(i)
        offset = np.array([sl[0].start, sl[1].start], dtype=np.int64)
        if areas[i] < min_area:
            path = _peak(region)[None, :]
        else:
            path = skeleton_path(region, erode=erode)
        out.append(Scribble(cls=int(objects.classes[i]), path=path + offset, obj=i, clip=True))
    return out


def scribbles_from_mask(
    mask: np.ndarray, num_classes: int, *, exclude: tuple[int, ...] = (), min_area: int = 16, erode: int = 0,
    objects_rule: str = "large", min_fraction: float = MIN_OBJECT_FRACTION,
) -> tuple[list[Scribble], Objects]:
    """Skeleton scribbles for the objects of a dense mask that the object rule selects.

    Args:
        mask: H×W uint8 dense labels (255 = ignore, never scribbled).
        num_classes: K.
        exclude: classes without scribbles (e.g. background with ``--no-background``).
        min_area, erode: see :func:`scribbles_from_objects`.
        objects_rule, min_fraction: :func:`wsss.annotations.rule.annotated_objects` (default: objects of
            at least 0.2 % of the image; ``"all"``: every fragment).

    Returns:
        (scribbles, objects): objects are all of the mask's, selected or not.
    """
    objects = find_objects(mask, num_classes, exclude=exclude)
    selected = annotated_objects(objects, mask.shape, objects_rule, min_fraction)
    return scribbles_from_objects(objects, min_area=min_area, erode=erode, selected=selected), objects


def edit_scribbles(
    scribbles: list[Scribble],
    *,
    length_ratio: float = 1.0,
    shrink_rate: float = 0.0,
    shrink_centred: bool = False,
    shrink_rng: np.random.Generator | None = None,
) -> list[Scribble]:
    """Shorten (centred, ``length_ratio``) then shrink (``shrink_rate``) every scribble.

    ``shrink_rng`` gives one uniform draw per scribble, drawn for every scribble whatever the
    rate, so the draws do not depend on other options.
    """
    draws = shrink_rng.random(len(scribbles)) if shrink_rng is not None else np.full(len(scribbles), 0.5)
    out = []
    for s, u in zip(scribbles, draws):
        path = s.path if length_ratio >= 1.0 else shorten(s.path, length_ratio)
        if shrink_rate > 0.0:
            path = shrink(path, shrink_rate, float(u), centred=shrink_centred)
        out.append(replace(s, path=path))
    return out


def apply_drop(
    scribbles: list[Scribble],
    rate: float,
    rng: np.random.Generator,
    *,
    unit: str = "object",
    background: int | None = None,
    drop_background: bool = False,
) -> tuple[list[Scribble], int]:
    """URSS scribble-drop.

    Args:
        scribbles: the image's scribbles.
        rate: d, probability that a unit loses its scribbles.
        rng: one uniform draw per unit (objects in ascending ``obj`` order, or scribbles in order),
            drawn for every unit whatever ``rate`` and ``drop_background`` are.
        unit: ``object`` (paper §5.1: all scribbles of an object go together) or ``scribble``
            (§5.4 wording: each scribble on its own).
        background: the background class (None: no background).
        drop_background: let background units be dropped too (default off: the paper does not say).

    Returns:
        (kept scribbles in their order, number of units dropped).
    """
    if unit not in ("object", "scribble"):
        raise ValueError("unit must be 'object' or 'scribble'")
    if not scribbles:
        return [], 0
    if unit == "object":
        keys = np.array([s.obj for s in scribbles])
        units, inverse = np.unique(keys, return_inverse=True)
        u = rng.random(len(units))
        unit_class = np.zeros(len(units), dtype=np.int64)
        unit_class[inverse] = [s.cls for s in scribbles]
    else:
        inverse = np.arange(len(scribbles))
        u = rng.random(len(scribbles))
        unit_class = np.array([s.cls for s in scribbles])
    dropped = u < rate
    if background is not None and not drop_background:
        dropped &= unit_class != background
    kept = [s for s, k in zip(scribbles, inverse) if not dropped[k]]
    return kept, int(dropped.sum())


def render_scribbles(
    scribbles: list[Scribble],
    shape: tuple[int, int],
    width: int = 3,
    *,
    objects: Objects | None = None,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Draw scribbles ``width`` px wide into a label map; later scribbles overwrite earlier ones.

    Args:
        scribbles: scribbles in drawing order.
        shape: (H, W).
        width: stroke width (default 3 px, rloss convention; see :mod:`wsss.annotations.draw`).
        objects: required for ``clip`` scribbles: their pixels stay inside their object.
        valid: H×W bool, pixels that may be labelled (dense label ≠ 255); None = all.

    Returns:
        H×W uint8 label map, 255 = unlabelled.
    """
    label = np.full(shape, IGNORE_INDEX, dtype=np.uint8)
    offsets = footprint(width)
    for s in scribbles:
        cover = stamp(s.path, offsets, shape)
        keep = np.ones(len(cover), dtype=bool)
        if s.clip:
            if objects is None:
                raise ValueError("clipped scribbles need the image's objects")
            keep &= objects.labels[cover[:, 0], cover[:, 1]] == s.obj + 1
        if valid is not None:
            keep &= valid[cover[:, 0], cover[:, 1]]
        cover = cover[keep]
        label[cover[:, 0], cover[:, 1]] = s.cls
    return label
