"""Stage ``spml-labels``: SPML random-walk pseudo-labels (Ke et al., ICLR 2021; docs/methods.md §10.5).

Reads a SPML embedding run (``wsss train --loss spml``: embedding network + initial classifier), a
``seeds`` artifact (the seeds the run was trained on: scribbles, clicks or CAM seeds) and the images of the
seeds' dataset. Per image:

1. the network runs on the image and its mirror; the initial classifier's softmax and the unit embeddings
   are taken to the grid at 1/8 of the image size (:func:`wsss.spml.random_walk.random_walk_scores`);
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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsss.artifacts import Artifact
from wsss.constants import IGNORE_INDEX
from wsss.crf import CRFParams, crf_workers
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
from wsss.validation import check_finite_arrays


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


@torch.no_grad()
def image_pseudolabels(net, image: np.ndarray, present: np.ndarray, walk: RandomWalkConfig,
                       device: torch.device) -> np.ndarray:
    """Random-walk class distributions of one image, before the CRF.

    Args:
        net: :data:`~wsss.spml.random_walk.EmbedFn`.
        image: ``H×W×3`` uint8 RGB.
        present: ``K`` bool, the classes of the image's seed map.
        walk: walk options.
        device: where the network and the walk run.

    Returns:
        ``K×H×W`` float32, summing to 1 per pixel.
    """
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().to(device)
    pres = torch.from_numpy(present)[None].to(device)
    scores = random_walk_scores(net, x, pres, walk)
    return walk_probabilities(scores, image.shape[:2])[0].cpu().numpy()


def run(
    spml_run: str | os.PathLike,
    seeds: str | os.PathLike,
    out: str | os.PathLike,
    *,
    walk: RandomWalkConfig = RandomWalkConfig(),
    crf: CRFParams | None = SPML_CRF,
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
        data, layout, split: override the dataset recorded in the seeds artifact.
        device: network and walk device: ``cpu`` (default), ``cuda``, ``cuda:N`` or ``auto``.
        workers: processes per rank (CPU only).
        resume: keep the images an interrupted run already finished (``out.parts/``).
        config: configuration recorded in the output (the CLI passes every option and the command line).
        net_loader: ``(run, device) -> (net, meta)``, :func:`load_embedding_net` (tests pass a stand-in).

    Returns:
        the output path.
    """
    seeds_art = Artifact(seeds, kind="seeds")
    out = Path(out)
    dataset = resolve_dataset(seeds_art, data, layout, split)
    classes = seeds_art.classes
    k = len(classes)
    if k != dataset.num_classes:
        raise UserError(f"{seeds_art.path}: has {k} classes but the dataset {dataset.root} has {dataset.num_classes}. "
                        "Pass the dataset the seeds were made for (--data).")
    ids = seeds_art.ids
    check_ids(seeds_art, dataset, ids)
    dev = resolve_device(device, workers)
    net, meta = net_loader(spml_run, dev)
    ckpt = Path(meta["checkpoint"])
    if list(meta["classes"]) != list(classes):
        raise UserError(f"{spml_run}: was trained on the classes {list(meta['classes'])}, the seeds {seeds_art.path} "
                        f"have {list(classes)}. Pass the seeds of the run's dataset.")
    sources = StageInputs(files=[seeds_art.path, ckpt], folders=[run_directory(ckpt)], datasets=[dataset])
    if crf is not None:
        crf = crf.resolved()
    if config is None:
        config = {"stage": "spml-labels", "run": str(spml_run), "seeds": str(seeds_art.path), "out": str(out),
                  "walk": walk.to_dict(), "crf": None if crf is None else crf.to_dict()}

    def one(image_id: str, image: np.ndarray, label: np.ndarray):
        present = present_classes(label, k)
        if not present.any():
            raise UserError(f"{seeds_art.path}: image '{image_id}' has no labelled pixel, so no class is known to be "
                            "present and its pseudo-labels would be empty. Pass seeds that label every image.")
        check_walk_memory(image.shape[:2], walk, dev if dev.type == "cuda" else None)
        probs = image_pseudolabels(net, image, present, walk, dev)
        walk_label = probs.argmax(axis=0)
        if crf is not None:
            probs = crf_stage.refine(seeds_art, dataset, image_id, crf, k, scores=probs)
        arg = probs.argmax(axis=0).astype(np.uint8)
        arrays = {"probs": probs.astype(np.float16), "label": arg}
        check_finite_arrays(out, image_id, arrays)
        attrs = {"seeded": float(np.mean(label != IGNORE_INDEX)), "crf_changed": float(np.mean(arg != walk_label))}
        return arrays, attrs

    inputs = [seeds_art.provenance(), {"path": str(ckpt), "kind": "run", "epoch": meta["epoch"]}]
    return write_pseudolabels(one, seeds_art, dataset, out, config=config, inputs=inputs, sources=sources,
                              workers=crf_workers(crf, workers), resume=resume, description="spml-labels")


__all__ = ["SPML_CRF", "image_pseudolabels", "load_embedding_net", "present_classes", "run"]
