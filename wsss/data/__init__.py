"""Dataset layouts and the procedural demo dataset.

``open_dataset(root, layout="auto", split=...)`` returns a :class:`~wsss.data.base.Dataset`.
Layouts are registered by name with the module and class that implement them, so each layout
lives in its own module and is imported only when used.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from wsss.data.base import IGNORE_INDEX, Dataset, check_label_map, load_label_png, load_rgb
from wsss.errors import UserError

#: layout name -> "module:Class"
LAYOUTS = {
    "generic": "wsss.data.generic:GenericDataset",
    "voc": "wsss.data.voc:VOCDataset",
    "cityscapes": "wsss.data.cityscapes:CityscapesDataset",
    "ade20k": "wsss.data.ade20k:ADE20kDataset",
}


def _layout_class(name: str):
    try:
        target = LAYOUTS[name]
    except KeyError as exc:
        raise UserError(f"unknown dataset layout '{name}'. Choose one of: auto, {', '.join(LAYOUTS)}.") from exc
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


def detect_layout(root: Path) -> str:
    """Guess the layout of a dataset folder from its characteristic sub-folders."""
    root = Path(root)
    if not root.exists():
        raise UserError(f"{root}: dataset folder not found. Check the path.")
    if (root / "JPEGImages").is_dir() or (root / "VOC2012" / "JPEGImages").is_dir() or (root / "VOCdevkit").is_dir():
        return "voc"
    if (root / "leftImg8bit").is_dir():
        return "cityscapes"
    if (root / "ADEChallengeData2016").is_dir() or ((root / "images").is_dir() and (root / "annotations").is_dir()
                                                   and (root / "images" / "training").is_dir()):
        return "ade20k"
    if (root / "images").is_dir() or any((p / "images").is_dir() for p in root.iterdir() if p.is_dir()):
        return "generic"
    raise UserError(
        f"{root}: unknown dataset layout (no JPEGImages/, leftImg8bit/, ADEChallengeData2016/ or images/). "
        "Pass --layout or arrange the files in one of the supported layouts (see README)."
    )


def open_dataset(root: str | Path, layout: str = "auto", split: str = "train", **options: Any) -> Dataset:
    """Open a dataset folder.

    Args:
        root: dataset root.
        layout: ``auto`` (detect), ``generic``, ``voc``, ``cityscapes`` or ``ade20k``.
        split: split name (layout-specific: ``train``/``val`` for most).
        options: layout-specific options (e.g. ``list_file``).
    """
    root = Path(root)
    if not root.exists():
        raise UserError(f"{root}: dataset folder not found. Check the path.")
    if not root.is_dir():
        raise UserError(f"{root}: is a file, not a dataset folder. Pass the folder that holds the images.")
    name = detect_layout(root) if layout == "auto" else layout
    return _layout_class(name)(root, split=split, **options)


def open_recorded_dataset(record: dict[str, Any], override_root: str | Path | None = None) -> Dataset:
    """Reopen the dataset an artifact recorded (``Dataset.describe()``), optionally at another root."""
    root = Path(override_root) if override_root is not None else Path(record["root"])
    options = {k: v for k, v in record.items() if k not in ("layout", "root", "split", "classes")}
    return open_dataset(root, layout=record.get("layout", "auto"), split=record.get("split", "train"), **options)


__all__ = [
    "IGNORE_INDEX",
    "LAYOUTS",
    "Dataset",
    "check_label_map",
    "detect_layout",
    "load_label_png",
    "load_rgb",
    "open_dataset",
    "open_recorded_dataset",
]
