"""Generic folder layout: ``images/`` + ``masks/`` (+ optional list file and ``classes.txt``).

Accepted forms (``ROOT`` is the path given by the user):

- ``ROOT/<split>/images/*.{png,jpg,...}`` and ``ROOT/<split>/masks/<id>.png`` (e.g. CamVid here,
  the demo data);
- ``ROOT/images`` and ``ROOT/masks`` with an optional list file ``ROOT/<split>.txt`` (one id per
  line) selecting the split.

Masks are single-channel 8-bit PNGs with class indices and 255 = unlabelled. Class names come
from ``classes.txt`` (one per line, in index order) in ``ROOT/<split>`` or ``ROOT``; without it
the classes are named ``class0..`` up to the largest label seen in the first masks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wsss.constants import IGNORE_INDEX
from wsss.data.base import IMAGE_SUFFIXES, Dataset, check_class_names, check_orphan_masks, load_label_png
from wsss.errors import UserError


def read_list_file(path: Path) -> list[str]:
    """Image ids from a list file: one per line; only the first whitespace-separated field counts
    (so VOC-style ``id -1`` lines work); blank lines and ``#`` comments ignored."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise UserError(f"{path}: cannot read the list file ({exc}). Check the path.") from exc
    ids = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            ids.append(line.split()[0])
    return ids


def read_classes_file(path: Path) -> list[str]:
    """Class names, one per line, in index order."""
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise UserError(f"{path}: empty class list. Write one class name per line.")
    return names


def _index_images(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


class GenericDataset(Dataset):
    """Folders of images and masks; see the module docstring for the accepted forms."""

    layout = "generic"

    def __init__(self, root: Path, split: str = "train", list_file: Path | None = None, classes: list[str] | None = None):
        root = Path(root)
        base = root / split if (root / split / "images").is_dir() else root
        if not (base / "images").is_dir():
            raise UserError(f"{root}: no images/ folder (looked in {root / split} and {root}). Use the generic layout: images/ and masks/.")
        self.base = base
        self.list_file = Path(list_file).resolve() if list_file is not None else None
        self._images = _index_images(base / "images")
        masks_dir = base / "masks"
        self._masks_dir = masks_dir if masks_dir.is_dir() else None
        if list_file is None and base == root and (root / f"{split}.txt").exists():
            list_file = root / f"{split}.txt"
        if list_file is not None:
            ids = read_list_file(Path(list_file))
            missing = [i for i in ids if i not in self._images]
            if missing:
                raise UserError(f"{list_file}: lists {len(missing)} images not in {base / 'images'} (e.g. {missing[0]}). Fix the list.")
        else:
            ids = sorted(self._images)
            if self._masks_dir is not None:
                masks = [p.stem for p in self._masks_dir.iterdir() if p.suffix.lower() == ".png"]
                check_orphan_masks(masks, self._images, self._masks_dir, base / "images")
        if classes is None:
            for candidate in (base / "classes.txt", root / "classes.txt"):
                if candidate.exists():
                    classes = read_classes_file(candidate)
                    check_class_names(classes, candidate)
                    break
        if classes is None:
            classes = self._guess_classes(ids)
        super().__init__(root, split, ids, classes)

    def _guess_classes(self, ids: list[str]) -> list[str]:
        if self._masks_dir is None or not ids:
            raise UserError(f"{self.base}: no classes.txt and no masks to infer the classes from. Add classes.txt (one name per line).")
        top = 0
        for image_id in ids[:50]:
            path = self._masks_dir / f"{image_id}.png"
            if path.exists():
                mask = load_label_png(path)
                valid = mask[mask != IGNORE_INDEX]
                if valid.size:
                    top = max(top, int(valid.max()))
        return [f"class{i}" for i in range(top + 1)]

    def image_path(self, image_id: str) -> Path:
        try:
            return self._images[image_id]
        except KeyError as exc:
            raise UserError(f"{self.base / 'images'}: no image '{image_id}'. Check the list file.") from exc

    def mask_path(self, image_id: str) -> Path | None:
        if self._masks_dir is None:
            return None
        return self._masks_dir / f"{image_id}.png"

    def describe(self) -> dict:
        record = super().describe()
        if self.list_file is not None:
            record["list_file"] = str(self.list_file)
        return record


def save_label_png(path: Path, label: np.ndarray) -> None:
    """Write an H×W uint8 label map as a grey 8-bit PNG."""
    from PIL import Image

    Image.fromarray(np.asarray(label, dtype=np.uint8), mode="L").save(path)
