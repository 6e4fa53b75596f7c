"""Cityscapes layout (fine annotations, 19 train-id classes).

Expected files under ``ROOT``::

    leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png    0..18, 255 = ignore

Image ids are ``<city>/<city>_<seq>_<frame>`` (e.g. ``aachen/aachen_000000_000019``). Splits are the
folder names (``train``, ``val``, ``test``). When a ``*_gtFine_labelTrainIds.png`` is missing but
the raw ``*_gtFine_labelIds.png`` is there, the label ids are mapped to train ids with the official
Cityscapes table (ids without a train id → 255), so the cityscapesScripts conversion is optional.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wsss.constants import IGNORE_INDEX
from wsss.data.base import Dataset, check_label_map, check_orphan_masks, load_label_png
from wsss.errors import UserError

CITYSCAPES_CLASSES = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
]  # fmt: skip

#: Cityscapes label id -> train id for the 19 evaluated classes (every other id is ignored).
_ID_TO_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
                   26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map raw Cityscapes label ids to train ids.

    Args:
        label_ids: H×W uint8 label ids (``*_gtFine_labelIds.png``).

    Returns:
        H×W uint8 train ids 0..18, 255 for every id without a train id.
    """
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for label_id, train_id in _ID_TO_TRAIN_ID.items():
        table[label_id] = train_id
    return table[np.asarray(label_ids, dtype=np.uint8)]


IMAGE_SUFFIX = "_leftImg8bit.png"
TRAIN_ID_SUFFIX = "_gtFine_labelTrainIds.png"
LABEL_ID_SUFFIX = "_gtFine_labelIds.png"


class CityscapesDataset(Dataset):
    """Cityscapes fine annotations; see the module docstring for the files.

    Args:
        root: folder holding ``leftImg8bit/`` and ``gtFine/``.
        split: ``train``, ``val`` or ``test``.
    """

    layout = "cityscapes"

    def __init__(self, root: Path, split: str = "train"):
        root = Path(root)
        image_dir = root / "leftImg8bit" / split
        if not image_dir.is_dir():
            raise UserError(f"{image_dir}: Cityscapes split folder not found. Check the root (it holds leftImg8bit/ and gtFine/) and --split.")
        ids = sorted(
            f"{path.parent.name}/{path.name[: -len(IMAGE_SUFFIX)]}" for path in image_dir.glob(f"*/*{IMAGE_SUFFIX}")
        )
        mask_dir = root / "gtFine" / split
        if mask_dir.is_dir():
            masks = {f"{p.parent.name}/{p.name[: -len(suffix)]}" for suffix in (TRAIN_ID_SUFFIX, LABEL_ID_SUFFIX)
                     for p in mask_dir.glob(f"*/*{suffix}")}
            check_orphan_masks(masks, ids, mask_dir, image_dir)
        super().__init__(root, split, ids, list(CITYSCAPES_CLASSES))

    def image_path(self, image_id: str) -> Path:
        return self.root / "leftImg8bit" / self.split / f"{image_id}{IMAGE_SUFFIX}"

    def mask_path(self, image_id: str) -> Path | None:
        train_ids = self.root / "gtFine" / self.split / f"{image_id}{TRAIN_ID_SUFFIX}"
        if not train_ids.exists():
            label_ids = self.root / "gtFine" / self.split / f"{image_id}{LABEL_ID_SUFFIX}"
            if label_ids.exists():
                return label_ids
        return train_ids

    def load_mask(self, image_id: str, shape: tuple[int, int] | None = None) -> np.ndarray:
        """Dense ground truth as H×W uint8 train ids (0..18, 255 = ignore); see :class:`Dataset`."""
        path = self.mask_path(image_id)
        if path.name.endswith(LABEL_ID_SUFFIX):
            mask = label_ids_to_train_ids(load_label_png(path))
            if shape is None:
                shape = self.load_image(image_id).shape[:2]
            return check_label_map(mask, self.num_classes, shape, path)
        return super().load_mask(image_id, shape)
