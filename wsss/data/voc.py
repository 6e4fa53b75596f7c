"""PASCAL VOC 2012 layout, with the SBD augmented masks (``SegmentationClassAug``).

Expected files, under ``ROOT`` = the ``VOC2012`` folder (``ROOT/VOCdevkit/VOC2012`` and
``ROOT/VOC2012`` are accepted too)::

    JPEGImages/<id>.jpg
    SegmentationClass/<id>.png                  palette PNGs: index = class, 255 = boundary (ignore)
    SegmentationClassAug/<id>.png               SBD masks converted to grey PNGs (optional)
    ImageSets/Segmentation/{train,val,trainval}.txt
    ImageSets/SegmentationAug/train_aug.txt     the 10,582-image list (optional)
    Annotations/<id>.xml                        boxes and tags (read by the tag importer)

Splits: ``train``, ``val``, ``trainval`` (and ``test`` where present) read
``ImageSets/Segmentation/<split>.txt``; ``train_aug`` reads ``ImageSets/SegmentationAug/train_aug.txt``
(``train_aug.txt`` or ``ImageSets/Segmentation/train_aug.txt`` are accepted as well). ``list_file``
overrides the list for any split. List lines may be ``<id>`` or DeepLab-style
``/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png``; the id is taken from the first field.

Masks: for ``train_aug`` and custom list files ``SegmentationClassAug/<id>.png`` is preferred and
``SegmentationClass/<id>.png`` used when absent; for the other splits the order is reversed.
"""

from __future__ import annotations

from pathlib import Path

from wsss.data.base import Dataset
from wsss.errors import UserError

VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip


def find_voc_root(root: Path) -> Path:
    """The folder holding ``JPEGImages`` among ``root``, ``root/VOC2012`` and ``root/VOCdevkit/VOC2012``."""
    root = Path(root)
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    raise UserError(
        f"{root}: no JPEGImages/ folder (looked in {root}, {root / 'VOC2012'} and {root / 'VOCdevkit' / 'VOC2012'}). "
        "Pass the VOC2012 folder or its VOCdevkit parent."
    )


def read_voc_list(path: Path) -> list[str]:
    """Image ids of a VOC-style list file (plain ids, ``id -1`` lines, or DeepLab ``/JPEGImages/id.jpg ...`` lines)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise UserError(f"{path}: cannot read the list file ({exc}). Check the path.") from exc
    ids = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        first = line.split()[0]
        ids.append(Path(first).stem if ("/" in first or "." in first) else first)
    return ids


class VOCDataset(Dataset):
    """PASCAL VOC 2012 (+ SBD augmented masks); see the module docstring for files and splits.

    Args:
        root: the VOC2012 folder, or a parent holding ``VOC2012`` or ``VOCdevkit/VOC2012``.
        split: ``train``, ``val``, ``trainval``, ``train_aug`` (or another list in ImageSets/Segmentation).
        list_file: a list of image ids replacing the split's list.
    """

    layout = "voc"

    def __init__(self, root: Path, split: str = "train", list_file: Path | str | None = None):
        given = Path(root)
        self.voc_root = find_voc_root(given)
        self.list_file = Path(list_file).resolve() if list_file is not None else None
        if self.list_file is not None:
            if not self.list_file.exists():
                raise UserError(f"{self.list_file}: list file not found. Check the --list-file path.")
            lst = self.list_file
        else:
            lst = self._split_list(split)
        ids = read_voc_list(lst)
        self._prefer_aug = split == "train_aug" or self.list_file is not None
        missing = [i for i in ids if not (self.voc_root / "JPEGImages" / f"{i}.jpg").exists()]
        if missing:
            raise UserError(
                f"{lst}: lists {len(missing)} images missing from {self.voc_root / 'JPEGImages'} (e.g. {missing[0]}.jpg). "
                "Fix the list or complete the image folder."
            )
        super().__init__(given, split, sorted(dict.fromkeys(ids)), list(VOC_CLASSES))

    def _split_list(self, split: str) -> Path:
        sets = self.voc_root / "ImageSets"
        if split == "train_aug":
            candidates = [sets / "SegmentationAug" / "train_aug.txt", sets / "Segmentation" / "train_aug.txt",
                          self.voc_root / "train_aug.txt"]
        else:
            candidates = [sets / "Segmentation" / f"{split}.txt"]
        for candidate in candidates:
            if candidate.exists():
                return candidate
        raise UserError(
            f"{candidates[0]}: split list for '{split}' not found. Use --split train, val, trainval or train_aug "
            "(with SBD's list), or pass --list-file."
        )

    def image_path(self, image_id: str) -> Path:
        return self.voc_root / "JPEGImages" / f"{image_id}.jpg"

    def mask_path(self, image_id: str) -> Path | None:
        folders = ["SegmentationClass", "SegmentationClassAug"]
        if self._prefer_aug:
            folders.reverse()
        paths = [self.voc_root / f / f"{image_id}.png" for f in folders]
        for path in paths:
            if path.exists():
                return path
        return paths[0]

    def has_masks(self) -> bool:
        return any(self.mask_path(i).exists() for i in self.ids[:1])

    def annotation_path(self, image_id: str) -> Path:
        """The ``Annotations/<id>.xml`` file (object boxes and names) of an image; may not exist."""
        return self.voc_root / "Annotations" / f"{image_id}.xml"

    def describe(self) -> dict:
        record = super().describe()
        if self.list_file is not None:
            record["list_file"] = str(self.list_file)
        return record
