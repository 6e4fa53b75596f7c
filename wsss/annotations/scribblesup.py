"""Import human scribbles: ScribbleSup XML files and seed PNGs.

ScribbleSup (Lin et al. 2016, PASCAL VOC 2012 scribbles) ships one XML file per image::

    <annotation>
      <filename>2007_000032.jpg</filename>          (optional, not used)
      <polygon>
        <tag>aeroplane</tag>                        class name (VOC names, "background" included)
        <point><X>104</X><Y>78</Y></point>          vertices, 0-based pixel x (column), y (row)
        <point><X>120</X><Y>81</Y></point>
        ...
      </polygon>
      ...
    </annotation>

Each ``<polygon>`` is an open polyline (a scribble, despite the name); it becomes one
:class:`~wsss.annotations.scribbles.Scribble` whose path is the 8-connected rasterisation of its
vertices (:func:`~wsss.annotations.draw.rasterize_polyline`). Fractional coordinates are rounded
to the nearest pixel. Drawing them ``--width`` px wide in file order (later ones overwrite earlier
ones) gives the label map (docs/methods.md §7).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from wsss.annotations.draw import rasterize_polyline
from wsss.annotations.objects import class_index
from wsss.annotations.scribbles import Scribble
from wsss.data.base import check_label_map, load_label_png
from wsss.errors import UserError


def _number(text: str | None, path: Path, what: str) -> float:
    try:
        return float((text or "").strip())
    except ValueError as exc:
        raise UserError(f"{path}: {what} is not a number ({text!r}). Fix the XML file.") from exc


def read_scribblesup_xml(path: str | Path, classes: list[str], shape: tuple[int, int]) -> list[Scribble]:
    """Parse one ScribbleSup XML file into scribbles.

    Args:
        path: the XML file.
        classes: class names of the dataset (``<tag>`` must name one, matching ignores case and
            punctuation).
        shape: (H, W) of the image; every vertex must lie inside it.

    Returns:
        one scribble per ``<polygon>``, in file order, ``obj`` = polygon index, ``clip=False``.

    Raises:
        UserError: unreadable or malformed XML, a polygon without tag or points, an unknown class,
            a vertex outside the image, or no polygon at all.
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError as exc:
        raise UserError(f"{path}: scribble file not found. Add it, or pass --skip-bad to leave the image out.") from exc
    except (ET.ParseError, OSError) as exc:
        raise UserError(f"{path}: malformed XML ({exc}). Fix or replace the file, or pass --skip-bad.") from exc
    polygons = root.findall(".//polygon")
    if not polygons:
        raise UserError(f"{path}: no <polygon> scribble in the file. Add scribbles, or pass --skip-bad to leave the image out.")
    h, w = shape
    out = []
    for n, poly in enumerate(polygons):
        tag = poly.find("tag")
        if tag is None or not (tag.text or "").strip():
            raise UserError(f"{path}: polygon {n + 1} has no <tag> class name. Fix the XML file.")
        cls = class_index(tag.text, classes, f"{path} (polygon {n + 1})")
        pts = []
        for pt in poly.findall("point"):
            x = _number(pt.findtext("X", pt.findtext("x")), path, f"polygon {n + 1} <X>")
            y = _number(pt.findtext("Y", pt.findtext("y")), path, f"polygon {n + 1} <Y>")
            pts.append((y, x))
        if not pts:
            raise UserError(f"{path}: polygon {n + 1} ('{tag.text.strip()}') has no <point>. Fix the XML file.")
        rc = np.rint(np.array(pts, dtype=np.float64)).astype(np.int64)
        outside = (rc[:, 0] < 0) | (rc[:, 0] >= h) | (rc[:, 1] < 0) | (rc[:, 1] >= w)
        if outside.any():
            y, x = rc[int(np.argmax(outside))]
            raise UserError(
                f"{path}: polygon {n + 1} has point x={x}, y={y} outside the {w}×{h} image. "
                "Check that the file belongs to this image."
            )
        out.append(Scribble(cls=cls, path=rasterize_polyline(rc), obj=n, clip=False))
    return out


def load_seed_png(path: str | Path, num_classes: int, shape: tuple[int, int]) -> np.ndarray:
    """Read a seed PNG (palette or grey; class indices, 255 = unlabelled), checked.

    Args:
        path: the PNG.
        num_classes: K; values must be in 0..K-1 or 255.
        shape: (H, W) of the image.

    Returns:
        H×W uint8 label map.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: seed PNG not found. Add it, or pass --skip-bad to leave the image out.")
    return check_label_map(load_label_png(path), num_classes, shape, path)
