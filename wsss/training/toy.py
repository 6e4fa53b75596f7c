"""A tiny synthetic dataset for tests and benchmarks of training (no network, seconds to make).

Images: a noisy background (class 0) with one filled disc (class 1) and one rectangle (class 2) of
random colours; dense masks; a seeds artifact with a short horizontal scribble through each object
and the background. Generic layout ``ROOT/<split>/{images,masks}`` + ``classes.txt``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wsss.artifacts import ArtifactWriter
from wsss.data import open_dataset
from wsss.data.generic import save_label_png

CLASSES = ["background", "disc", "box"]


def _image(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size]
    mask = np.zeros((size, size), np.uint8)
    cy, cx, r = rng.integers(size // 4, 3 * size // 4, 2).tolist() + [int(rng.integers(size // 8, size // 4))]
    mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
    y0, x0 = rng.integers(0, size // 2, 2)
    h, w = rng.integers(size // 5, size // 3, 2)
    mask[y0:y0 + h, x0:x0 + w] = 2
    colours = np.array([[40, 60, 40], [200, 60, 50], [60, 90, 210]], np.float64)
    colours += rng.normal(0, 10, colours.shape)
    image = colours[mask] + rng.normal(0, 8, (size, size, 3))
    seeds = np.full((size, size), 255, np.uint8)
    for k in range(3):
        ys, xs = np.nonzero(mask == k)
        if len(ys):
            i = len(ys) // 2
            row = ys[i]
            cols = xs[(ys == row)]
            cols = cols[len(cols) // 4: max(len(cols) // 4 + 1, 3 * len(cols) // 4)]
            seeds[row, cols] = k
    return np.clip(image, 0, 255).astype(np.uint8), mask, seeds


def make_toy_data(root: str | Path, n_train: int = 4, n_val: int = 2, size: int = 48, seed: int = 0) -> tuple[Path, Path]:
    """Write the toy dataset under ``root`` and a seeds artifact of its train split.

    Returns ``(dataset root, seeds artifact path)``.
    """
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    all_seeds = {}
    for split, n in (("train", n_train), ("val", n_val)):
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "masks").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image, mask, seeds = _image(rng, size)
            name = f"{split}{i:03d}"
            Image.fromarray(image).save(root / split / "images" / f"{name}.png")
            save_label_png(root / split / "masks" / f"{name}.png", mask)
            if split == "train":
                all_seeds[name] = seeds
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    dataset = open_dataset(root, split="train")
    seeds_path = root / "seeds.h5"
    with ArtifactWriter(seeds_path, "seeds", classes=CLASSES, config={"command": "toy"}, dataset=dataset.describe()) as w:
        for name, seeds in all_seeds.items():
            w.write(name, {"label": seeds})
        w.commit()
    return root, seeds_path
