"""Point annotations (clicks): one per object from dense masks, or imported from CSV / JSON.

Generated (What's-the-point style clicks): per object that the object rule selects
(:mod:`wsss.annotations.rule`: regions of at least 0.2 % of the image) the pixel
farthest from its boundary (distance-transform maximum, the default) or a uniformly random pixel
of the object (``--random``); drawn as a disk of ``--radius`` px (0 = the pixel alone) clipped to
the object.

Imported files list one click per row, coordinates 0-based pixels, ``x`` = column, ``y`` = row:

- CSV: ``image_id,x,y,class[,radius]``; a header row naming these columns is optional (with a
  header the order is free and ``id``/``image``/``label`` are accepted too); blank lines and lines
  starting with ``#`` are skipped;
- JSON: a list of ``{"image_id": ..., "x": ..., "y": ..., "class": ..., "radius": ...}`` objects,
  or a mapping ``{image_id: [{"x": ..., "y": ..., "class": ...}, ...]}``.

``class`` is a class name (matched ignoring case and punctuation) or an index. SPML's public
point data draws each click 6 px wide; use ``--radius 3`` for a similar disk.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsss.annotations.draw import disk_offsets, stamp
from wsss.annotations.objects import Objects, class_index, interior_peak
from wsss.annotations.rule import MIN_OBJECT_FRACTION, annotated_objects
from wsss.constants import IGNORE_INDEX
from wsss.errors import UserError


@dataclass
class Point:
    """One click.

    Attributes:
        row, col: 0-based pixel position (y, x).
        cls: class index.
        radius: disk radius in px, or None for the command's ``--radius``.
        obj: object index (0-based) to clip the disk to, or -1 (imported points: not clipped).
        where: file and line it came from (for error messages), or "".
    """

    row: int
    col: int
    cls: int
    radius: int | None = None
    obj: int = -1
    where: str = ""


def points_from_objects(objects: Objects, rng: np.random.Generator | None = None,
                        selected: np.ndarray | None = None) -> list[Point]:
    """One point per object.

    Args:
        objects: the image's objects.
        rng: None for the distance-transform maximum (:func:`~wsss.annotations.objects.interior_peak`:
            the image border counts as boundary, ties go to the most central tied pixel), or a Generator
            for a uniformly random object pixel (one integer drawn per selected object, in object order).
        selected: (N,) bool, the objects to click (:func:`wsss.annotations.rule.annotated_objects`);
            None = all.

    Returns:
        one :class:`Point` per selected object, ``obj`` set.
    """
    out = []
    for i in range(len(objects)):
        if selected is not None and not selected[i]:
            continue
        region, sl = objects.region(i)
        if rng is None:
            r, c = interior_peak(region)
        else:
            candidates = np.flatnonzero(region)
            r, c = np.unravel_index(int(candidates[int(rng.integers(len(candidates)))]), region.shape)
        out.append(Point(row=int(r) + sl[0].start, col=int(c) + sl[1].start, cls=int(objects.classes[i]), obj=i))
    return out


def points_from_mask(mask: np.ndarray, num_classes: int, *, exclude: tuple[int, ...] = (),
                     rng: np.random.Generator | None = None, objects_rule: str = "large",
                     min_fraction: float = MIN_OBJECT_FRACTION) -> tuple[list[Point], Objects]:
    """Points for the objects of a dense mask (H×W uint8) that the object rule selects
    (:func:`wsss.annotations.rule.annotated_objects`); see :func:`points_from_objects`."""
    from wsss.annotations.objects import find_objects

    objects = find_objects(mask, num_classes, exclude=exclude)
    selected = annotated_objects(objects, mask.shape, objects_rule, min_fraction)
    return points_from_objects(objects, rng, selected), objects


def check_points(points: list[Point], shape: tuple[int, int], path: Path | str) -> None:
    """Raise :class:`UserError` for the first point outside an (H, W) image."""
    h, w = shape
    for p in points:
        if not (0 <= p.row < h and 0 <= p.col < w):
            where = p.where or str(path)
            raise UserError(f"{where}: point x={p.col}, y={p.row} is outside the {w}×{h} image. Fix the coordinates (0-based pixels).")


def render_points(
    points: list[Point],
    shape: tuple[int, int],
    radius: int = 0,
    *,
    objects: Objects | None = None,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Draw points as disks; later points overwrite earlier ones.

    Args:
        points: clicks (positions inside the image).
        shape: (H, W).
        radius: default disk radius in px (0 = one pixel) for points without their own.
        objects: clip disks of points with ``obj >= 0`` to their object.
        valid: H×W bool, pixels that may be labelled (dense label ≠ 255); None = all.

    Returns:
        H×W uint8 label map, 255 = unlabelled.
    """
    label = np.full(shape, IGNORE_INDEX, dtype=np.uint8)
    cache: dict[int, np.ndarray] = {}
    for p in points:
        rad = int(radius if p.radius is None else p.radius)
        if rad not in cache:
            cache[rad] = disk_offsets(rad)
        cover = stamp(np.array([[p.row, p.col]]), cache[rad], shape)
        keep = np.ones(len(cover), dtype=bool)
        if p.obj >= 0 and objects is not None:
            keep &= objects.labels[cover[:, 0], cover[:, 1]] == p.obj + 1
        if valid is not None:
            keep &= valid[cover[:, 0], cover[:, 1]]
        cover = cover[keep]
        label[cover[:, 0], cover[:, 1]] = p.cls
    return label


_ID_KEYS = ("image_id", "id", "image", "imageid")
_CLASS_KEYS = ("class", "label", "cls", "class_name")


def _make_point(row: dict, classes: list[str], where: str) -> tuple[str, Point]:
    def get(keys, required=True):
        for k in keys:
            if k in row and row[k] not in (None, ""):
                return row[k]
        if required:
            raise UserError(f"{where}: missing '{keys[0]}'. Each point needs image_id, x, y, class[, radius].")
        return None

    image_id = str(get(_ID_KEYS)).strip()
    try:
        x = int(round(float(get(("x",)))))
        y = int(round(float(get(("y",)))))
        rad = get(("radius", "r"), required=False)
        rad = None if rad is None else int(round(float(rad)))
    except (TypeError, ValueError) as exc:
        raise UserError(f"{where}: x, y and radius must be numbers ({exc}). Fix the file.") from exc
    if rad is not None and rad < 0:
        raise UserError(f"{where}: negative radius {rad}. Use 0 or more.")
    cls = class_index(str(get(_CLASS_KEYS)), classes, where)
    return image_id, Point(row=y, col=x, cls=cls, radius=rad, where=where)


def read_points_file(path: str | Path, classes: list[str]) -> tuple[dict[str, list[Point]], dict[str, str]]:
    """Read clicks from a CSV or JSON file (format in the module docstring).

    Args:
        path: ``.csv`` (or any other suffix) or ``.json`` file.
        classes: class names of the dataset.

    Returns:
        (points per image id in file order, problems per image id): a row with an unknown class
        or a non-numeric coordinate makes its image bad (message naming file and line) so that
        ``--skip-bad`` can leave just that image out.

    Raises:
        UserError: unreadable file, JSON that does not parse, a row without an image id.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"{path}: cannot read the points file ({exc}). Check the path.") from exc
    rows: list[tuple[str, dict]] = []
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UserError(f"{path}: malformed JSON ({exc}). Fix the file.") from exc
        if isinstance(data, dict):
            for image_id, items in data.items():
                for k, item in enumerate(items if isinstance(items, list) else [items]):
                    rows.append((f"{path} ({image_id} point {k + 1})", {"image_id": image_id, **item}))
        elif isinstance(data, list):
            for k, item in enumerate(data):
                if not isinstance(item, dict):
                    raise UserError(f"{path}: item {k + 1} is not an object. Use {{\"image_id\", \"x\", \"y\", \"class\"}} items.")
                rows.append((f"{path} (item {k + 1})", item))
        else:
            raise UserError(f"{path}: expected a JSON list of points or a mapping image_id -> points.")
    else:
        lines = [(n + 1, line) for n, line in enumerate(text.splitlines()) if line.strip() and not line.lstrip().startswith("#")]
        parsed = [(n, [f.strip() for f in rec]) for (n, _), rec in zip(lines, csv.reader([ln for _, ln in lines]))]
        header = ["image_id", "x", "y", "class", "radius"]
        if parsed:
            first = parsed[0][1]
            try:
                float(first[1] if len(first) > 1 else "")
            except ValueError:
                header = [f.lower() for f in first]
                parsed = parsed[1:]
        for n, fields in parsed:
            if len(fields) < 4 and len(header) == 5 and header[0] == "image_id":
                raise UserError(f"{path}:{n}: expected image_id,x,y,class[,radius], got {len(fields)} fields. Fix the line.")
            rows.append((f"{path}:{n}", dict(zip(header, fields))))
    points: dict[str, list[Point]] = {}
    problems: dict[str, str] = {}
    for where, row in rows:
        image_id = next((str(row[k]).strip() for k in _ID_KEYS if row.get(k) not in (None, "")), None)
        if image_id is None:
            raise UserError(f"{where}: no image_id. Each point needs image_id, x, y, class[, radius].")
        try:
            _, point = _make_point(row, classes, where)
        except UserError as exc:
            problems.setdefault(image_id, str(exc))
            continue
        points.setdefault(image_id, []).append(point)
    return points, problems
