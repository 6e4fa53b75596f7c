"""Image-level tags and boxes: from dense masks, VOC ``Annotations/*.xml`` or a tags CSV.

Stored in a ``tags`` artifact (per image ``tags``: T int16 class indices, sorted, no duplicates;
``boxes``: N×5 int32 rows ``(class, xmin, ymin, xmax, ymax)``, 0-based inclusive pixel
coordinates, x = column, y = row).

- From masks: tags are the classes present (background and 255 excluded); boxes are the bounding
  boxes of each 8-connected component of each non-background class.
- From VOC XML: ``<object><name>`` gives the tags (``difficult`` objects included);
  ``<bndbox>`` xmin, ymin, xmax, ymax are 1-based inclusive and are converted by subtracting 1.
- From CSV: ``image_id,class[,class...]`` per line (names or indices); no boxes.
"""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from wsss.annotations.objects import class_index, find_objects
from wsss.constants import IGNORE_INDEX
from wsss.errors import UserError


def tags_from_mask(mask: np.ndarray, num_classes: int, background: int | None) -> np.ndarray:
    """Classes present in a dense mask (H×W uint8), background and 255 excluded.

    Returns:
        (T,) int16, ascending.
    """
    present = np.unique(mask)
    present = present[(present != IGNORE_INDEX) & (present < num_classes)]
    if background is not None:
        present = present[present != background]
    return present.astype(np.int16)


def boxes_from_mask(mask: np.ndarray, num_classes: int, background: int | None, min_area: int = 1) -> np.ndarray:
    """Bounding box of each 8-connected component of each non-background class.

    Args:
        mask: H×W uint8 dense labels.
        num_classes: K.
        background: class without boxes (None: every class gets boxes).
        min_area: components with fewer pixels get no box.

    Returns:
        N×5 int32 ``(class, xmin, ymin, xmax, ymax)``, 0-based inclusive, object order of
        :func:`~wsss.annotations.objects.find_objects`.
    """
    objects = find_objects(mask, num_classes, exclude=() if background is None else (background,))
    areas = objects.areas()
    rows = [
        (int(c), sl[1].start, sl[0].start, sl[1].stop - 1, sl[0].stop - 1)
        for c, sl, a in zip(objects.classes, objects.slices, areas)
        if a >= min_area
    ]
    return np.array(rows, dtype=np.int32).reshape(-1, 5)


def read_voc_xml(path: str | Path, classes: list[str], shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Tags and boxes of one VOC ``Annotations/<id>.xml`` file.

    Args:
        path: the XML file.
        classes: class names (``<name>`` must match one).
        shape: (H, W) of the image to check boxes against; None = no check.

    Returns:
        (tags (T,) int16 ascending, boxes N×5 int32 ``(class, xmin, ymin, xmax, ymax)`` 0-based
        inclusive, in file order; objects without ``<bndbox>`` give a tag but no box).

    Raises:
        UserError: missing or malformed file, unknown class, box outside the image or inverted,
            no object.
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError as exc:
        raise UserError(f"{path}: annotation file not found. Add it, or pass --skip-bad to leave the image out.") from exc
    except (ET.ParseError, OSError) as exc:
        raise UserError(f"{path}: malformed XML ({exc}). Fix or replace the file, or pass --skip-bad.") from exc
    objs = root.findall("object")
    if not objs:
        raise UserError(f"{path}: no <object> in the annotation. An image needs at least one tag; pass --skip-bad to leave it out.")
    tags, boxes = set(), []
    for n, obj in enumerate(objs):
        name = obj.findtext("name")
        if not name or not name.strip():
            raise UserError(f"{path}: object {n + 1} has no <name>. Fix the XML file.")
        cls = class_index(name, classes, f"{path} (object {n + 1})")
        tags.add(cls)
        box = obj.find("bndbox")
        if box is None:
            continue
        try:
            x0, y0, x1, y1 = (int(round(float(box.findtext(k)))) - 1 for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError) as exc:
            raise UserError(f"{path}: object {n + 1} has a bndbox without numeric xmin/ymin/xmax/ymax. Fix the XML file.") from exc
        if x1 < x0 or y1 < y0:
            raise UserError(f"{path}: object {n + 1} has an inverted bndbox (xmin > xmax or ymin > ymax). Fix the XML file.")
        if shape is not None:
            h, w = shape
            if x0 < 0 or y0 < 0 or x1 >= w or y1 >= h:
                raise UserError(
                    f"{path}: object {n + 1} bndbox ({x0 + 1},{y0 + 1})-({x1 + 1},{y1 + 1}) (1-based) is outside the "
                    f"{w}×{h} image. Check that the file belongs to this image."
                )
        boxes.append((cls, x0, y0, x1, y1))
    return np.array(sorted(tags), dtype=np.int16), np.array(boxes, dtype=np.int32).reshape(-1, 5)


def read_tags_csv(path: str | Path, classes: list[str]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Tags from a CSV: ``image_id,class[,class...]`` per line (``#`` comments, blank lines skipped;
    an optional header line starting with ``image_id``).

    Returns:
        (tags per image id: (T,) int16 ascending, problems per image id: unknown class messages
        naming file and line).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"{path}: cannot read the tags file ({exc}). Check the path.") from exc
    tags: dict[str, set[int]] = {}
    problems: dict[str, str] = {}
    for n, fields in enumerate(csv.reader(text.splitlines()), start=1):
        fields = [f.strip() for f in fields]
        if not fields or not fields[0] or fields[0].startswith("#"):
            continue
        if n == 1 and fields[0].lower() in ("image_id", "id", "image"):
            continue
        image_id = fields[0]
        entry = tags.setdefault(image_id, set())
        for name in fields[1:]:
            if not name:
                continue
            try:
                entry.add(class_index(name, classes, f"{path}:{n}"))
            except UserError as exc:
                problems.setdefault(image_id, str(exc))
    return {k: np.array(sorted(v), dtype=np.int16) for k, v in tags.items()}, problems
