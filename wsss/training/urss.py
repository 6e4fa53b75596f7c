"""The URSS training task (``wsss train --loss urss``): the segmentation task with the URSS network, the
pseudo-boundaries of a ``superpixels`` artifact and the second forward pass of the eigenspace term
(Pan et al., ICCV 2021; docs/methods.md, "URSS"). Trained by the one loop :func:`wsss.training.engine.run_task`.

- Model: :class:`wsss.models.urss_net.URSSNet` (``head = "urss"``, output stride 8, walk form ``--walk``),
  one parameter group at ``lr`` (the public code).
- Data: the augmented samples of :mod:`wsss.training.data` plus ``boundary`` (the superpixel map's
  boundaries, width ``boundary_width``, scaled / flipped / cropped with the image by nearest neighbour;
  crop padding counts as excluded).
- Phase 1 (``phase 1``): ``pce`` + ω₁ ``entropy`` on the valid non-boundary pixels.
- Phase 2 (``phase 2``, ``init_from`` = the phase-1 run): the model starts from exactly that run's weights
  (same backbone, walk and class list, else :class:`~wsss.errors.UserError`) and adds ω₂ ``ss``: one
  transform per step for the whole batch (``random``: flip or translation 50/50, from a generator seeded
  with ``(seed, step)``), the transformed crop's energy from a second forward pass without gradient.
  Translation keeps the first or the last ``crop − shift`` rows (shift = 80 px at crop 465, scaled with
  the crop, a multiple of 8), so the prediction's energy is cut to the overlapping grid rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from wsss.artifacts import Artifact
from wsss.devices import resolve_device
from wsss.errors import UserError
from wsss.losses.urss import GridTransform
from wsss.losses.urss_defaults import TRANSLATION_SHIFT_465
from wsss.models import ModelConfig, empty_model
from wsss.models.random_walk import check_walk_memory
from wsss.parallel import DistributedContext
from wsss.training.data import AugmentConfig, TrainSet
from wsss.training.run import load_checkpoint
from wsss.training.segmentation import SegmentationTask, TrainConfig
from wsss.training.superpixel_data import SuperpixelTrainSet, open_superpixels


def translation_shift(crop: int) -> int:
    """Vertical shift (pixels, a multiple of 8, at least 8) of the translated view of a ``crop``-sized crop:
    80 at the URSS crop 465, scaled with the crop."""
    return max(8, 8 * int(round(crop * TRANSLATION_SHIFT_465 / 465 / 8)))


class BoundaryTrainSet(SuperpixelTrainSet):
    """:class:`~wsss.training.superpixel_data.SuperpixelTrainSet` whose samples carry ``boundary`` (c×c bool;
    True = excluded from the entropy)."""

    def __init__(self, dataset, targets, augment_config: AugmentConfig, seed: int, superpixels: Artifact, width: int):
        super().__init__(dataset, targets, augment_config, seed, superpixels, boundary_width=width)


def describe_model(config: ModelConfig) -> str:
    """``backbone ×width, head, walk, K classes`` of a model configuration (error messages)."""
    walk = f", walk {config.walk}" if config.head == "urss" else ""
    return f"{config.backbone} ×{config.width_mult:g}, head {config.head}{walk}, {config.num_classes} classes"


def draw_transform(seed: int, step: int) -> tuple[str, bool]:
    """``(kind, first)`` of one step: flip or translation (50/50), the kept rows first or last (50/50)."""
    rng = np.random.default_rng([int(seed), int(step), 17])
    return ("flip" if rng.random() < 0.5 else "translation"), bool(rng.random() < 0.5)


class URSSTask(SegmentationTask):
    """``wsss train --loss urss`` (module docstring)."""

    def setup(self, ctx: DistributedContext) -> None:
        super().setup(ctx)
        cfg, loss = self.cfg, self.loss
        self.superpixels = open_superpixels(cfg.superpixels, self.targets.ids, "urss", "the pseudo-boundaries",
                                            seeds=self.targets.artifact)
        self.inputs = list(self.inputs) + [self.superpixels.provenance()]
        self.model_config = ModelConfig(num_classes=self.dataset.num_classes, backbone=cfg.backbone, output_stride=8,
                                        width_mult=cfg.width_mult, head_channels=cfg.head_channels, head="urss",
                                        walk=loss.walk)
        grid = -(-cfg.crop_size // 8)  # the stride-8 feature grid of a crop (59 at 465)
        check_walk_memory(cfg.batch_size, (grid, grid), resolve_device(cfg.device))
        self.init_state = None
        if loss.phase == 2 and cfg.init_from is None:
            raise UserError("--urss-phase 2: starts from the phase-1 weights. Pass --init-from PHASE1_RUN.")
        if cfg.init_from is not None:
            state = load_checkpoint(cfg.init_from)
            old = ModelConfig(**state.get("model_config", {"num_classes": 0}))
            if old != self.model_config:
                raise UserError(f"{cfg.init_from}: was trained with another model ({describe_model(old)}; this run: "
                                f"{describe_model(self.model_config)}). Pass a phase-1 run of --loss urss with the same "
                                "--backbone, --width-mult, --walk and dataset.")
            classes, mine = list(state.get("classes", [])), list(self.dataset.classes)
            if classes != mine:
                i = next((i for i, (a, b) in enumerate(zip(classes, mine)) if a != b), min(len(classes), len(mine)))
                raise UserError(f"{cfg.init_from}: was trained on another class list ({len(classes)} classes, this "
                                f"dataset {len(mine)}; class {i}: {classes[i] if i < len(classes) else 'none'!r} vs "
                                f"{mine[i] if i < len(mine) else 'none'!r}). Pass a phase-1 run on the same dataset.")
            self.init_state = state["model"]
            self.inputs.append({"path": str(cfg.init_from), "kind": "run", "epoch": int(state.get("epoch", 0))})

    def build_model(self) -> torch.nn.Module:
        if self.init_state is None:
            return super().build_model()
        model = empty_model(self.model_config)
        model.load_state_dict(self.init_state)
        return model

    def param_groups(self, model: torch.nn.Module) -> list[dict[str, Any]]:
        return [{"params": list(model.parameters()), "lr": self.cfg.lr}]

    def trainset(self) -> TrainSet:
        cfg = self.cfg
        return BoundaryTrainSet(self.dataset, self.targets, AugmentConfig.of(cfg),
                                cfg.seed, self.superpixels, self.loss.boundary_width)

    def batch_terms(self, model, batch, device, epoch, step, use_amp):
        image, labels, valid, boundary = (batch[k].to(device, non_blocking=True) for k in ("image", "labels", "valid", "boundary"))
        return urss_terms(model, self.loss, image, labels, valid, boundary, seed=self.cfg.seed, step=step,
                          use_amp=use_amp, pce_only=epoch < self.warmup)


def urss_terms(model, loss, image, labels, valid, boundary, seed: int, step: int, use_amp: bool = False,
               pce_only: bool = False) -> dict:
    """The terms of one URSS step (module docstring): ``pce`` (+ ``entropy``, + ``ss`` in phase 2).

    Args:
        model: the (possibly DDP-wrapped) :class:`~wsss.models.urss_net.URSSNet`.
        loss: the :class:`~wsss.losses.urss.URSSLoss`.
        image: ``B×3×H×W`` float RGB 0–255; labels ``B×H×W`` int64 seeds; valid, boundary ``B×H×W`` bool.
        seed, step: the transform's random stream (:func:`draw_transform`).
        use_amp: float16 autocast (CUDA).
        pce_only: the ``--warmup-epochs`` terms (pCE only).
    """
    device = image.device
    with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
        logits, energy, grid = model(image, with_energy=True)
    terms = loss.base_terms(logits.float(), labels, valid, boundary)
    if pce_only:
        return {"pce": terms["pce"]}
    if loss.phase == 2:
        kind_drawn, first = draw_transform(seed, step)
        kind = kind_drawn if loss.transform == "random" else loss.transform
        if kind == "flip":
            view = image.flip(-1)
        else:
            shift = translation_shift(image.shape[-2])
            view = image[:, :, : image.shape[-2] - shift] if first else image[:, :, shift:]
        with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            _, energy_t, grid_t = model(view, with_energy=True)
        transform = GridTransform(kind, first=first, rows=grid_t[0])
        terms["ss"] = loss.ss_term(energy.float(), energy_t.float(), grid, transform)
    return terms


__all__ = ["BoundaryTrainSet", "URSSTask", "describe_model", "draw_transform", "translation_shift", "urss_terms"]
