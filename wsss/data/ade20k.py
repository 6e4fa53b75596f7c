"""ADE20k layout (MIT Scene Parsing benchmark, ``ADEChallengeData2016``, 150 classes).

Expected files under ``ROOT`` = the folder holding ``ADEChallengeData2016/`` (or that folder
itself)::

    ADEChallengeData2016/images/{training,validation}/ADE_<split>_<n>.jpg
    ADEChallengeData2016/annotations/{training,validation}/ADE_<split>_<n>.png

Splits ``train`` and ``val`` map to ``training`` and ``validation``. Mask values: 0 ("other",
not one of the 150 classes) becomes 255 (ignore) and 1..150 become classes 0..149, as in the
benchmark's evaluation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wsss.constants import IGNORE_INDEX
from wsss.data.base import Dataset, check_orphan_masks
from wsss.errors import UserError

#: the 150 classes of the benchmark (first name of each entry of its objectInfo150 table).
ADE20K_CLASSES = [
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
    "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
    "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel",
    "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane",
    "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool",
    "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step",
    "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket",
    "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen",
    "plate", "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
]  # fmt: skip

SPLIT_FOLDERS = {"train": "training", "val": "validation", "training": "training", "validation": "validation"}
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class ADE20kDataset(Dataset):
    """ADE20k scene parsing; see the module docstring for files, splits and mask conversion.

    Args:
        root: folder holding ``ADEChallengeData2016/`` (or that folder).
        split: ``train`` or ``val``.
    """

    layout = "ade20k"

    def __init__(self, root: Path, split: str = "train"):
        root = Path(root)
        base = root / "ADEChallengeData2016" if (root / "ADEChallengeData2016").is_dir() else root
        if split not in SPLIT_FOLDERS:
            raise UserError(f"{base}: unknown ADE20k split '{split}'. Use --split train or val.")
        folder = SPLIT_FOLDERS[split]
        image_dir = base / "images" / folder
        if not image_dir.is_dir():
            raise UserError(f"{image_dir}: ADE20k image folder not found. Pass the folder holding ADEChallengeData2016/.")
        self.base = base
        self._folder = folder
        self._images = {p.stem: p for p in sorted(image_dir.iterdir()) if p.suffix.lower() in _IMAGE_SUFFIXES}
        mask_dir = base / "annotations" / folder
        if mask_dir.is_dir():
            check_orphan_masks([p.stem for p in mask_dir.glob("*.png")], self._images, mask_dir, image_dir)
        super().__init__(root, split, sorted(self._images), list(ADE20K_CLASSES))

    def image_path(self, image_id: str) -> Path:
        try:
            return self._images[image_id]
        except KeyError as exc:
            raise UserError(f"{self.base / 'images' / self._folder}: no image '{image_id}'. Check the id.") from exc

    def mask_path(self, image_id: str) -> Path | None:
        return self.base / "annotations" / self._folder / f"{image_id}.png"

    def convert_mask(self, raw: np.ndarray) -> np.ndarray:
        """H×W uint8 raw values (0 = other, 1..150) -> H×W uint8 (255, 0..149); values > 150 stay out of range."""
        return np.where(raw == 0, IGNORE_INDEX, raw.astype(np.int16) - 1).astype(np.uint8)
