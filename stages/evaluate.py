"""Stage ``eval``: compare an artifact with the dense ground truth of its dataset.

What is evaluated depends on the artifact kind, through a registry of *label readers*
(:data:`LABEL_READERS`, extended with :func:`register_label_reader`, e.g. for ``cams``):

- ``predictions``: the stored ``label`` (else the arg-max of ``scores``), every labelled
  ground-truth pixel: mIoU (J), pixel accuracy, per-class IoU, boundary F, J&F.
- ``pseudolabels``: the same with ``label`` / arg-max of ``probs``. With ``seeds`` (the seed
  artifact the solver started from) also mIoU and accuracy on the unlabelled pixels only (seed
  value 255): the pixels the solver had to infer. With ``reference`` (another soft artifact,
  e.g. a reference solver's pseudo-labels) also the soft Jaccard Σmin/Σmax over the set.
- ``seeds``: sparse, so only the labelled seed pixels are evaluated: seed precision (= pixel
  accuracy on labelled pixels), per-class IoU and mIoU restricted to them, and coverage (labelled
  fraction of the ground-truth-labelled pixels). Boundary F is not defined for sparse labels.

- ``cams`` (``wsss cam export``): the CAM pseudo-label at the background threshold ``t``
  (``cam_threshold``, default 0.25, the F threshold of docs/methods.md §6.7): arg-max over ``{t, r_c of the present
  classes}``, evaluated like ``predictions`` (J, accuracy, boundary F of docs/methods.md §8: mean over
  (image, class) pairs). Plus the background-threshold sweep of docs/methods.md §6.7 (hfpl code): J for t in
  0.00–0.59 (step 0.01) from one confusion per t over the set, the curve, its best t and J
  (:class:`wsss.cam.threshold_sweep.ThresholdSweep`). The hfpl code's set-accumulated F variant (docs/methods.md §6.7) is not
  computed.

``crf`` applies the DenseCRF of :mod:`wsss.stages.crf` to the soft scores first (the label is
then the arg-max of the marginals).

Aggregation: one K×K confusion matrix over the set (ignoring ground truth 255); boundary F per
(image, class) pair, averaged over all pairs (docs/metrics.md). Under ``torchrun`` every rank
evaluates ``ids[rank::world_size]``; the confusion matrices and a per-image table of F values are
summed over ranks with :func:`wsss.parallel.all_reduce_sum`, where each image's row is non-zero on
one rank only, so every figure is bit-identical for any worker count and world size.

Results are written as JSON (default ``<artifact stem>.metrics.json`` next to the artifact) with
the provenance of every input.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wsss import __version__
from wsss import metrics as M
from wsss.artifacts import Artifact
from wsss.crf import CRFParams, crf_workers
from wsss.data import Dataset, check_label_map, load_label_png
from wsss.errors import UserError
from wsss.locks import OutputLock
from wsss.parallel import all_reduce_sum, init_distributed, map_images, run_on_all_ranks, shard
from wsss.paths import StageInputs
from wsss.progress import progress_bar
from wsss.stages.artifact_inputs import SOFT_SCORES, check_ids, read_soft_scores, resolve_dataset
from wsss.stages.crf import refine
from wsss.validation import check_number, check_output_file


@dataclass
class Hard:
    """What a label reader returns for one image.

    Attributes:
        label: H×W uint8 hard labels (0..K-1; 255 = no label, allowed only for sparse kinds).
        scores: K×H×W soft scores when asked for and available, else None.
    """

    label: np.ndarray
    scores: np.ndarray | None = None


#: reader(artifact, image_id, num_classes, need_scores) -> Hard
LabelReader = Callable[[Artifact, str, int, bool], Hard]


@dataclass(frozen=True)
class ReaderSpec:
    """A registered label reader and how its labels are evaluated.

    Attributes:
        read: the reader.
        sparse: only pixels with a label (≠ 255) are evaluated; no boundary F.
        soft: the reader can return soft scores (needed by ``crf`` and ``reference``).
    """

    read: LabelReader
    sparse: bool = False
    soft: bool = False


LABEL_READERS: dict[str, ReaderSpec] = {}


def register_label_reader(kind: str, read: LabelReader, *, sparse: bool = False, soft: bool = False) -> None:
    """Teach ``wsss eval`` to evaluate another artifact kind (e.g. ``cams``: threshold → label)."""
    LABEL_READERS[kind] = ReaderSpec(read, sparse=sparse, soft=soft)


def _soft_reader(art: Artifact, image_id: str, num_classes: int, need_scores: bool) -> Hard:
    # always read (and so check) the scores: a label map stored next to NaN scores is no result either
    scores = read_soft_scores(art, image_id, num_classes)
    if art.has(image_id, "label"):
        label = art.read(image_id, "label")
    else:
        label = scores.argmax(axis=0).astype(np.uint8)
    return Hard(label, scores if need_scores else None)


def _seed_reader(art: Artifact, image_id: str, num_classes: int, need_scores: bool) -> Hard:
    return Hard(art.read(image_id, "label"))


register_label_reader("predictions", _soft_reader, soft=True)
register_label_reader("pseudolabels", _soft_reader, soft=True)
register_label_reader("seeds", _seed_reader, sparse=True)

#: background score t of the CAM pseudo-label evaluated besides the sweep (docs/methods.md §6.7: F at t = 0.25)
CAM_THRESHOLD = 0.25


def _cam_reader(art: Artifact, image_id: str, num_classes: int, need_scores: bool,
                threshold: float = CAM_THRESHOLD) -> Hard:
    from wsss.cam.threshold_sweep import cam_label
    from wsss.stages.cam import read_cams

    cams, classes = read_cams(art, image_id, num_classes)
    return Hard(cam_label(cams, classes, threshold))


register_label_reader("cams", _cam_reader)


def load_ground_truth(dataset: Dataset, image_id: str) -> np.ndarray:
    """Dense ground truth of one image as H×W uint8 (0..K-1, 255), values checked (the image
    itself is not read: its size is checked against the artifact instead)."""
    path = dataset.mask_path(image_id)
    if path is None or not Path(path).exists():
        return dataset.load_mask(image_id)  # raises the layout's own "no mask" error
    raw = dataset.convert_mask(load_label_png(path))
    return check_label_map(raw, dataset.num_classes, raw.shape, path)


def _shape_error(art: Artifact, image_id: str, what: str, shape, gt_path, gt_shape) -> UserError:
    return UserError(
        f"{art.path}: {what} of image '{image_id}' is {shape[1]}×{shape[0]} but its ground truth {gt_path} is "
        f"{gt_shape[1]}×{gt_shape[0]} (W×H). Evaluate against the dataset the artifact was made from (--data)."
    )


def _nan_to_none(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _region_report(conf: np.ndarray, classes: list[str]) -> dict:
    s = M.region_summary(conf)
    return {
        "miou": _nan_to_none(s["miou"]),
        "pixel_accuracy": _nan_to_none(s["pixel_accuracy"]),
        "pixels": s["pixels"],
        "iou": {name: _nan_to_none(float(v)) for name, v in zip(classes, s["iou"])},
        "confusion": conf.tolist(),
    }


def default_output(artifact: Path, crf: bool) -> Path:
    """``<dir>/<stem>.metrics.json`` (``<stem>.crf.metrics.json`` with ``--crf``)."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.stem + (".crf" if crf else "") + ".metrics.json")


def _accumulate(one, ids, workers, row, conf: M.ConfusionMatrix, conf_unl: M.ConfusionMatrix, valid_pixels, f_table,
                f_present, soft_table, description: str, show: bool, sweep=None) -> None:
    """Run ``one`` over ``ids`` and add its results into the accumulators (in place)."""
    with progress_bar(description, total=len(ids), enabled=show) as advance:
        for image_id, res in map_images(one, ids, workers):
            conf.add(res["conf"])
            valid_pixels += res["valid"]
            if "f" in res:
                present = ~np.isnan(res["f"])
                f_table[row[image_id]] = np.where(present, res["f"], 0.0)
                f_present[row[image_id]] = present
            if "conf_unlabelled" in res:
                conf_unl.add(res["conf_unlabelled"])
            if "soft" in res:
                soft_table[row[image_id]] = res["soft"]
            if "sweep" in res and sweep is not None:
                sweep.add(res["sweep"])
            advance(1)


def run(
    artifact: str | Path,
    *,
    data: str | Path | None = None,
    layout: str | None = None,
    split: str | None = None,
    seeds: str | Path | None = None,
    reference: str | Path | None = None,
    crf: CRFParams | None = None,
    bound_th: float = 0.008,
    partial: bool = False,
    workers: int = 1,
    out: str | Path | None = None,
    config: Mapping[str, Any] | None = None,
    cam_threshold: float = CAM_THRESHOLD,
) -> dict:
    """Evaluate an artifact against dense ground truth; write and return the metrics.

    Args:
        artifact: a ``predictions``, ``pseudolabels`` or ``seeds`` artifact (any registered kind).
        data, layout, split: override the dataset recorded in the artifact.
        seeds: a ``seeds`` artifact: also evaluate on its unlabelled pixels only.
        reference: a soft artifact (``predictions``/``pseudolabels``): also the soft Jaccard of
            the soft scores against it.
        crf: apply DenseCRF with these parameters before evaluating (soft kinds only).
        bound_th: boundary tolerance, fraction of the image diagonal (< 1) or pixels (≥ 1).
        partial: evaluate only the images the artifact holds; default: every image of the
            dataset split must be in the artifact.
        workers: processes per rank.
        out: JSON path; default :func:`default_output`. Written by rank 0 only.
        config: options recorded in the JSON (the CLI passes every option and the command line).
        cam_threshold: ``cams`` only: background score t of the evaluated pseudo-label (0.25).

    Returns:
        the metrics as written to the JSON (NaN written as null); ``"path"`` is the JSON path.
    """
    check_number("--bound-th", bound_th, 0, None, reason="a fraction of the diagonal below 1, pixels from 1")
    check_number("--cam-threshold", cam_threshold, 0, 1, reason="a background score")
    art = Artifact(artifact)
    spec = LABEL_READERS.get(art.kind)
    if spec is None:
        raise UserError(
            f"{art.path}: cannot evaluate a '{art.kind}' artifact. Pass one of: {', '.join(sorted(LABEL_READERS))}."
        )
    if crf is not None and not spec.soft:
        raise UserError(f"{art.path}: --crf needs class probabilities, a '{art.kind}' artifact has none. Drop --crf.")
    if reference is not None and not spec.soft:
        raise UserError(f"{art.path}: --reference compares soft scores, a '{art.kind}' artifact has none. Drop --reference.")
    dataset = resolve_dataset(art, data, layout, split)
    classes = art.classes
    k = len(classes)
    if k != dataset.num_classes or list(classes) != list(dataset.classes):
        raise UserError(
            f"{art.path}: its classes {classes[:4]}{'…' if k > 4 else ''} ({k}) differ from those of the dataset "
            f"{dataset.root} {dataset.classes[:4]}{'…' if dataset.num_classes > 4 else ''} ({dataset.num_classes}). "
            "Pass the dataset the artifact was made from (--data)."
        )
    check_ids(art, dataset, art.ids)
    if partial:
        ids = art.ids
    else:
        have = set(art.ids)
        missing = [i for i in dataset.ids if i not in have]
        if missing:
            raise UserError(
                f"{art.path}: has no result for {len(missing)} of the {len(dataset.ids)} images of {dataset.root} "
                f"[{dataset.split}] (e.g. '{missing[0]}'). Rerun the stage on the whole split, or pass --partial "
                "to evaluate only the images it holds."
            )
        ids = list(dataset.ids)
    seed_art = Artifact(seeds, kind="seeds") if seeds is not None else None
    ref_art = Artifact(reference, kind=tuple(SOFT_SCORES)) if reference is not None else None
    for extra in (seed_art, ref_art):
        if extra is None:
            continue
        if len(extra.classes) != k:
            raise UserError(f"{extra.path}: has {len(extra.classes)} classes, {art.path} has {k}. Pass artifacts of the same dataset.")
        have = set(extra.ids)
        missing = [i for i in ids if i not in have]
        if missing:
            raise UserError(
                f"{extra.path}: has no image '{missing[0]}' ({len(missing)} of the {len(ids)} evaluated are missing). "
                "Pass the artifact made for the same images."
            )
    path = Path(out) if out is not None else default_output(art.path, crf is not None)
    check_output_file(path)
    if not path.parent.exists():
        raise UserError(f"{path}: folder {path.parent} does not exist. Create it or choose another --out.")
    StageInputs(files=[a.path for a in (art, seed_art, ref_art) if a is not None], datasets=[dataset]).check_output(
        path, option="--out")
    dense = not spec.sparse
    need_scores = crf is not None or ref_art is not None
    is_cams = art.kind == "cams"
    if is_cams and not 0 <= cam_threshold <= 1:
        raise UserError(f"--cam-threshold {cam_threshold}: must be in [0, 1]. Fix the option.")
    if is_cams:
        from wsss.cam.threshold_sweep import ThresholdSweep
    sweep_total = ThresholdSweep(k) if is_cams else None

    def one(image_id: str) -> dict:
        if is_cams:
            from wsss.stages.cam import read_cams

            cams, cam_classes = read_cams(art, image_id, k)
            hard = _cam_reader(art, image_id, k, False, threshold=cam_threshold)
        else:
            hard = spec.read(art, image_id, k, need_scores)
        gt = load_ground_truth(dataset, image_id)
        gt_path = dataset.mask_path(image_id)
        label = hard.label
        if label.shape != gt.shape:
            raise _shape_error(art, image_id, "the label map", label.shape, gt_path, gt.shape)
        if hard.scores is not None and hard.scores.shape[1:] != gt.shape:
            raise _shape_error(art, image_id, "the score map", hard.scores.shape[1:], gt_path, gt.shape)
        if crf is not None:
            label = refine(art, dataset, image_id, crf, k, scores=hard.scores).argmax(axis=0).astype(np.uint8)
        valid = gt != M.IGNORE_INDEX
        result: dict[str, Any] = {"valid": int(valid.sum())}
        where = label != M.IGNORE_INDEX if spec.sparse else None
        if dense:
            bad = valid & (label >= k)
            if bad.any():
                raise UserError(
                    f"{art.path}: label map of image '{image_id}' has values {np.unique(label[bad])[:5].tolist()} "
                    f"outside 0..{k - 1} at labelled pixels. Recreate the artifact."
                )
        elif ((label >= k) & (label != M.IGNORE_INDEX)).any():
            raise UserError(f"{art.path}: image '{image_id}' has labels outside 0..{k - 1} and 255. Recreate the artifact.")
        result["conf"] = M.ConfusionMatrix(k).update(gt, label, mask=where).matrix
        if dense:
            result["f"] = M.boundary_f(gt, label, k, bound_th=bound_th)[2]
        if seed_art is not None:
            seed = seed_art.read(image_id, "label")
            if seed.shape != gt.shape:
                raise _shape_error(seed_art, image_id, "the seed map", seed.shape, gt_path, gt.shape)
            unl = seed == M.IGNORE_INDEX
            if where is not None:
                unl &= where
            result["conf_unlabelled"] = M.ConfusionMatrix(k).update(gt, label, mask=unl).matrix
        if ref_art is not None:
            ref = read_soft_scores(ref_art, image_id, k)
            if ref.shape != hard.scores.shape:
                raise UserError(
                    f"{ref_art.path}: scores of image '{image_id}' have shape {ref.shape}, {art.path} has "
                    f"{hard.scores.shape}. Pass a reference made for the same images."
                )
            result["soft"] = np.array(M.soft_jaccard_sums(hard.scores, ref))
        if is_cams:
            result["sweep"] = ThresholdSweep(k).update(cams, cam_classes, gt).confusions
        return result

    ctx = init_distributed()
    mine = shard(ids, ctx)
    row = {image_id: i for i, image_id in enumerate(ids)}
    conf = M.ConfusionMatrix(k)
    conf_unl = M.ConfusionMatrix(k)
    valid_pixels = np.zeros(1, np.int64)
    # per-image tables: each row is filled on exactly one rank, so the all-reduce sum is exact
    f_table = np.zeros((len(ids), k), np.float64)
    f_present = np.zeros((len(ids), k), np.int64)
    soft_table = np.zeros((len(ids), 2), np.float64)
    # every rank learns whether one failed, so none waits forever in the all-reduces below
    run_on_all_ranks(lambda: _accumulate(
        one, mine, crf_workers(crf, workers), row, conf, conf_unl, valid_pixels, f_table, f_present, soft_table,
        "eval" + (" + crf" if crf is not None else ""), ctx.is_main, sweep=sweep_total))
    conf.all_reduce()
    conf_unl.all_reduce()
    valid_pixels = all_reduce_sum(valid_pixels)
    f_table = all_reduce_sum(f_table)
    f_present = all_reduce_sum(f_present)
    soft_table = all_reduce_sum(soft_table)
    if sweep_total is not None:
        sweep_total.all_reduce()

    region = _region_report(conf.matrix, classes)
    report: dict[str, Any] = {
        "kind": "metrics",
        "wsss_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "artifact": art.provenance(),
        "artifact_kind": art.kind,
        "dataset": dataset.describe(),
        "config": dict(config) if config is not None else {
            "stage": "eval", "artifact": str(art.path), "crf": crf.to_dict() if crf else None,
            "bound_th": bound_th, "partial": partial,
        },
        "images": len(ids),
        "classes": list(classes),
        "evaluated_pixels": "labelled seed pixels only" if spec.sparse else "all pixels with a ground-truth label",
        "miou_convention": M.MIOU_CONVENTION,
        "crf": crf.to_dict() if crf is not None else None,
        **{key: region[key] for key in ("miou", "pixel_accuracy", "pixels", "iou")},
    }
    if dense:
        pairs = int(f_present.sum())
        f_mean = float(f_table.sum() / pairs) if pairs else math.nan
        per_class = f_present.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            f_class = np.where(per_class > 0, f_table.sum(axis=0) / np.maximum(per_class, 1), np.nan)
        jf = M.j_and_f(region["miou"], f_mean) if region["miou"] is not None else math.nan
        report.update(
            {
                "f": _nan_to_none(f_mean),
                "jf": _nan_to_none(jf),
                "f_per_class": {name: _nan_to_none(float(v)) for name, v in zip(classes, f_class)},
                "f_pairs": pairs,
                "f_convention": M.F_CONVENTION,
                "bound_th": bound_th,
            }
        )
    else:
        total = int(valid_pixels[0])
        report.update(
            {
                "seed_precision": region["pixel_accuracy"],
                "coverage": _nan_to_none(region["pixels"] / total) if total else None,
                "f": None,
                "jf": None,
            }
        )
    if seed_art is not None:
        report["seeds"] = seed_art.provenance()
        report["unlabelled"] = {key: v for key, v in _region_report(conf_unl.matrix, classes).items()}
    if ref_art is not None:
        lo, hi = soft_table[:, 0].sum(), soft_table[:, 1].sum()
        report["reference"] = ref_art.provenance()
        report["soft_jaccard"] = float(lo / hi) if hi > 0 else 1.0
    if sweep_total is not None:
        swept = sweep_total.result()
        report["cam"] = {
            "threshold": cam_threshold,
            "label": "arg-max over {t, CAMs of the image's tagged classes}; J/F above are at this t",
            "sweep": {"thresholds": [float(t) for t in swept.thresholds], "j": [_nan_to_none(float(v)) for v in swept.j],
                      "best_threshold": swept.best_threshold, "best_j": _nan_to_none(swept.best_j),
                      "convention": "one confusion over the set per t (GT 255 ignored), mean IoU over classes "
                                    "present in GT or prediction (docs/methods.md §6.7, hfpl code)"},
        }
    report["confusion"] = region["confusion"]

    report["path"] = str(path)
    if ctx.is_main:
        with OutputLock(path):  # a concurrent eval to the same file refuses instead of mixing the two
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
            os.replace(tmp, path)
    return report


__all__ = ["Hard", "LABEL_READERS", "ReaderSpec", "default_output", "load_ground_truth", "register_label_reader", "run"]
