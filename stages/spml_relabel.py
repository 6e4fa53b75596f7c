"""Stage ``spml-relabel``: SPML's cross-image nearest-neighbour relabelling, the tag pipeline's refinement of
pseudo-labels (Ke et al. 2021, appendix A.4 and the SPML code's tag script; docs/methods.md §10.6).

Reads a SPML embedding run (``wsss train --loss spml``), the pseudo-labels to refine (``label`` of a
``pseudolabels`` artifact — round 1: ``wsss spml-labels`` on CAM seeds — or of a ``predictions`` artifact —
round 2: the round-1 final classifier's ``wsss predict`` on the training images) and the ``seeds`` artifact
(which classes each image holds: the CAM seeds for tags). Then:

1. the memory: the labelled k-means prototypes of every image (:func:`wsss.spml.relabel.labelled_prototypes`),
   computed once in each process before the per-image work;
2. per image: the top-k votes of its own clusters at several scales and mirrored, normalised per class
   (:func:`wsss.spml.relabel.relabel_scores`), refined by DenseCRF with SPML's parameters through the crf stage
   (:func:`wsss.stages.crf.refine`; ``crf=None`` skips it).

Writes an ordinary ``pseudolabels`` artifact (``probs`` K×H×W float16, ``label`` H×W uint8, per image
``seeded``, ``changed`` = fraction of pixels whose label differs from the input's, ``crf_changed``), for
``wsss train --loss pseudo --init-from SPML_RUN`` (the final classifier of that round), ``wsss eval``, ``wsss show``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsss.constants import IGNORE_INDEX
from wsss.crf import CRFParams, crf_workers
from wsss.errors import UserError
from wsss.paths import StageInputs
from wsss.progress import progress_bar
from wsss.spml.random_walk import SPML_CRF
from wsss.spml.relabel import RelabelConfig, labelled_prototypes, relabel_scores
from wsss.stages.pseudolabel_writer import write_pseudolabels
from wsss.stages.spml_labels import (companion_artifact, load_embedding_net, open_seeded_run, refined_pseudolabels,
                                     seeded_present_classes)
from wsss.training.run import run_directory

#: artifact kinds whose ``label`` map can be relabelled
LABEL_KINDS = ("pseudolabels", "predictions")


def _tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().to(device)


def run(
    spml_run: str | os.PathLike,
    labels: str | os.PathLike,
    seeds: str | os.PathLike,
    out: str | os.PathLike,
    *,
    relabel: RelabelConfig = RelabelConfig(),
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
    """Relabel the pseudo-labels of every image of a seeds artifact (module docstring).

    Args:
        spml_run: run directory (or checkpoint) of ``wsss train --loss spml``.
        labels: ``pseudolabels`` or ``predictions`` artifact with a ``label`` map of every image of the seeds.
        seeds: ``seeds`` artifact: the images and which classes each holds.
        out: output ``pseudolabels`` artifact (must differ from the inputs).
        relabel: relabelling options.
        crf: DenseCRF parameters (default :data:`~wsss.spml.random_walk.SPML_CRF`), or None for no CRF.
        data, layout, split: override the dataset recorded in the seeds artifact.
        device: network device: ``cpu`` (default), ``cuda``, ``cuda:N`` or ``auto``.
        workers: processes per rank (CPU only) for the per-image step.
        resume: keep the images an interrupted run already finished (``out.parts/``).
        config: configuration recorded in the output (the CLI passes every option and the command line).
        net_loader: ``(run, device) -> (net, meta)``, :func:`~wsss.stages.spml_labels.load_embedding_net`.

    Returns:
        the output path.
    """
    opened = open_seeded_run(spml_run, seeds, data, layout, split, device, workers, net_loader)
    seeds_art, dataset, net, meta, ckpt, dev = (opened.seeds, opened.dataset, opened.net, opened.meta, opened.checkpoint,
                                                opened.device)
    classes = seeds_art.classes
    k = len(classes)
    ids = seeds_art.ids
    label_art = companion_artifact(labels, LABEL_KINDS, seeds_art, "labels",
                                   "Pass pseudo-labels (or predictions) of the same images and classes.")
    sources = StageInputs(files=[seeds_art.path, label_art.path, ckpt], folders=[run_directory(ckpt)], datasets=[dataset])
    if crf is not None:
        crf = crf.resolved()
    if config is None:
        config = {"stage": "spml-relabel", "run": str(spml_run), "labels": str(label_art.path),
                  "seeds": str(seeds_art.path), "out": str(out), "relabel": relabel.to_dict(),
                  "crf": None if crf is None else crf.to_dict()}
    sources.check_output(out)

    def embed(x: torch.Tensor) -> torch.Tensor:
        return net(x)[0]

    def read_labels(image_id: str, shape: tuple[int, int]) -> np.ndarray:
        lab = label_art.read(image_id, "label")
        if lab.shape != shape:
            raise UserError(f"{label_art.path}: labels of image '{image_id}' are {lab.shape[1]}×{lab.shape[0]} but the "
                            f"image is {shape[1]}×{shape[0]} (W×H). Pass labels made at image size of this dataset.")
        return lab

    protos, proto_labels = [], []
    from wsss.parallel import distributed_context

    with torch.no_grad(), progress_bar("spml-relabel memory", total=len(ids), enabled=distributed_context().is_main) as advance:
        for image_id in ids:
            image = dataset.load_image(image_id)
            lab = torch.from_numpy(read_labels(image_id, image.shape[:2]).astype(np.int64)).to(dev)
            lab = torch.where(lab < k, lab, torch.full_like(lab, IGNORE_INDEX))
            p, pl = labelled_prototypes(embed, _tensor(image, dev), lab, relabel, k)
            protos.append(p)
            proto_labels.append(pl)
            advance(1)
    memory, memory_labels = torch.cat(protos), torch.cat(proto_labels)
    if memory.shape[0] == 0:
        raise UserError(f"{label_art.path}: labels no pixel of any image, so there is nothing to retrieve. "
                        "Pass pseudo-labels with labelled pixels.")

    def one(image_id: str, image: np.ndarray, label: np.ndarray):
        present = seeded_present_classes(seeds_art, image_id, label, k)
        with torch.no_grad():
            probs = relabel_scores(embed, _tensor(image, dev), torch.from_numpy(present), memory, memory_labels,
                                   relabel).cpu().numpy()
        arrays, attrs = refined_pseudolabels(Path(out), seeds_art, dataset, image_id, probs, label, crf)
        attrs["changed"] = float(np.mean(arrays["label"] != read_labels(image_id, image.shape[:2])))
        return arrays, attrs

    inputs = [seeds_art.provenance(), label_art.provenance(), {"path": str(ckpt), "kind": "run", "epoch": meta["epoch"]}]
    return write_pseudolabels(one, seeds_art, dataset, out, config=config, inputs=inputs, sources=sources,
                              workers=crf_workers(crf, workers), resume=resume, description="spml-relabel")


__all__ = ["LABEL_KINDS", "run"]
