"""Weak annotations: import human scribbles, points, tags and boxes, or generate them from dense masks.

Every function here works on one image and plain numpy arrays; the ``prepare-*`` stages
(:mod:`wsss.stages.prepare`) run them over a dataset and write ``seeds`` / ``tags`` artifacts.
Formats, generators and defaults follow docs/methods.md §7.

Conventions:

- label maps are H×W uint8 with class indices ``0..K-1`` and ``255`` (:data:`IGNORE_INDEX`) for
  unlabelled pixels;
- pixel coordinates are 0-based; arrays of positions are (row, col) = (y, x) unless a file format
  says otherwise (ScribbleSup XML, point CSV/JSON and VOC boxes are x, y);
- an *object* is one 8-connected component of one class of a dense mask
  (:func:`~wsss.annotations.objects.find_objects`);
- randomness comes from :func:`~wsss.annotations.seeding.image_rng`, one stream per (seed, image id,
  purpose), so results never depend on the worker or rank that computes an image.

Modules: :mod:`.seeding` (per-image random streams), :mod:`.objects` (connected objects,
background class), :mod:`.draw` (polyline rasterisation, stroke footprints), :mod:`.scribbles`
(skeleton scribbles, shorten / shrink / drop, rendering), :mod:`.scribblesup` (ScribbleSup XML and
seed PNG import), :mod:`.points`, :mod:`.blocks`, :mod:`.tags` (tags and boxes), :mod:`.stats`.
"""

from __future__ import annotations

from wsss.annotations.blocks import blocks_from_mask
from wsss.annotations.draw import footprint, rasterize_polyline, stamp
from wsss.annotations.objects import Objects, class_index, find_background, find_objects
from wsss.annotations.points import Point, points_from_mask, read_points_file, render_points
from wsss.annotations.scribbles import (
    Scribble,
    apply_drop,
    path_length,
    render_scribbles,
    scribbles_from_mask,
    shorten,
    shrink,
    skeleton_path,
)
from wsss.annotations.scribblesup import load_seed_png, read_scribblesup_xml
from wsss.annotations.seeding import image_rng
from wsss.annotations.stats import SeedStatistics, TagStatistics
from wsss.annotations.tags import boxes_from_mask, read_tags_csv, read_voc_xml, tags_from_mask
from wsss.constants import IGNORE_INDEX


__all__ = [
    "IGNORE_INDEX",
    "Objects",
    "Point",
    "Scribble",
    "SeedStatistics",
    "TagStatistics",
    "apply_drop",
    "blocks_from_mask",
    "boxes_from_mask",
    "class_index",
    "find_background",
    "find_objects",
    "footprint",
    "image_rng",
    "load_seed_png",
    "path_length",
    "points_from_mask",
    "rasterize_polyline",
    "read_points_file",
    "read_scribblesup_xml",
    "read_tags_csv",
    "read_voc_xml",
    "render_points",
    "render_scribbles",
    "scribbles_from_mask",
    "shorten",
    "shrink",
    "skeleton_path",
    "stamp",
    "tags_from_mask",
]
