"""Training data: images + targets (seeds, dense masks or pseudo-labels), augmentation, validity mask.

Every sample is keyed by ``(epoch, index)``; its augmentation draws from a numpy generator seeded with
``(seed, epoch, index)``, so a sample is the same whatever the worker, rank or resume point, and the
order of an epoch comes from :class:`EpochSampler` (a :class:`DistributedSampler` seeded with
``seed`` and the epoch). That makes ``--resume`` bit-exact on CPU.

Augmentation (toolkit defaults, after the rloss / torchvision segmentation references):

1. random scale ``s ~ U[scale_min, scale_max]`` (0.5–2.0) of the whole image: bilinear for the image
   and soft targets, nearest for label maps;
2. optional (off by default; the URSS code's, :mod:`wsss.training.rotation_blur`): rotation by an angle
   uniform in ``±rotation`` degrees with probability 0.5, then a 5×5 Gaussian blur (σ 1.1) of the image
   with probability 0.5; pixels rotated in from outside the image are outside the validity mask;
   optional (off by default; the SPML final classifier's, :mod:`wsss.training.photometric`): grayscale with
   probability ``grayscale``, and the blur of ``blur_kernel`` (``spml``: σ drawn per sample);
3. horizontal flip with probability 0.5;
4. random ``crop×crop`` window; where the scaled image is smaller it is padded. Padding is **not**
   encoded in the labels: the sample carries a separate validity mask (docs/methods.md §1), False on
   padding (and on rotated-in pixels). Invalid image pixels are 0, their labels 255, soft targets 0.

A sample is a dict of tensors: ``image`` 3×c×c float32 (RGB 0–255), ``labels`` c×c int64 (255 =
unlabelled), ``valid`` c×c bool, ``index`` int64 and, for soft pseudo-labels, ``probs`` K×c×c float32.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import DistributedSampler

from wsss.artifacts import IGNORE_INDEX, Artifact
from wsss.data import Dataset
from wsss.errors import UserError
from wsss.training.photometric import check_blur_kernel, draw_spml_blur, grayscale
from wsss.training.rotation_blur import BLUR_P, BLUR_SIGMA, ROTATION_P, gaussian_blur, rotate_maps
from wsss.validation import check_allocation, check_finite_input, check_seeds_labelled

#: target sources: what a loss trains on
TARGETS = ("seeds", "masks", "pseudolabels")


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings.

    Attributes:
        crop_size: side of the square training crop (513, rloss's VOC setting).
        scale_min / scale_max: random scale range (0.5–2.0, rloss / torchvision reference).
        flip: random horizontal flip with probability 0.5.
        rotation: largest rotation in degrees, drawn uniformly in ``±rotation`` with probability 0.5
            (0: off, the toolkit default; the URSS code: 10).
        blur: 5×5 Gaussian blur of the image with probability 0.5 (off by default; the URSS code: on).
        grayscale: probability of turning the image gray (0: off, the toolkit default; SPML final classifier: 0.3).
        blur_kernel: the blur: ``urss`` (σ 1.1, the default) or ``spml`` (``exp(−r²/s²)``, ``s ~ U[0.1, 5]``).
    """

    crop_size: int = 513
    scale_min: float = 0.5
    scale_max: float = 2.0
    flip: bool = True
    rotation: float = 0.0
    blur: bool = False
    grayscale: float = 0.0
    blur_kernel: str = "urss"

    def __post_init__(self) -> None:
        check_blur_kernel(self.blur_kernel)

    @classmethod
    def of(cls, cfg) -> "AugmentConfig":
        """The augmentation fields of a training configuration (:class:`~wsss.training.segmentation.TrainConfig`)."""
        return cls(cfg.crop_size, cfg.scale_min, cfg.scale_max, cfg.flip, cfg.rotation, cfg.blur, cfg.grayscale,
                   cfg.blur_kernel)


class TargetSource:
    """Reads the training target of an image.

    kind ``seeds`` (seeds artifact, ``label``), ``masks`` (the dataset's dense masks) or
    ``pseudolabels`` (pseudolabels artifact: ``label`` and, if ``soft``, ``probs``).
    """

    def __init__(self, kind: str, dataset: Dataset, artifact: Artifact | None = None, soft: bool = False):
        if kind not in TARGETS:
            raise ValueError(kind)
        self.kind = kind
        self.dataset = dataset
        self.artifact = artifact
        self.soft = soft and kind == "pseudolabels"
        if kind == "masks":
            if not dataset.has_masks():
                raise UserError(f"{dataset.root}: split '{dataset.split}' has no dense masks, which --loss full needs. "
                                "Use a split with masks or another loss.")
            self.ids = list(dataset.ids)
        else:
            assert artifact is not None
            known = set(dataset.ids)
            missing = [i for i in artifact.ids if i not in known]
            if missing:
                raise UserError(f"{artifact.path}: {len(missing)} images are not in the dataset {dataset.root} "
                                f"[{dataset.split}] (e.g. {missing[0]}). Pass the dataset the artifact was made from (--data/--split).")
            if len(artifact.classes) and len(artifact.classes) != dataset.num_classes:
                raise UserError(f"{artifact.path}: has {len(artifact.classes)} classes but the dataset has {dataset.num_classes}. "
                                "Pass the matching dataset.")
            self.ids = list(artifact.ids)
            if kind == "seeds" and self.ids:
                check_seeds_labelled(artifact, "train on", "Recreate the seeds so that they label some pixels "
                                     "(e.g. a larger --keep or a smaller --drop-rate).")
        if not self.ids:
            raise UserError(f"{artifact.path if artifact else dataset.root}: no images to train on. Check the inputs.")

    def load(self, image_id: str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
        """``(labels H×W uint8, probs K×H×W float32 or None)`` for one image, checked against ``shape``."""
        if self.kind == "masks":
            return self.dataset.load_mask(image_id, shape), None
        label = self.artifact.read(image_id, "label")
        if label.shape != tuple(shape):
            raise UserError(f"{self.artifact.path}: image '{image_id}' has a {label.shape} label map but the image is {shape}. "
                            "Recreate the artifact from this dataset.")
        probs = None
        if self.soft:
            probs = check_finite_input(self.artifact.path, image_id, "probs",
                                       self.artifact.read(image_id, "probs").astype(np.float32))
            if probs.shape[1:] != tuple(shape):
                raise UserError(f"{self.artifact.path}: image '{image_id}' has probs of shape {probs.shape}, image {shape}. "
                                "Recreate the artifact from this dataset.")
        return label, probs


def augment(
    image: np.ndarray,
    labels: np.ndarray,
    probs: np.ndarray | None,
    config: AugmentConfig,
    rng: np.random.Generator,
    boundary: np.ndarray | None = None,
    regions: np.ndarray | None = None,
) -> dict[str, torch.Tensor]:
    """Scale, rotate and blur (optional), flip, crop with padding (see the module docstring).

    Args:
        image: H×W×3 uint8 RGB.
        labels: H×W uint8 (255 = unlabelled).
        probs: K×H×W float32 soft targets or None.
        config: augmentation settings.
        rng: generator for this sample.
        boundary: H×W bool pseudo-boundary map (URSS) or None; transformed like the labels (nearest).
        regions: H×W integer region ids (superpixels, SPML; below 2²⁴) or None; transformed like the labels.

    Returns:
        dict with ``image`` 3×c×c float32, ``labels`` c×c int64, ``valid`` c×c bool, ``probs``
        K×c×c float32, ``boundary`` c×c bool (padding: True) and ``regions`` c×c int64 (padding: -1)
        when given.
    """
    h, w = labels.shape
    scale = float(rng.uniform(config.scale_min, config.scale_max))
    flip = bool(config.flip and rng.random() < 0.5)
    # drawn only when enabled: the default augmentation's random stream is unchanged
    angle = float(rng.uniform(-config.rotation, config.rotation)) if config.rotation > 0 and rng.random() < ROTATION_P else 0.0
    blur = bool(config.blur and rng.random() < BLUR_P)
    gray = bool(config.grayscale > 0 and rng.random() < config.grayscale)
    sigma = (draw_spml_blur(rng) if config.blur_kernel == "spml" else BLUR_SIGMA) if blur else 0.0
    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    lab = torch.from_numpy(np.ascontiguousarray(labels))[None, None].float()
    extra = [m for m in (boundary, regions) if m is not None]  # more nearest-neighbour channels of the label map
    if extra:
        lab = torch.cat([lab] + [torch.from_numpy(np.ascontiguousarray(m).astype(np.float32))[None, None] for m in extra], dim=1)
    prb = torch.from_numpy(np.ascontiguousarray(probs))[None] if probs is not None else None
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    channels = 3 + 1 + (probs.shape[0] if probs is not None else 0)
    check_allocation(4.0 * nh * nw * channels, f"--scale-max {config.scale_max}: an image rescaled to {nw}×{nh} px",
                     "Use a smaller --scale-max.")
    if (nh, nw) != (h, w):
        img = F.interpolate(img, size=(nh, nw), mode="bilinear", align_corners=False)
        lab = F.interpolate(lab, size=(nh, nw), mode="nearest")
        if prb is not None:
            prb = F.interpolate(prb, size=(nh, nw), mode="bilinear", align_corners=False)
    inside = None  # nh×nw bool: pixels that come from the image (None: all)
    if angle:
        img, lab, prb, inside = rotate_maps(img, lab, prb, angle)
    if blur:
        img = gaussian_blur(img, sigma=sigma)
    if gray:
        img = grayscale(img)
    if flip:
        img, lab = img.flip(-1), lab.flip(-1)
        prb = prb.flip(-1) if prb is not None else None
        inside = inside.flip(-1) if inside is not None else None
    c = config.crop_size
    # offsets: position of the crop window in the (virtually padded) scaled image
    y0 = int(rng.integers(0, nh - c + 1)) if nh > c else -int(rng.integers(0, c - nh + 1))
    x0 = int(rng.integers(0, nw - c + 1)) if nw > c else -int(rng.integers(0, c - nw + 1))
    sy, sx = max(y0, 0), max(x0, 0)  # source window start
    dy, dx = max(-y0, 0), max(-x0, 0)  # destination start
    hh, ww = min(nh - sy, c - dy), min(nw - sx, c - dx)
    out_img = torch.zeros(3, c, c)
    out_lab = torch.full((c, c), IGNORE_INDEX, dtype=torch.int64)
    valid = torch.zeros(c, c, dtype=torch.bool)
    out_img[:, dy:dy + hh, dx:dx + ww] = img[0, :, sy:sy + hh, sx:sx + ww]
    out_lab[dy:dy + hh, dx:dx + ww] = lab[0, 0, sy:sy + hh, sx:sx + ww].round().long()
    valid[dy:dy + hh, dx:dx + ww] = True if inside is None else inside[sy:sy + hh, sx:sx + ww]
    if inside is not None:  # rotated-in pixels: as padding
        out_img *= valid
        out_lab[~valid] = IGNORE_INDEX
    sample = {"image": out_img.clamp_(0, 255), "labels": out_lab, "valid": valid}
    if boundary is not None:
        out_b = torch.ones(c, c, dtype=torch.bool)
        out_b[dy:dy + hh, dx:dx + ww] = lab[0, 1, sy:sy + hh, sx:sx + ww] > 0.5
        sample["boundary"] = out_b | ~valid
    if regions is not None:
        out_r = torch.full((c, c), -1, dtype=torch.int64)
        out_r[dy:dy + hh, dx:dx + ww] = lab[0, -1, sy:sy + hh, sx:sx + ww].round().long()
        out_r[~valid] = -1  # rotated-in pixels: as padding
        sample["regions"] = out_r
    if prb is not None:
        out_p = torch.zeros(prb.shape[1], c, c)
        out_p[:, dy:dy + hh, dx:dx + ww] = prb[0, :, sy:sy + hh, sx:sx + ww]
        sample["probs"] = out_p * valid
    return sample


class TrainSet(TorchDataset):
    """Augmented training samples keyed by ``(epoch, index)`` (see the module docstring)."""

    def __init__(self, dataset: Dataset, targets: TargetSource, augment_config: AugmentConfig, seed: int = 0):
        self.dataset = dataset
        self.targets = targets
        self.ids = targets.ids
        self.config = augment_config
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, key: tuple[int, int] | int) -> dict[str, torch.Tensor]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        image_id = self.ids[index]
        image = self.dataset.load_image(image_id)
        labels, probs = self.targets.load(image_id, image.shape[:2])
        rng = np.random.default_rng([self.seed, int(epoch), int(index)])
        sample = augment(image, labels, probs, self.config, rng)
        sample["index"] = torch.tensor(index, dtype=torch.int64)
        return sample


class EpochSampler(DistributedSampler):
    """A :class:`DistributedSampler` (shuffled with ``seed + epoch``, ranks take ``rank::world_size``)
    yielding ``(epoch, index)`` keys for :class:`TrainSet`. Call :meth:`set_epoch` every epoch."""

    def __init__(self, dataset: TrainSet, rank: int = 0, world_size: int = 1, seed: int = 0, shuffle: bool = True):
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        epoch = self.epoch
        for index in super().__iter__():
            yield (epoch, index)


class EvalSet(TorchDataset):
    """Whole images (no augmentation) with their dense masks, for validation: ``image`` 3×H×W float32
    RGB 0–255, ``mask`` H×W int64 (255 = ignore)."""

    def __init__(self, dataset: Dataset, ids: Sequence[str] | None = None):
        self.dataset = dataset
        self.ids = list(ids) if ids is not None else list(dataset.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = self.dataset.load_image(self.ids[index])
        mask = self.dataset.load_mask(self.ids[index], image.shape[:2])
        return {
            "image": torch.from_numpy(image).permute(2, 0, 1).float(),
            "mask": torch.from_numpy(mask.astype(np.int64)),
        }
