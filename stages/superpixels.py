"""Stage ``superpixels``: SLIC over-segmentation of every image of a dataset.

Writes a ``superpixels`` artifact: per image ``segments`` (H×W int32, labels 0..n−1, each
segment 4-connected). Used as URSS pseudo-boundaries (docs/methods.md §9: boundary pixels of a SLIC map)
and as SPML's low-level regions (docs/methods.md §10: SLIC as a stated substitute for HED-owt-ucm).

Defaults (toolkit choices; URSS used MATLAB SLIC with unpublished parameters, docs/methods.md §9):

- ``n_segments = 200``: the requested number of segments (skimage's own default is 100); about
  46 px per segment on a 96×96 demo image, about 940 px (≈ 30×30) on a 500×375 VOC image.
- ``compactness = 10``: skimage's default for colour images, which SLIC measures in CIELAB.
- ``sigma = 1.0``: Gaussian pre-smoothing in pixels (skimage's default is 0); it keeps JPEG
  noise and texture grain from fragmenting segment boundaries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from wsss.errors import UserError

DEFAULT_N_SEGMENTS = 200
DEFAULT_COMPACTNESS = 10.0
DEFAULT_SIGMA = 1.0


def slic_segments(
    image: np.ndarray,
    n_segments: int = DEFAULT_N_SEGMENTS,
    compactness: float = DEFAULT_COMPACTNESS,
    sigma: float = DEFAULT_SIGMA,
) -> np.ndarray:
    """SLIC superpixels of one image (scikit-image, CIELAB, connectivity enforced).

    Args:
        image: H×W×3 uint8 RGB.
        n_segments: approximate number of segments.
        compactness: colour/space trade-off (larger = more square segments).
        sigma: Gaussian pre-smoothing width in pixels.

    Returns:
        H×W int32 segment labels, 0..n−1.
    """
    from skimage.segmentation import slic

    segments = slic(image, n_segments=n_segments, compactness=compactness, sigma=sigma, start_label=0, channel_axis=-1)
    return np.asarray(segments, dtype=np.int32)


def superpixel_boundaries(segments: np.ndarray, width: int = 1) -> np.ndarray:
    """Boundary pixels of a segment map (URSS's pseudo-boundaries ``B``).

    A pixel is a boundary pixel when one of its 4-neighbours belongs to another segment (both
    sides of a boundary are marked, as skimage's ``find_boundaries(mode="thick")``); ``width`` > 1
    dilates the set by ``width − 1`` pixels (3×3 square steps).

    Args:
        segments: H×W integer segment labels.
        width: 1 for the plain boundary, larger for a thicker band.

    Returns:
        H×W bool.
    """
    seg = np.asarray(segments)
    edge = np.zeros(seg.shape, dtype=bool)
    vertical = seg[1:, :] != seg[:-1, :]
    horizontal = seg[:, 1:] != seg[:, :-1]
    edge[1:, :] |= vertical
    edge[:-1, :] |= vertical
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    if width > 1:
        from scipy.ndimage import binary_dilation

        edge = binary_dilation(edge, structure=np.ones((3, 3), bool), iterations=width - 1)
    return edge


def run(
    data: str | Path,
    output: str | Path,
    *,
    layout: str = "auto",
    split: str = "train",
    list_file: str | Path | None = None,
    n_segments: int = DEFAULT_N_SEGMENTS,
    compactness: float = DEFAULT_COMPACTNESS,
    sigma: float = DEFAULT_SIGMA,
    ids: list[str] | None = None,
    workers: int = 1,
    resume: bool = False,
    config: dict[str, Any] | None = None,
) -> Path:
    """Compute SLIC superpixels for every image of a dataset and write a ``superpixels`` artifact.

    Args:
        data: dataset root.
        output: artifact path (``.h5``).
        layout, split, list_file: how to read the dataset (:func:`wsss.data.open_dataset`).
        n_segments, compactness, sigma: SLIC parameters (module docstring: defaults and source).
        ids: restrict to these image ids (default: the whole split).
        workers: processes per rank.
        resume: keep the images an interrupted run already finished (``output.parts/``).
        config: configuration to record (the CLI passes its options and command line); by default
            the arguments above.

    Returns:
        the artifact path.
    """
    from wsss.data import open_dataset
    from wsss.parallel import run_per_image
    from wsss.paths import StageInputs

    if n_segments < 1:
        raise UserError(f"--n-segments {n_segments}: must be at least 1.")
    if compactness <= 0:
        raise UserError(f"--compactness {compactness}: must be positive.")
    if sigma < 0:
        raise UserError(f"--sigma {sigma}: must be 0 or positive.")
    options = {"list_file": list_file} if list_file is not None else {}
    dataset = open_dataset(data, layout=layout, split=split, **options)
    if ids is not None:
        dataset = dataset.subset(list(ids))
    if config is None:
        config = {"stage": "superpixels", "data": str(data), "layout": layout, "split": split,
                  "list_file": None if list_file is None else str(list_file), "n_segments": n_segments,
                  "compactness": compactness, "sigma": sigma, "ids": ids}

    def one_image(image_id: str):
        image = dataset.load_image(image_id)
        segments = slic_segments(image, n_segments=n_segments, compactness=compactness, sigma=sigma)
        return {"segments": segments}, {"num_segments": int(segments.max()) + 1}

    writer_args = {
        "path": Path(output),
        "kind": "superpixels",
        "classes": dataset.classes,
        "config": config,
        "inputs": [],
        "dataset": dataset.describe(),
        "sources": StageInputs(datasets=[dataset]),
    }
    return run_per_image(one_image, dataset.ids, writer_args, workers=workers, resume=resume, description="superpixels")
