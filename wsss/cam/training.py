"""``wsss cam train``: the CAM classifier trained from image tags on the toolkit's one training loop.

:class:`CamTask` is trained by the generic loop :func:`wsss.training.engine.run_task` (run directory,
checkpoints, ``--resume``, ``torchrun`` DDP, progress, poly learning rate), as the segmentation task
:class:`wsss.training.segmentation.SegmentationTask` is. Method: docs/methods.md §6.

- Model (:func:`build_cam_model`): a backbone of :mod:`wsss.models.backbones` (its stride-
  ``output_stride`` features; weights via :func:`wsss.models.load_backbone_weights`: ``packaged``
  (default; EfficientNet-Lite0's pip package, random init for the others), ``imagenet``, ``none``
  or a state-dict file) + Dropout2d(0.5) + bias-free 1×1 conv (SEAM's head,
  :class:`wsss.cam.classifier.CamClassifier`). docs/methods.md §6: SEAM's ResNet-38 is replaced by a
  torchvision ResNet-50/101 at output stride 8; MobileNetV2 (its stride-``os`` 320-channel
  features) for small budgets; EfficientNet-Lite0 (320 channels) for ImageNet weights offline.
- Loss per image (docs/methods.md §6 reductions: means over classes / samples / cells, then over images):
  ``gap = (1 − λ) L_ce``, ``isl = isl_scale · λ · L_is^N`` (eq. 16; ``--no-isl``: ``gap = L_ce``),
  ``fsl = β L_fs`` (eq. 9). The loop divides batch sums by the number of images of the global batch.
  ISL draws come from one torch.Generator per rank, re-seeded every optimizer step from
  ``(seed, rank, step)``: draws are reproducible and ``--resume`` stays bit-exact on CPU without
  storing generator states.
- Optimizer (docs/methods.md §6, hfpl code): SGD lr 0.01, poly 0.9, momentum 0 (the code's quirk gives 5e-4:
  "effectively none"), groups: pretrained (backbone) weights lr ×1 wd 5e-4, their biases / norm
  parameters ×2 wd 0, new (head) weights ×``head_lr_mult`` (10) wd 5e-4, new biases ×2·10 wd 0.
- Augmentation (SEAM): random resize of the long side to an integer in
  ``[resize_long_min, resize_long_max]`` (448–768, bilinear), horizontal flip (p 0.5), colour jitter
  (brightness, contrast, saturation 0.3, hue 0.1, applied in a random order as torchvision's
  ColorJitter), ImageNet normalisation, random ``crop × crop`` (448) window, zero-padded (in
  normalised units, as SEAM) where the image is smaller, with a validity mask. GAP and ISL use the
  whole CAM grid (as the code); FSL drops pairs with a padded endpoint (grid cells whose area is
  less than half image, docs/methods.md §1.1). The FSL colours are the jittered crop (docs/methods.md §6).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset as TorchDataset

from wsss.artifacts import Artifact
from wsss.cam.classifier import DEFAULT_DROPOUT, CamClassifier, check_posterior
from wsss.cam.losses import (DEFAULT_NUM_SAMPLES, FSL_GATES, FSL_MU, FSL_SIGMA, IMAGENET_MEAN, IMAGENET_STD,
                             default_isl_weight, feature_similarity_loss, fsl_gate, fsl_image, gap_loss, isl_loss)
from wsss.data import Dataset, open_dataset, open_recorded_dataset
from wsss.errors import UserError
from wsss.models.backbones import DEFAULT_BACKBONE, DEFAULT_WEIGHTS
from wsss.parallel import DistributedContext
from wsss.training.task import TrainingTask
from wsss.validation import check_allocation, check_numbers

#: label value of channel 0: class 0 is background and never a tag (docs/methods.md §1)
LABEL_OFFSET = 1
#: docs/methods.md §6: ColorJitter(brightness 0.3, contrast 0.3, saturation 0.3, hue 0.1)
JITTER = (0.3, 0.3, 0.3, 0.1)


@dataclass
class CamTrainConfig:
    """All options of ``wsss cam train`` (defaults and sources in the comments; docs/methods.md §6)."""

    out: str
    tags: str
    data: str | None = None           # default: the dataset recorded in the tags artifact
    layout: str = "auto"
    split: str | None = None
    # model (docs/methods.md §6): the toolkit's default backbone, EfficientNet-Lite0 with its packaged ImageNet
    # weights (the one pretrained backbone offline; a CAM needs pretrained features); the papers' torchvision
    # ResNet-50 / -101 in place of SEAM's ResNet-38 with --backbone resnet50 --weights imagenet. Output stride 8.
    backbone: str = DEFAULT_BACKBONE
    output_stride: int = 8
    width_mult: float = 1.0
    weights: str | None = DEFAULT_WEIGHTS  # packaged | imagenet | none | PATH (wsss.models.load_backbone_weights)
    posterior: str = "binomial"       # docs/methods.md §6: binomial (proposed) | multinomial (original ISL/FSL)
    dropout: float = DEFAULT_DROPOUT  # SEAM: Dropout2d(0.5) before the 1×1 head
    # ISL (docs/methods.md §6.2, eqs. 19–22)
    isl: bool = True
    isl_weight: float | None = None   # λ; None: 0.2 binomial, 0.6 multinomial (paper Table 4)
    isl_samples: int = DEFAULT_NUM_SAMPLES  # N = 10 (paper Table 5)
    isl_scale: float = 1.0            # 1 for SEAM, 0.1 for SIPE / MCTformer
    # FSL (docs/methods.md §6.3, eqs. 23–25)
    fsl: bool = True
    fsl_weight: float = 1.0           # β: 1 on VOC (SEAM), 0.2 on COCO
    fsl_mu: float = FSL_MU            # 2.5, fixed
    fsl_sigma: float = FSL_SIGMA      # 5 grid cells, fixed
    fsl_gate: str | None = None       # None: r (binomial, J 66.9 vs 64.6 for b), a (multinomial softmax)
    fsl_bg_channel: bool = True       # code: background channel 1 − max r
    fsl_window: int | None = None     # None: exact all-pairs (code); R: square window (approximation)
    # schedule (docs/methods.md §6, hfpl code)
    epochs: int = 8
    batch_size: int = 8               # per process
    lr: float = 0.01
    lr_power: float = 0.9
    momentum: float = 0.0             # toolkit (code's quirk: 5e-4)
    weight_decay: float = 5e-4
    head_lr_mult: float = 10.0        # new layers ×10, their biases ×20
    # augmentation (docs/methods.md §6, SEAM)
    resize_long_min: int = 448
    resize_long_max: int = 768
    crop_size: int = 448
    flip: bool = True
    color_jitter: bool = True
    # run
    seed: int = 1                     # docs/methods.md §6: seed 1
    device: str = "auto"
    amp: bool = True
    workers: int = 0
    log_every: int = 10
    resume: bool = False
    stop_after_epoch: int | None = None
    progress: bool = True
    command: str = ""

    def resolved_isl_weight(self) -> float:
        return default_isl_weight(self.posterior) if self.isl_weight is None else float(self.isl_weight)

    def resolved_gate(self) -> str:
        if self.fsl_gate is not None:
            return self.fsl_gate
        return "a" if self.posterior == "multinomial" else "r"


@dataclass(frozen=True)
class CamModelConfig:
    """What rebuilds a CAM classifier (stored in checkpoints as ``model_config``)."""

    num_classes: int                  # C foreground classes
    backbone: str = "resnet50"
    output_stride: int = 8
    width_mult: float = 1.0
    posterior: str = "binomial"
    dropout: float = DEFAULT_DROPOUT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class HighFeatures(nn.Module):
    """A :class:`wsss.models.Backbone` reduced to its stride-``os`` features ``B×C_h×h×w``."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.net = backbone
        self.out_channels = backbone.high_channels

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)[1]


def build_cam_model(config: CamModelConfig, weights: str | None = None, load: bool = True) -> CamClassifier:
    """CAM classifier on :mod:`wsss.models.backbones`. ``load``: initialise the backbone from
    ``weights`` (``packaged``, ``imagenet``, ``none``, a state-dict file; None: random with a warning);
    ``load=False`` builds the bare architecture (checkpoints)."""
    from wsss.models.backbones import Backbone, load_backbone_weights

    if load:
        backbone = load_backbone_weights(config.backbone, weights, config.output_stride, config.width_mult)
    else:
        backbone = Backbone(config.backbone, config.output_stride, config.width_mult)
    features = HighFeatures(backbone)
    return CamClassifier(features, features.out_channels, config.num_classes, posterior=config.posterior,
                         dropout=config.dropout)


def cam_model_from_checkpoint(state: dict[str, Any]) -> CamClassifier:
    """The CAM classifier of a ``wsss cam train`` checkpoint (weights loaded, train mode)."""
    if state.get("task") != "cam":
        raise UserError("checkpoint: not a 'wsss cam train' run (it holds a segmentation model). "
                        "Pass the run directory of wsss cam train.")
    model = build_cam_model(CamModelConfig(**state["model_config"]), load=False)
    model.load_state_dict(state["model"])
    return model


# -- tags --------------------------------------------------------------------------------------

def check_background_first(classes: Sequence[str], where: str) -> None:
    """The CAM channel layout needs class 0 = background (docs/methods.md §1)."""
    from wsss.annotations.objects import find_background

    bg = find_background(list(classes))
    if bg != 0:
        raise UserError(f"{where}: class 0 is {classes[0]!r}, not background. The CAM stage needs background as "
                        "class 0 (tags are the other classes); use a dataset whose first class is background.")


def open_tags(path: str, data: str | None = None, layout: str = "auto", split: str | None = None) -> tuple[Artifact, Dataset]:
    """The tags artifact and its dataset, checked against each other (classes, image ids)."""
    tags = Artifact(path, "tags")
    if data is not None:
        dataset = open_dataset(data, layout=layout, split=split or (tags.dataset or {}).get("split", "train"))
    else:
        if not tags.dataset:
            raise UserError(f"{tags.path}: records no dataset. Pass the images with --data (and --split).")
        record = dict(tags.dataset)
        if split:
            record["split"] = split
        dataset = open_recorded_dataset(record)
    if list(tags.classes) != list(dataset.classes):
        raise UserError(f"{tags.path}: its classes {tags.classes[:4]}… ({len(tags.classes)}) differ from those of the "
                        f"dataset {dataset.root} ({len(dataset.classes)}: {dataset.classes[:4]}…). "
                        "Pass the dataset the tags were made from, or rerun wsss prepare-tags on it.")
    check_background_first(dataset.classes, str(tags.path))
    known = set(dataset.ids)
    missing = [i for i in tags.ids if i not in known]
    if missing:
        raise UserError(f"{tags.path}: {len(missing)} images are not in the dataset {dataset.root} [{dataset.split}] "
                        f"(e.g. '{missing[0]}'). Pass the dataset the tags were made from (--data/--split).")
    if not tags.ids:
        raise UserError(f"{tags.path}: holds no image. Rerun wsss prepare-tags.")
    return tags, dataset


def read_tags(tags: Artifact, image_id: str, num_classes: int) -> np.ndarray:
    """Sorted label values (int64) of one image, checked: at least one, each in 1..K−1."""
    values = np.unique(np.asarray(tags.read(image_id, "tags"), dtype=np.int64).reshape(-1))
    if values.size == 0:
        raise UserError(f"{tags.path}: image '{image_id}' has no tag. The CAM stage needs at least one object class "
                        "per image: fix the tags or rerun wsss prepare-tags with --skip-bad.")
    if values.min() < LABEL_OFFSET or values.max() >= num_classes:
        raise UserError(f"{tags.path}: image '{image_id}' has tag values {values.tolist()} outside 1..{num_classes - 1}. "
                        "Tags are object classes of the dataset (background excluded); rerun wsss prepare-tags.")
    return values


# -- augmentation ------------------------------------------------------------------------------

@dataclass(frozen=True)
class CamAugment:
    resize_long_min: int = 448
    resize_long_max: int = 768
    crop_size: int = 448
    flip: bool = True
    color_jitter: bool = True


def cam_augment(image: np.ndarray, config: CamAugment, rng: np.random.Generator) -> dict[str, Tensor]:
    """SEAM's augmentation (module docstring) of an ``H×W×3`` uint8 image.

    Returns ``image`` ``3×c×c`` float32 (ImageNet-normalised, 0 on padding) and ``valid`` ``c×c`` bool.
    """
    h, w = image.shape[:2]
    long = int(rng.integers(config.resize_long_min, config.resize_long_max + 1))
    scale = long / max(h, w)
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False).clamp_(0, 1)
    x = x[0]
    if config.flip and rng.random() < 0.5:
        x = x.flip(-1)
    if config.color_jitter:
        import torchvision.transforms.functional as TF  # here: the command line imports this module for its defaults

        b, c, s, hue = JITTER
        factors = [rng.uniform(1 - b, 1 + b), rng.uniform(1 - c, 1 + c), rng.uniform(1 - s, 1 + s), rng.uniform(-hue, hue)]
        for op in rng.permutation(4).tolist():
            if op == 0:
                x = TF.adjust_brightness(x, float(factors[0]))
            elif op == 1:
                x = TF.adjust_contrast(x, float(factors[1]))
            elif op == 2:
                x = TF.adjust_saturation(x, float(factors[2]))
            else:
                x = TF.adjust_hue(x, float(factors[3]))
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    x = (x - mean) / std
    cs = config.crop_size
    y0 = int(rng.integers(0, nh - cs + 1)) if nh > cs else -int(rng.integers(0, cs - nh + 1))
    x0 = int(rng.integers(0, nw - cs + 1)) if nw > cs else -int(rng.integers(0, cs - nw + 1))
    sy, sx, dy, dx = max(y0, 0), max(x0, 0), max(-y0, 0), max(-x0, 0)
    hh, ww = min(nh - sy, cs - dy), min(nw - sx, cs - dx)
    out = torch.zeros(3, cs, cs)
    valid = torch.zeros(cs, cs, dtype=torch.bool)
    out[:, dy:dy + hh, dx:dx + ww] = x[:, sy:sy + hh, sx:sx + ww]
    valid[dy:dy + hh, dx:dx + ww] = True
    return {"image": out, "valid": valid}


class CamTrainSet(TorchDataset):
    """Samples keyed by ``(epoch, index)``: ``image``, ``valid`` (:func:`cam_augment`), ``targets``
    (``C`` float32 multi-hot, channel = label − 1) and ``index``; augmentation seeded by
    ``(seed, epoch, index)`` as :class:`wsss.training.data.TrainSet`."""

    def __init__(self, dataset: Dataset, tags: Artifact, augment: CamAugment, seed: int):
        self.dataset, self.tags, self.augment, self.seed = dataset, tags, augment, int(seed)
        self.ids = tags.ids
        self.num_classes = dataset.num_classes

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, key):
        epoch, index = key if isinstance(key, tuple) else (0, key)
        image_id = self.ids[index]
        image = self.dataset.load_image(image_id)
        values = read_tags(self.tags, image_id, self.num_classes)
        rng = np.random.default_rng([self.seed, int(epoch), int(index)])
        sample = cam_augment(image, self.augment, rng)
        targets = torch.zeros(self.num_classes - LABEL_OFFSET)
        targets[torch.from_numpy(values - LABEL_OFFSET)] = 1
        sample["targets"] = targets
        sample["index"] = torch.tensor(index, dtype=torch.int64)
        return sample


def _step_seed(seed: int, rank: int, step: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(rank), int(step)]).generate_state(1, np.uint64)[0] >> 1)


def grid_valid(valid: Tensor, size: Sequence[int]) -> Tensor:
    """``B×H×W`` bool → ``B×h×w`` bool: grid cells at least half covered by image pixels."""
    return F.adaptive_avg_pool2d(valid[:, None].float(), tuple(size))[:, 0] >= 0.5


class CamTask(TrainingTask):
    """The CAM classifier as a :class:`~wsss.training.task.TrainingTask` (see the module docstring)."""

    name = "cam"

    def __init__(self, cfg: CamTrainConfig):
        self.cfg = cfg
        check_cam_config(cfg)
        terms = ["GAP"] + (["ISL"] if cfg.isl else []) + (["FSL"] if cfg.fsl else [])
        self.label = f"cam train {'+'.join(terms)} ({cfg.posterior})"

    def setup(self, ctx: DistributedContext) -> None:
        cfg = self.cfg
        self.ctx = ctx
        self.tags, self.dataset = open_tags(cfg.tags, cfg.data, cfg.layout, cfg.split)
        for image_id in self.tags.ids:  # every image must have tags before anything is written
            read_tags(self.tags, image_id, self.dataset.num_classes)
        self.model_config = CamModelConfig(
            num_classes=self.dataset.num_classes - LABEL_OFFSET, backbone=cfg.backbone, output_stride=cfg.output_stride,
            width_mult=cfg.width_mult, posterior=cfg.posterior, dropout=cfg.dropout)
        self.generator: torch.Generator | None = None

    def loss_record(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "posterior": cfg.posterior,
            "isl": {"weight": cfg.resolved_isl_weight(), "samples": cfg.isl_samples, "scale": cfg.isl_scale} if cfg.isl else None,
            "fsl": {"weight": cfg.fsl_weight, "mu": cfg.fsl_mu, "sigma": cfg.fsl_sigma, "gate": cfg.resolved_gate(),
                    "bg_channel": cfg.fsl_bg_channel, "window": cfg.fsl_window} if cfg.fsl else None,
        }

    def record(self) -> dict[str, Any]:
        return {"task": "cam", "model": self.model_config.to_dict(), "loss": self.loss_record(),
                "classes": self.dataset.classes, "dataset": self.dataset.describe(), "inputs": [self.tags.provenance()]}

    def build_model(self) -> nn.Module:
        return build_cam_model(self.model_config, self.cfg.weights)

    def empty_model(self) -> nn.Module:
        return build_cam_model(self.model_config, load=False)

    def param_groups(self, model: CamClassifier) -> list[dict[str, Any]]:
        cfg = self.cfg
        pre_w, pre_b, new_w, new_b = [], [], [], []
        for name, p in model.named_parameters():
            new = not name.startswith("backbone.")
            is_weight = p.dim() > 1  # conv / linear kernels; biases and norm scales/shifts are 1-d
            (new_w if new and is_weight else new_b if new else pre_w if is_weight else pre_b).append(p)
        groups = []
        for params, mult, wd in ((pre_w, 1.0, cfg.weight_decay), (pre_b, 2.0, 0.0),
                                 (new_w, cfg.head_lr_mult, cfg.weight_decay), (new_b, 2.0 * cfg.head_lr_mult, 0.0)):
            if params:
                groups.append({"params": params, "lr": cfg.lr * mult, "weight_decay": wd})
        return groups

    def trainset(self) -> CamTrainSet:
        cfg = self.cfg
        aug = CamAugment(cfg.resize_long_min, cfg.resize_long_max, cfg.crop_size, cfg.flip, cfg.color_jitter)
        return CamTrainSet(self.dataset, self.tags, aug, cfg.seed)

    def normalizer(self, batch, device):
        return torch.tensor(float(batch["image"].shape[0]), dtype=torch.float64, device=device)

    def batch_terms(self, model, batch, device, epoch, step, use_amp):
        cfg = self.cfg
        x = batch["image"].to(device, non_blocking=True)
        y = batch["targets"].to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            scores = model(x)
        scores = scores.float()
        n = float(x.shape[0])  # per-image means × images = batch sums (the loop divides by Σ images)
        terms: dict[str, Tensor] = {}
        if cfg.isl:
            lam = cfg.resolved_isl_weight()
            if self.generator is None:
                self.generator = torch.Generator(device=device)
            self.generator.manual_seed(_step_seed(cfg.seed, self.ctx.rank, step))
            terms["gap"] = (1 - lam) * gap_loss(scores, y, cfg.posterior) * n
            terms["isl"] = cfg.isl_scale * lam * isl_loss(scores, y, cfg.isl_samples, cfg.posterior, self.generator) * n
        else:
            terms["gap"] = gap_loss(scores, y, cfg.posterior) * n
        if cfg.fsl:
            gate = fsl_gate(scores, y, cfg.resolved_gate(), cfg.posterior, cfg.fsl_bg_channel)
            colours = fsl_image(x, scores.shape[-2:])
            valid = grid_valid(batch["valid"].to(device), scores.shape[-2:])
            terms["fsl"] = cfg.fsl_weight * feature_similarity_loss(gate, colours, cfg.fsl_mu, cfg.fsl_sigma,
                                                                     cfg.fsl_window, valid=valid) * n
        return terms

    def checkpoint_fields(self) -> dict[str, Any]:
        return {"model_config": self.model_config.to_dict(), "classes": self.dataset.classes,
                "dataset": self.dataset.describe(), "tags": str(self.tags.path.resolve())}


def check_cam_config(cfg: CamTrainConfig) -> None:
    check_posterior(cfg.posterior)
    from wsss.training.engine import check_crop_memory, check_schedule

    check_schedule(cfg)
    check_numbers([
        ("--resize-long MIN", cfg.resize_long_min, 1, None, {"integer": True}),
        ("--resize-long MAX", cfg.resize_long_max, cfg.resize_long_min, None, {"integer": True, "reason": "at least MIN"}),
        ("--dropout", cfg.dropout, 0, 1, {"high_open": True}),
        ("--isl-weight", cfg.isl_weight, 0, 1, {"reason": "a mixing weight λ"}),
        ("--isl-samples", cfg.isl_samples, 1, None, {"integer": True}),
        ("--isl-scale", cfg.isl_scale, 0, None),
        ("--fsl-weight", cfg.fsl_weight, 0, None),
        ("--fsl-mu", cfg.fsl_mu, 0, None),
        ("--fsl-sigma", cfg.fsl_sigma, 0, None, {"low_open": True}),
        ("--fsl-window", cfg.fsl_window, 0, None, {"integer": True}),
    ])
    check_crop_memory(cfg, 1)
    # a resized image before cropping: long side resize_long_max, 3 float32 channels, the whole batch
    check_allocation(float(cfg.batch_size) * cfg.resize_long_max ** 2 * 3 * 4,
                     f"--resize-long {cfg.resize_long_min} {cfg.resize_long_max}: one batch of resized images",
                     "Use a smaller --resize-long MAX.")
    checks = [
        (cfg.fsl_gate is None or cfg.fsl_gate in FSL_GATES, f"--fsl-gate must be one of {', '.join(FSL_GATES)}"),
        (not (cfg.fsl and cfg.resolved_gate() == "a" and cfg.posterior != "multinomial"),
         "--fsl-gate a is the softmax posterior and needs --posterior multinomial"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(f"{message}. Fix the option.")


def train_cams(cfg: CamTrainConfig, on_step=None, on_epoch_end=None):
    """Train the CAM classifier; returns the run directory (``last.pt`` feeds ``wsss cam export``)."""
    from wsss.training.engine import run_task

    return run_task(CamTask(cfg), cfg, on_step=on_step, on_epoch_end=on_epoch_end)


__all__ = ["CamAugment", "CamModelConfig", "CamTask", "CamTrainConfig", "build_cam_model", "cam_augment",
           "cam_model_from_checkpoint", "open_tags", "read_tags", "train_cams"]
