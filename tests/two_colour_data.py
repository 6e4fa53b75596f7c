"""Test data of the stages that turn seeds into pseudo-labels (``solve``, ``spml-labels``, ``spml-relabel``):
a dataset of images split into a dark and a bright region along a slanted edge (masks = the regions, a
little pixel noise), and seeds artifacts written from label maps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from wsss.artifacts import ArtifactWriter
from wsss.data import open_dataset
from wsss.data.generic import save_label_png


def make_two_colour_dataset(root: Path, classes: Sequence[str], h: int, w: int, n: int = 3) -> Path:
    """``n`` train images ``im0…`` of ``h×w``; class 1 (bright) right of the edge ``x > w/3 + (i+1)·y/4``."""
    from PIL import Image

    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "masks").mkdir(parents=True)
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    yy, xx = np.mgrid[:h, :w]
    rng = np.random.default_rng(0)
    for i in range(n):
        mask = (xx > w / 3 + (i + 1) * yy / 4).astype(np.uint8)
        image = np.where(mask[..., None] == 1, [210, 200, 60], [30, 40, 120]) + rng.normal(0, 3, (h, w, 3))
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / "train" / "images" / f"im{i}.png")
        save_label_png(root / "train" / "masks" / f"im{i}.png", mask)
    return root


def write_seeds(path: Path, root: Path, labels: dict[str, np.ndarray], classes: Sequence[str]) -> Path:
    """A ``seeds`` artifact of the dataset at ``root`` holding ``labels`` (image id → H×W labels, 255 = unlabelled)."""
    ds = open_dataset(root)
    with ArtifactWriter(path, "seeds", classes=list(classes), config={"made": "test"}, dataset=ds.describe()) as w:
        for image_id, lab in labels.items():
            w.write(image_id, {"label": lab.astype(np.uint8)})
        w.commit()
    return path
