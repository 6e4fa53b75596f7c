"""Stage ``spml-labels``: SPML random-walk pseudo-labels (Ke et al., ICLR 2021; docs/methods.md §10.5).

Reads a SPML embedding run (``wsss train --loss spml``: embedding network + initial classifier), a
``seeds`` artifact (the seeds the run was trained on: scribbles, clicks or CAM seeds) and the images of the
seeds' dataset. Per image:

1. the network runs on the image and its mirror; the initial classifier's softmax and the unit embeddings
   are taken to the grid at 1/8 of the image size (:func:`wsss.spml.random_walk.random_walk_scores`). With
   ``cams`` (the SPML tag pipeline) the scores are instead the image's CAMs (``wsss cam export``) with the
   background score ``(1 − max_c r_c)^α``, α = 6 (:func:`cam_scores`);
2. the scores (each class divided by its spatial maximum, classes absent from the image's seed map set to
   0) are propagated by ``T^64`` of the embedding affinity;
3. the result is upsampled bilinearly to image size and normalised per pixel
   (:func:`wsss.spml.random_walk.walk_probabilities`), then refined by DenseCRF through the crf stage
   (:func:`wsss.stages.crf.refine`; SPML's parameters :data:`SPML_CRF`; ``crf=None`` skips it).

Writes an ordinary ``pseudolabels`` artifact: ``probs`` (K×H×W float16, the CRF marginals) and ``label``
(H×W uint8, their arg-max), per-image attributes ``seeded`` (fraction of seed pixels) and ``crf_changed``
(fraction of pixels whose arg-max the CRF changed). ``wsss train --loss pseudo`` (the final classifier),
``wsss eval`` and ``wsss show`` read it like the solver's.

Images are independent (``--workers`` processes, ``torchrun`` ranks); the output does not depend on the
split.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsss.artifacts import Artifact
from wsss.cam.seeds import SPML_ALPHA, background_score
from wsss.constants import IGNORE_INDEX
from wsss.crf import CRFParams, crf_workers
from wsss.data import Dataset
from wsss.devices import resolve_device
from wsss.errors import UserError
from wsss.paths import StageInputs
from wsss.spml.random_walk import SPML_CRF, RandomWalkConfig, check_walk_memory, random_walk_scores, walk_probabilities
from wsss.spml.runs import check_embedding_run
from wsss.stages import crf as crf_stage
from wsss.stages.artifact_inputs import check_ids, resolve_dataset
from wsss.stages.pseudolabel_writer import write_pseudolabels
from wsss.training.run import load_checkpoint, resolve_checkpoint, run_directory
from wsss.training.spml import spml_model_from_state
from wsss.validation import check_finite_arrays, check_numbers


def load_embedding_net(run: str | os.PathLike, device: torch.device, use: str = "wsss spml-labels"):
    """The embedding network of a SPML run as the walk's :data:`~wsss.spml.random_walk.EmbedFn`.

    Returns:
        ``(net, meta)``: ``net(image B×3×H×W RGB 0–255) -> (embedding B×d×h×w, logits B×K×h×w)``, in eval
        mode on ``device``; ``meta`` with ``classes``, ``dataset``, ``epoch`` and ``checkpoint`` (the file).

    Raises:
        UserError: the path holds no checkpoint, or not a SPML embedding run.
    """
    ckpt = resolve_checkpoint(run)
    state = load_checkpoint(ckpt)
    check_embedding_run(run, state, use)
    model, config = spml_model_from_state(state, device)

    def net(image: torch.Tensor):
        out = model(image)
        return out["embedding"], out["logits"]

    meta = {"classes": list(config.get("classes") or state.get("classes") or []),
            "dataset": state.get("dataset"), "epoch": int(state.get("epoch", 0)), "checkpoint": ckpt}
    return net, meta


def present_classes(label: np.ndarray, num_classes: int) -> np.ndarray:
    """``K`` bool: the classes of a seed map (``H×W`` integer labels, 255 = unlabelled)."""
    present = np.zeros(num_classes, dtype=bool)
    values = np.unique(label)
    present[values[values < num_classes].astype(np.int64)] = True
    return present


def seeded_present_classes(seeds: Artifact, image_id: str, label: np.ndarray, num_classes: int) -> np.ndarray:
    """:func:`present_classes` of an image's seed map, refusing a map without any labelled pixel.

    Raises:
        UserError: no class is known to be present (names the seeds artifact and the image).
    """
    present = present_classes(label, num_classes)
    if not present.any():
        raise UserError(f"{seeds.path}: image '{image_id}' has no labelled pixel, so no class is known to be "
                        "present and its pseudo-labels would be empty. Pass seeds that label every image.")
    return present


def refined_pseudolabels(out: Path, seeds: Artifact, dataset: Dataset, image_id: str, scores: np.ndarray,
                         label: np.ndarray, crf: CRFParams | None) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """One image's ``pseudolabels`` arrays from its ``K×H×W`` float class scores: DenseCRF through the crf stage
    (``crf=None`` skips it), arg-max, finiteness checked against ``out``.

    Returns:
        ``({"probs": K×H×W float16, "label": H×W uint8}, {"seeded", "crf_changed"})``: the share of seeded
        pixels of ``label`` (the seed map) and of pixels whose label the CRF changed.
    """
    before = scores.argmax(axis=0)
    if crf is not None:
        scores = crf_stage.refine(seeds, dataset, image_id, crf, len(seeds.classes), scores=scores)
    arg = scores.argmax(axis=0).astype(np.uint8)
    arrays = {"probs": scores.astype(np.float16), "label": arg}
    check_finite_arrays(out, image_id, arrays)
    return arrays, {"seeded": float(np.mean(label != IGNORE_INDEX)), "crf_changed": float(np.mean(arg != before))}


def cam_scores(cams: Artifact, image_id: str, num_classes: int, shape: tuple[int, int], alpha: float = SPML_ALPHA) -> np.ndarray:
    """The walk's starting scores from an image's CAMs (the SPML tag pipeline: SEAM CAMs, background power 6).

    Returns:
        ``K×H×W`` float32: class 0 (background) ``(1 − max_c r_c)^α`` over the image's CAM classes (1 without
        any), each CAM class its normalised CAM ``r_c``, the other classes 0.
    """
    from wsss.stages.cam import read_cams

    maps, classes = read_cams(cams, image_id, num_classes, shape)
    out = np.zeros((num_classes, *shape), np.float32)
    out[0] = background_score(maps, alpha) if classes.size else 1.0
    out[classes] = maps
    return out


@torch.no_grad()
def image_pseudolabels(net, image: np.ndarray, present: np.ndarray, walk: RandomWalkConfig,
                       device: torch.device, scores: np.ndarray | None = None) -> np.ndarray:
    """Random-walk class distributions of one image, before the CRF.

    Args:
        net: :data:`~wsss.spml.random_walk.EmbedFn`.
        image: ``H×W×3`` uint8 RGB.
        present: ``K`` bool, the classes of the image's seed map.
        walk: walk options.
        device: where the network and the walk run.
        scores: ``K×H×W`` starting scores (:func:`cam_scores`) instead of the initial classifier's softmax.

    Returns:
        ``K×H×W`` float32, summing to 1 per pixel.
    """
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().to(device)
    pres = torch.from_numpy(present)[None].to(device)
    given = torch.from_numpy(scores)[None].to(device) if scores is not None else None
    walked = random_walk_scores(net, x, pres, walk, scores=given)
    return walk_probabilities(walked, image.shape[:2])[0].cpu().numpy()


@dataclass(frozen=True)
class SeededRun:
    """What both SPML inference stages open first (:func:`open_seeded_run`): the seeds, their dataset, the
    embedding network of the run and its device."""

    seeds: Artifact
    dataset: Dataset
    net: Any
    meta: dict
    checkpoint: Path
    device: torch.device

    @property
    def classes(self) -> list[str]:
        return list(self.seeds.classes)


def open_seeded_run(spml_run, seeds, data=None, layout=None, split=None, device: str = "cpu", workers: int = 1,
                    net_loader=load_embedding_net) -> SeededRun:
    """The seeds artifact, its dataset (recorded or overridden) and the SPML run's network, checked against each
    other: the seeds' class count is the dataset's, their images are the dataset's, the run was trained on their
    classes. Each mismatch is a :class:`~wsss.errors.UserError`."""
    seeds_art = Artifact(seeds, kind="seeds")
    dataset = resolve_dataset(seeds_art, data, layout, split)
    k = len(seeds_art.classes)
    if k != dataset.num_classes:
        raise UserError(f"{seeds_art.path}: has {k} classes but the dataset {dataset.root} has {dataset.num_classes}. "
                        "Pass the dataset the seeds were made for (--data).")
    check_ids(seeds_art, dataset, seeds_art.ids)
    dev = resolve_device(device, workers)
    net, meta = net_loader(spml_run, dev)
    if list(meta["classes"]) != list(seeds_art.classes):
        raise UserError(f"{spml_run}: was trained on the classes {list(meta['classes'])}, the seeds {seeds_art.path} "
                        f"have {list(seeds_art.classes)}. Pass the seeds of the run's dataset.")
    return SeededRun(seeds_art, dataset, net, meta, Path(meta["checkpoint"]), dev)


def companion_artifact(path, kind, seeds: Artifact, noun: str, fix: str) -> Artifact:
    """An artifact read beside the seeds (CAMs, pseudo-labels to relabel): same classes, every image of the seeds.

    Raises:
        UserError: other classes, or images of the seeds missing (``noun`` names what is missing, ``fix`` the remedy).
    """
    art = Artifact(path, kind=kind)
    if list(art.classes) != list(seeds.classes):
        raise UserError(f"{art.path}: its classes {list(art.classes)} differ from the seeds' {list(seeds.classes)}. {fix}")
    missing = sorted(set(seeds.ids) - set(art.ids))
    if missing:
        raise UserError(f"{art.path}: has no {noun} for {len(missing)} images of the seeds (e.g. '{missing[0]}'). {fix}")
    return art


def run(
    spml_run: str | os.PathLike,
    seeds: str | os.PathLike,
    out: str | os.PathLike,
    *,
    walk: RandomWalkConfig = RandomWalkConfig(),
    crf: CRFParams | None = SPML_CRF,
    cams: str | os.PathLike | None = None,
    cam_bg_power: float = SPML_ALPHA,
    data: str | os.PathLike | None = None,
    layout: str | None = None,
    split: str | None = None,
    device: str = "cpu",
    workers: int = 1,
    resume: bool = False,
    config: Mapping[str, Any] | None = None,
    net_loader=load_embedding_net,
) -> Path:
    """Random-walk pseudo-labels of every image of a seeds artifact (module docstring).

    Args:
        spml_run: run directory (or checkpoint) of ``wsss train --loss spml``.
        seeds: ``seeds`` artifact: which classes each image holds (and ``seeded``).
        out: output ``pseudolabels`` artifact (must differ from the inputs).
        walk: random-walk options.
        crf: DenseCRF parameters (default :data:`SPML_CRF`), or None for no CRF.
        cams: ``cams`` artifact (``wsss cam export``) of the same images: walk its CAMs (:func:`cam_scores`)
            instead of the initial classifier's softmax (the SPML tag pipeline).
        cam_bg_power: α of the CAMs' background score (SPML code: 6).
        data, layout, split: override the dataset recorded in the seeds artifact.
        device: network and walk device: ``cpu`` (default), ``cuda``, ``cuda:N`` or ``auto``.
        workers: processes per rank (CPU only).
        resume: keep the images an interrupted run already finished (``out.parts/``).
        config: configuration recorded in the output (the CLI passes every option and the command line).
        net_loader: ``(run, device) -> (net, meta)``, :func:`load_embedding_net` (tests pass a stand-in).

    Returns:
        the output path.
    """
    opened = open_seeded_run(spml_run, seeds, data, layout, split, device, workers, net_loader)
    seeds_art, dataset, net, meta, ckpt, dev = (opened.seeds, opened.dataset, opened.net, opened.meta, opened.checkpoint,
                                                opened.device)
    out = Path(out)
    classes = seeds_art.classes
    k = len(classes)
    check_numbers([("--cam-bg-power", cam_bg_power, 0, None, {"low_open": True})])
    cam_art = None if cams is None else companion_artifact(cams, "cams", seeds_art, "CAMs",
                                                           "Pass the CAMs the seeds were made from (wsss cam export).")
    sources = StageInputs(files=[seeds_art.path, ckpt, cam_art.path if cam_art is not None else None],
                          folders=[run_directory(ckpt)], datasets=[dataset])
    if crf is not None:
        crf = crf.resolved()
    if config is None:
        config = {"stage": "spml-labels", "run": str(spml_run), "seeds": str(seeds_art.path), "out": str(out),
                  "walk": walk.to_dict(), "crf": None if crf is None else crf.to_dict(),
                  "cams": None if cam_art is None else str(cam_art.path), "cam_bg_power": cam_bg_power}

    def one(image_id: str, image: np.ndarray, label: np.ndarray):
        present = seeded_present_classes(seeds_art, image_id, label, k)
        check_walk_memory(image.shape[:2], walk, dev if dev.type == "cuda" else None)
        start = None if cam_art is None else cam_scores(cam_art, image_id, k, image.shape[:2], cam_bg_power)
        probs = image_pseudolabels(net, image, present, walk, dev, start)
        return refined_pseudolabels(out, seeds_art, dataset, image_id, probs, label, crf)

    inputs = [seeds_art.provenance(), {"path": str(ckpt), "kind": "run", "epoch": meta["epoch"]}]
    if cam_art is not None:
        inputs.append(cam_art.provenance())
    return write_pseudolabels(one, seeds_art, dataset, out, config=config, inputs=inputs, sources=sources,
                              workers=crf_workers(crf, workers), resume=resume, description="spml-labels")


__all__ = ["SPML_CRF", "SeededRun", "cam_scores", "companion_artifact", "open_seeded_run", "image_pseudolabels", "load_embedding_net",
           "present_classes", "refined_pseudolabels", "run", "seeded_present_classes"]
