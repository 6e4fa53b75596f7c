"""The dataset interface every layout implements, and image/mask loading with checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from wsss.constants import IGNORE_INDEX
from wsss.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm")


def load_rgb(path: Path) -> np.ndarray:
    """Read an image file as RGB.

    Returns:
        H×W×3 uint8 array.

    Raises:
        UserError: missing, unreadable or corrupt file.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except FileNotFoundError as exc:
        raise UserError(f"{path}: image not found. Check the dataset folder.") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise UserError(f"{path}: unreadable or corrupt image ({exc}). Replace or remove the file.") from exc


def load_label_png(path: Path) -> np.ndarray:
    """Read a single-channel label PNG (palette indices or grey values, not converted).

    Returns:
        H×W uint8 array.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("P", "L"):
                arr = np.asarray(im, dtype=np.uint8)
            elif im.mode in ("I", "I;16"):
                arr = np.asarray(im).astype(np.int64)
                if arr.max(initial=0) > 255:
                    raise UserError(f"{path}: label values above 255. Store labels as 8-bit PNG (255 = unlabelled).")
                arr = arr.astype(np.uint8)
            else:
                raise UserError(
                    f"{path}: label PNG has mode {im.mode}; expected a single-channel (L or P) PNG. "
                    "Convert it to 8-bit class indices."
                )
            return arr.copy()
    except FileNotFoundError as exc:
        raise UserError(f"{path}: label file not found. Check the dataset folder.") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise UserError(f"{path}: unreadable or corrupt label PNG ({exc}). Replace or remove the file.") from exc


def check_label_map(label: np.ndarray, num_classes: int, shape: tuple[int, int], path: Path | str) -> np.ndarray:
    """Validate a label map against the number of classes and the image size.

    Args:
        label: H×W integer array; values in 0..K-1 or 255.
        num_classes: K.
        shape: (H, W) of the image.
        path: file named in errors.

    Returns:
        the label map as H×W uint8.
    """
    if label.shape != tuple(shape):
        raise UserError(
            f"{path}: label map is {label.shape[1]}×{label.shape[0]} but its image is {shape[1]}×{shape[0]} (W×H). "
            "Resize the mask with nearest-neighbour interpolation or fix the pairing."
        )
    bad = (label >= num_classes) & (label != IGNORE_INDEX)
    if bad.any():
        values = sorted(set(np.unique(label[bad]).tolist()))[:5]
        raise UserError(
            f"{path}: label values {values} are not classes 0..{num_classes - 1} nor 255 (unlabelled). "
            "Fix the mask or pass the right class list."
        )
    return label.astype(np.uint8, copy=False)


def check_orphan_masks(mask_ids: set[str] | list[str], image_ids: set[str] | list[str], mask_folder: Path,
                       image_folder: Path) -> None:
    """A dense mask whose image is missing is an error, not an image silently left out.

    Args:
        mask_ids: ids of the masks found (stems of the mask files).
        image_ids: ids of the images found.
        mask_folder, image_folder: named in the message.
    """
    orphans = sorted(set(mask_ids) - set(image_ids))
    if orphans:
        raise UserError(f"{mask_folder}: {len(orphans)} masks have no image in {image_folder} (e.g. '{orphans[0]}'). "
                        "Add the missing images or remove their masks.")


def check_class_names(classes: list[str], where: Path | str) -> None:
    """Class names must be distinct non-empty strings (a label value names one class)."""
    seen: dict[str, int] = {}
    for index, name in enumerate(classes):
        if not isinstance(name, str) or not name.strip():
            raise UserError(f"{where}: class {index} has no name ({name!r}). Give every class a name.")
        if name in seen:
            raise UserError(f"{where}: class name '{name}' is used twice (classes {seen[name]} and {index}). "
                            "Give every class a distinct name.")
        seen[name] = index


class Dataset:
    """A set of images, optionally with dense masks, in one of the supported layouts.

    Subclasses fill :attr:`ids`, :attr:`classes` and implement :meth:`image_path` /
    :meth:`mask_path`; mask value conversion (e.g. ADE20k's 0 = other) goes in
    :meth:`convert_mask`.

    Attributes:
        layout: layout name (``generic``, ``voc``, ``cityscapes``, ``ade20k``).
        root: dataset root folder.
        split: split name.
        ids: image ids, sorted.
        classes: class names, index = label value.
    """

    layout = "base"
    ignore_index = IGNORE_INDEX

    def __init__(self, root: Path, split: str, ids: list[str], classes: list[str]):
        self.root = Path(root)
        self.split = split
        self.ids = list(ids)
        self.classes = list(classes)
        check_class_names(self.classes, self.root)
        if not self.ids:
            raise UserError(f"{self.root}: no images found for split '{split}' in the {self.layout} layout. Check the path, split and list file.")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.ids)

    # -- to implement ---------------------------------------------------------------------
    def image_path(self, image_id: str) -> Path:
        raise NotImplementedError

    def mask_path(self, image_id: str) -> Path | None:
        """Dense ground-truth file, or None when the layout has none for this image."""
        return None

    def convert_mask(self, raw: np.ndarray) -> np.ndarray:
        """Map raw file values to 0..K-1 / 255 (identity by default)."""
        return raw

    # -- provided -------------------------------------------------------------------------
    def load_image(self, image_id: str) -> np.ndarray:
        """H×W×3 uint8 RGB image."""
        return load_rgb(self.image_path(image_id))

    def has_masks(self) -> bool:
        return self.mask_path(self.ids[0]) is not None and self.mask_path(self.ids[0]).exists()

    def load_mask(self, image_id: str, shape: tuple[int, int] | None = None) -> np.ndarray:
        """Dense ground truth as H×W uint8 (0..K-1, 255 = ignore), checked against the image size.

        Args:
            image_id: the image.
            shape: (H, W) to check against; read from the image when None.
        """
        path = self.mask_path(image_id)
        if path is None:
            raise UserError(f"{self.root}: the {self.layout} layout has no dense masks for split '{self.split}'. Use a split with ground truth.")
        if not path.exists():
            raise UserError(f"{path}: mask not found for image '{image_id}'. Add it or drop the image from the list.")
        mask = self.convert_mask(load_label_png(path))
        if shape is None:
            shape = self.load_image(image_id).shape[:2]
        return check_label_map(mask, self.num_classes, shape, path)

    def describe(self) -> dict[str, Any]:
        """JSON-able record of this dataset (stored in artifacts for provenance and reopening)."""
        return {"layout": self.layout, "root": str(self.root.resolve()), "split": self.split, "classes": self.classes}

    def subset(self, ids: list[str]) -> "Dataset":
        """The same dataset restricted to ``ids`` (kept in the given order)."""
        unknown = [i for i in ids if i not in set(self.ids)]
        if unknown:
            raise UserError(f"{self.root}: unknown image ids {unknown[:5]}. Check the list.")
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.ids = list(ids)
        return clone
