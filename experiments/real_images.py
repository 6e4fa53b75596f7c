#!/usr/bin/env python3
"""Real-image results: every scribble, click and block method of wsss on one dataset, one table.

Usage::

    python experiments/real_images.py DATA OUT [--device cpu|cuda] [--quick] [--methods pce,collision]
        [--annotations scribbles,clicks] [--tables main,robustness] [--budget-minutes 15] [--epochs N]
        [--crop-size N] [--backbone NAME] [--weights packaged|none|FILE] [--batch-size N] [--threads 1]
        [--seeds 0,1] [--annotation-seed 0] [--search [--search-grid main]]
        [--tuned] [--update-doc docs/results.md]

DATA is a dataset with dense train and val masks in the generic layout (``DATA/train/images``,
``DATA/train/masks``, ``DATA/val/...``, ``DATA/classes.txt``), e.g. the CamVid test bed. Everything
the script makes goes under OUT:

    OUT/seeds/<annotation>.h5              weak annotations generated from the train masks
    OUT/runs/<method>@<annotation>/        one folder per table cell:
        train/                             the run directory of ``wsss train`` (config.json, last.pt, ...)
        status.json                        state (running / done / budget), training seconds, settings
        val.h5, val.metrics.json           predictions on val and their evaluation
        val.crf.metrics.json               the same after DenseCRF post-processing
    OUT/results.json, OUT/results.md       the tables (rebuilt from every finished run on each call)
    OUT/search/..., OUT/search.json, OUT/search.md   with --search

Annotations (all generated from the train masks with :mod:`wsss.stages.prepare`, seed ``--seed``):

- ``scribbles``: ``prepare-scribbles`` skeleton scribbles (one per object of at least 0.2 % of the
  image, 1 px wide on 240×180 frames: the human-like default, ≈ 3 % of the CamVid pixels), length ratio 1.0;
- ``scribbles-0.3``: the same shortened to the centred 30 % of each scribble;
- ``clicks``: ``prepare-scribbles --length-ratio 0`` (each scribble shrinks to its middle point) — the
  papers' "length ratio 0";
- ``blocks``: ``prepare-blocks`` (32 px blocks, half of them kept with their dense labels; fragments below
  the object rule's minimum unlabelled).

Every method trains with the same default weights on every annotation: each loss term is its own mean
(pCE over the seed pixels), so a weight means the same at any seed density.

Methods (``wsss train --loss ...`` with the toolkit defaults, docs/methods.md, unless ``--tuned``):
``full`` (dense masks, the upper bound), ``full-balanced`` (``full --class-weights median-frequency``),
``pce``, ``gridcrf``, ``densecrf``, ``ncut``, ``kernelcut``,
``collision`` (soft self-labeling), ``collision-hard`` (``--hard``), ``proposals`` (offline: the pce
model predicts on train → ``solve`` → ``train --loss pseudo``) and ``solver`` (``solve --init uniform``
from the seeds alone, no network: its row is the pseudo-label mIoU on **train**), ``urss-1`` / ``urss-2``
(``--loss urss`` phase 1, and phase 2 started from that phase-1 run; SLIC pseudo-boundaries from
``wsss superpixels`` of the train images, OUT/superpixels.h5), ``urss-net-pce`` (the control: the URSS network
trained by phase 1 with ω₁ = 0, i.e. pCE alone), ``spml`` (``--loss spml`` embedding run on the
seeds and the SLIC regions → ``wsss spml-labels`` random-walk pseudo-labels on train → the final classifier on
the frozen embedding, ``train --loss pseudo --hard --init-from`` with the SPML code's grayscale and blur
augmentations; main table and, asked for by name, the
robustness table). ``full`` trains the same network with plain
cross-entropy over every labelled pixel of the dense masks (void ignored, no class weights — the same loss
as ``pce`` on all pixels, so rare classes weigh as their pixel share, as for every other method): the upper
bound of the same schedule for pixel accuracy, but in a short schedule it ignores the rare classes that the
seeds (one scribble per object) over-sample; ``full-balanced`` weighs each class by median frequency
balancing (docs/methods.md §3.1, SegNet's CamVid setting), the upper bound for mIoU. The main table's ``full``, ``pce``, ``densecrf`` and ``collision`` train once
per ``--seeds`` value (mean and range); every other cell with the first seed. The annotations are the
same for every seed (``--annotation-seed``).

Every training run gets the same schedule (backbone and its weights, crop, batch, epochs, threads);
``--budget-minutes`` caps the training time of one run (CPU time of the process on a CPU, wall time on a
GPU; measured across invocations): a run over the cap stops after the epoch in
progress, is evaluated from its last checkpoint and is flagged in the table. Finished runs are skipped;
an interrupted run resumes from its last epoch (``train --resume``) and interrupted artifacts from their
partial file (``--resume`` of the per-image stages), so the tables can be built over several calls.

mIoU, pixel accuracy, per-class IoU and boundary F are fractions in [0, 1] in ``results.json`` (as
``wsss eval`` writes them) and percentages in ``results.md``. Deterministic given ``--seed`` (except
the time-capped runs, whose stopping epoch depends on the machine's speed; the table says so).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from wsss.losses.conversion import DEMO_TUNING
from wsss.losses.defaults import LR_RL, N_RL

#: The table's methods, in order (see the module docstring).
METHODS = ("full", "full-balanced", "pce", "gridcrf", "densecrf", "ncut", "kernelcut", "collision", "collision-hard", "proposals", "solver",
           "urss-net-pce", "urss-1", "urss-2", "spml")
#: Robustness rows beyond :data:`ROBUST_METHODS` (asked for by name with --methods): SPML on clicks.
EXTRA_ROBUST_METHODS = ("spml",)
#: Robustness table: these methods on every annotation.
ROBUST_METHODS = ("pce", "densecrf", "collision")
ANNOTATIONS = ("scribbles", "scribbles-0.3", "clicks", "blocks")
ANNOTATION_HELP = {
    "scribbles": "prepare-scribbles, length ratio 1.0 (one per object ≥ 0.2 % of the image)",
    "scribbles-0.3": "prepare-scribbles --length-ratio 0.3",
    "clicks": "prepare-scribbles --length-ratio 0 (one click per scribble)",
    "blocks": "prepare-blocks (32 px blocks, keep 0.5)",
}
TABLES = ("main", "robustness")

#: Budgets (second edition). ``cpu``: one run in ≤ 15 min of CPU time on one thread of the 2-core CI-class
#: machine (two runs side by side fill it): EfficientNet-Lite0 with its packaged ImageNet weights
#: (``--weights packaged``, the ``wsss train`` default), a light DeepLabV3+ head (64 channels), 10 epochs of
#: 8 × 128² crops (460 iterations on CamVid's 367 frames; ≈ 3.5 min of CPU time for pce); ``cuda``: one GPU, a larger budget;
#: ``quick``: a smoke test (seconds per run, random init), never a result.
#: lr of the cpu budget: 2e-3, chosen on CamVid val for the pretrained backbone among the converted demo lr
#: (the demo search's 0.02 under the earlier shared-Z normalization × 972.92 seeds / 31549.36 valid pixels
#: per batch = 6.17e-4, wsss.losses.conversion.DEMO_TUNING, tuned for a random-init backbone), 2e-3 and 6e-3:
#: full 35.1 / 38.9 / 40.3 % and pce – / 42.0 / 41.1 % val mIoU (docs/results.md, "Budgets"); 2e-3 kept as the
#: one that is not worse for pce and nearer the converted value. The quick budget keeps the converted lr.
CPU_LR = 2e-3
QUICK_LR = DEMO_TUNING.lr(0.02)
#: lr of the cuda budget: rloss's 0.007 in the toolkit's form (its total is divided by its batch 12 once
#: more): 0.007 / 12 = 5.8e-4 (docs/methods.md §3.3).
CUDA_LR = LR_RL / N_RL
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": dict(backbone="efficientnet_lite0", weights="packaged", width_mult=1.0, head_channels=64, crop_size=128,
                batch_size=8, epochs=10, lr=CPU_LR, budget_minutes=15.0, solver_steps=10, threads=1,
                limit_train=None, limit_val=None),
    "cuda": dict(backbone="efficientnet_lite0", weights="packaged", width_mult=1.0, head_channels=256, crop_size=240,
                 batch_size=12, epochs=60, lr=CUDA_LR, budget_minutes=60.0, solver_steps=None, threads=None,
                 limit_train=None, limit_val=None),
    "quick": dict(backbone="mobilenet_v2", weights="none", width_mult=0.25, head_channels=16, crop_size=32, batch_size=2,
                  epochs=1, lr=QUICK_LR, budget_minutes=2.0, solver_steps=5, threads=None, limit_train=6, limit_val=3),
}
#: Methods trained with every seed of ``--seeds`` (mean and spread in the table); the others with the first.
MULTI_SEED_METHODS = ("full", "pce", "densecrf", "collision")
#: lr of URSS phase 2 relative to phase 1: the URSS code's scripts pass 1e-4 then 1e-5, a tenth (docs/methods.md §9).
URSS_PHASE2_LR_FACTOR = 0.1
QUICK_METHODS = ("pce", "collision")

#: Evaluation CRF (``wsss eval --crf``): DeepLab's Gaussian kernel; the bilateral kernel narrowed for
#: 240×180 images as measured in docs/metrics.md ("Small images": sxy 50, compat 5 keeps 92 % of an
#: ideal input, the VOC defaults 58 %).
CRF_BI_SXY = 50.0
CRF_BI_COMPAT = 5.0


#: Methods with a regularizer weight: searched by ``--search-grid main``.
WEIGHTED_METHODS = ("gridcrf", "densecrf", "ncut", "kernelcut", "collision", "collision-hard")


def default_weights(method: str) -> dict[str, float]:
    """The toolkit's default regularizer weights of ``method`` (the same for every annotation: each loss
    term is its own mean, docs/methods.md §2)."""
    from wsss.losses.registry import GRIDCRF_LAMBDA, default_dense_weight
    from wsss.potts.solver import SolverConfig

    if method == "gridcrf":
        return {"lam": GRIDCRF_LAMBDA}
    if method in ("densecrf", "ncut", "kernelcut"):
        return {"lam": default_dense_weight(method)}
    if method in ("collision", "collision-hard"):
        return {"lam": SolverConfig.lam, "eta": SolverConfig.eta}
    return {}


def default_values(method: str) -> dict[str, float]:
    """Every searchable parameter of ``method`` at the toolkit's default (the middle value of each grid):
    the weights of :func:`default_weights`, the colour bandwidths and the self-labeling warm-up fraction."""
    from wsss.losses.densecrf import DENSECRF_SIGMA_RGB
    from wsss.losses.registry import SelfLabelingLoss
    from wsss.potts.neighbourhoods import DEFAULT_BANDWIDTH

    out = dict(default_weights(method))
    if method == "gridcrf":
        out["bandwidth"] = DEFAULT_BANDWIDTH
    elif method in ("densecrf", "ncut", "kernelcut"):
        out["sigma_rgb"] = DENSECRF_SIGMA_RGB
    elif method in ("collision", "collision-hard"):
        out["bandwidth"] = DEFAULT_BANDWIDTH
        out["warmup_fraction"] = SelfLabelingLoss.default_warmup_fraction
    return out


def search_grids() -> dict[str, dict[str, dict[str, list[float]]]]:
    """``grid name → method → {parameter: 3 values}``: an equal, small search per method.

    ``main``: the weight λ of the method's regularizer, a factor 3 around the toolkit default; ``bandwidth``: the colour bandwidth; ``warmup``: the pCE warm-up as a fraction of
    the epochs (self-labeling only: the paper's length is unknown).
    """

    def around(x: float) -> list[float]:
        return [x / 3.0, x, x * 3.0]

    return {
        "main": {m: {"lam": around(default_weights(m)["lam"])} for m in WEIGHTED_METHODS},
        "bandwidth": {
            "gridcrf": {"bandwidth": [5.0, 9.0, 15.0]},
            "densecrf": {"sigma_rgb": [8.0, 15.0, 30.0]},
            "ncut": {"sigma_rgb": [8.0, 15.0, 30.0]},
            "kernelcut": {"sigma_rgb": [8.0, 15.0, 30.0]},
            "collision": {"bandwidth": [5.0, 9.0, 15.0]},
            "collision-hard": {"bandwidth": [5.0, 9.0, 15.0]},
        },
        "warmup": {
            "collision": {"warmup_fraction": [0.0, 0.2, 0.4]},
            "collision-hard": {"warmup_fraction": [0.0, 0.2, 0.4]},
        },
    }






# ---------------------------------------------------------------------------------------------
# small helpers


def log(message: str) -> None:
    stamp = _dt.datetime.now().strftime("%H:%M:%S")
    print(f"[real_images {stamp}] {message}", flush=True)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def write_json(path: Path, value: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class BudgetExceeded(Exception):
    """Raised from the epoch callback when a run has used its training-time budget."""


def machine() -> dict[str, Any]:
    import torch

    import wsss

    info: dict[str, Any] = {
        "host_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
        "python": platform.python_version(), "torch": torch.__version__, "wsss": wsss.__version__,
        "cpu": platform.processor() or platform.machine(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        root = Path(__file__).resolve().parent.parent
        info["git_commit"] = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                                            text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    return info


# ---------------------------------------------------------------------------------------------
# settings


@dataclasses.dataclass
class Settings:
    data: Path
    out: Path
    device: str
    preset: str
    backbone: str
    weights: str
    width_mult: float
    head_channels: int
    crop_size: int
    batch_size: int
    epochs: int
    lr: float
    budget_minutes: float
    solver_steps: int | None
    limit_train: int | None
    limit_val: int | None
    seed: int
    seeds: tuple[int, ...]
    annotation_seed: int
    threads: int | None
    workers: int
    crf_bi_sxy: float
    crf_bi_compat: float
    tuned: bool

    def schedule(self) -> dict[str, Any]:
        """What every training run shares (the table header)."""
        return {"backbone": self.backbone, "weights": self.weights, "width_mult": self.width_mult, "head_channels": self.head_channels,
                "crop_size": self.crop_size, "batch_size": self.batch_size, "epochs": self.epochs,
                "lr": self.lr, "budget_minutes": self.budget_minutes, "solver_steps": self.solver_steps, "seed": self.seed,
                "seeds": list(self.seeds), "annotation_seed": self.annotation_seed, "threads": self.threads,
                "device": self.device}


def settings_from_args(args: argparse.Namespace) -> Settings:
    preset = "quick" if args.quick else ("cuda" if args.device.startswith("cuda") else "cpu")
    p = dict(PRESETS[preset])
    for key in ("backbone", "weights", "width_mult", "head_channels", "crop_size", "batch_size", "epochs", "lr",
                "budget_minutes", "solver_steps", "threads", "limit_train", "limit_val"):
        value = getattr(args, key, None)
        if value is not None:
            p[key] = value
    seeds = tuple(int(x) for x in (args.seeds or ("0" if args.quick else "0,1")).split(","))
    return Settings(data=Path(args.data), out=Path(args.out), device=args.device, preset=preset, seed=seeds[0],
                    seeds=seeds, annotation_seed=args.annotation_seed, workers=args.workers, crf_bi_sxy=args.crf_bi_sxy, crf_bi_compat=args.crf_bi_compat,
                    tuned=args.tuned, **p)


# ---------------------------------------------------------------------------------------------
# data


def dataset_root(s: Settings) -> Path:
    """DATA itself, or (with a limit on the images) OUT/data: the first N images per split, linked."""
    from wsss.data import open_dataset

    if s.limit_train is None and s.limit_val is None:
        return s.data
    root = s.out / "data"
    done = root / ".complete"
    if done.exists():
        return root
    if root.exists():
        shutil.rmtree(root)
    for split, limit in (("train", s.limit_train), ("val", s.limit_val)):
        ds = open_dataset(s.data, layout="generic", split=split)
        ids = list(ds.ids)[: limit] if limit is not None else list(ds.ids)
        for sub in ("images", "masks"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        for image_id in ids:
            image = Path(ds.image_path(image_id)).resolve()
            mask = Path(ds.mask_path(image_id)).resolve()
            os.symlink(image, root / split / "images" / image.name)
            os.symlink(mask, root / split / "masks" / mask.name)
    classes = s.data / "classes.txt"
    if classes.exists():
        shutil.copyfile(classes, root / "classes.txt")
    done.write_text("")
    log(f"image subset: {s.limit_train} train / {s.limit_val} val images of {s.data} linked into {root}")
    return root


def prepare_seeds(s: Settings, data: Path, annotation: str) -> Path:
    from wsss.stages import prepare

    path = s.out / "seeds" / f"{annotation}.h5"
    if path.exists():
        log(f"skip prepare {annotation}: {path} exists")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    log(f"prepare {annotation} ({ANNOTATION_HELP[annotation]}) → {path}")
    common = dict(layout="generic", split="train", seed=s.annotation_seed, workers=s.workers, resume=True)
    if annotation == "blocks":
        prepare.run_blocks(data, path, **common)
    else:
        ratio = {"scribbles": 1.0, "scribbles-0.3": 0.3, "clicks": 0.0}[annotation]
        prepare.run_scribbles(data, path, length_ratio=ratio, **common)
    return path


#: The SPML annotation type (``--spml-annotation``: relation weights and κ) of each generated annotation.
SPML_ANNOTATION = {"scribbles": "scribbles", "scribbles-0.3": "scribbles", "clicks": "points", "blocks": "scribbles"}


def spml_cell(s: Settings, data: Path, annotation: str, run_dir: Path, seeds: Path, record: dict[str, Any]) -> dict[str, Any]:
    """The SPML pipeline of one cell: the embedding run (``wsss train --loss spml``, in ``run_dir/embedding``), its
    random-walk pseudo-labels on train (``wsss spml-labels``, ``run_dir/pseudolabels.h5``, evaluated on train), then
    the final classifier on the frozen embedding (``train --loss pseudo --hard --init-from``, ``run_dir/train``).
    Returns the final classifier's status; the embedding run's training time is added to the row's."""
    from wsss.stages import spml_labels

    emb = run_dir / "embedding"
    cfg = train_config(s, emb, "spml", {"annotation": SPML_ANNOTATION[annotation]}, None, seeds=seeds,
                       superpixels=prepare_superpixels(s, data))
    emb_status = train_run(s, emb, cfg)
    record["embedding_seconds"] = emb_status["train_seconds"]
    pseudo = run_dir / "pseudolabels.h5"
    if not pseudo.exists():
        log(f"spml-labels → {pseudo}")
        spml_labels.run(emb / "train", seeds, pseudo, device=s.device, workers=s.workers, resume=True)
    record["eval_train"] = evaluate(s, pseudo, crf=False, seeds=seeds)
    loss, opts, warmup = method_loss("spml", s)
    from wsss.training.photometric import SPML_GRAYSCALE_P

    final = train_config(s, run_dir, loss, opts, warmup, pseudolabels=pseudo, init_from=emb / "train")
    # the SPML code's final-classifier augmentations (docs/methods.md §10); its 100-step lr warm-up is left out: it
    # is 0.3 % of the code's 30 000 iterations, under one step of this budget's 460 at that share
    final = dataclasses.replace(final, grayscale=SPML_GRAYSCALE_P, blur=True, blur_kernel="spml")
    return train_run(s, run_dir, final)


def prepare_superpixels(s: Settings, data: Path) -> Path:
    """``wsss superpixels`` of the train images (SLIC defaults): URSS's pseudo-boundaries."""
    from wsss.stages import superpixels

    path = s.out / "superpixels.h5"
    if path.exists():
        return path
    log(f"superpixels (SLIC, toolkit defaults) → {path}")
    superpixels.run(data, path, layout="generic", split="train", workers=s.workers, resume=True)
    return path


# ---------------------------------------------------------------------------------------------
# methods


def method_loss(method: str, s: Settings, overrides: dict[str, Any] | None = None) -> tuple[str, dict[str, Any], int | None]:
    """``(loss name, loss_options, warmup_epochs or None)`` of a network method with ``overrides``
    (search parameters: lam, eta, bandwidth, sigma_rgb, warmup_fraction)."""
    o = dict(overrides or {})
    warmup = None
    if "warmup_fraction" in o:
        warmup = int(round(float(o.pop("warmup_fraction")) * s.epochs))
    if method in ("full", "pce"):
        loss, opts = method, {}
    elif method == "full-balanced":
        loss, opts = "full", {"class_weights": "median-frequency"}
    elif method == "gridcrf":
        loss, opts = "gridcrf", {k: o.pop(k) for k in ("lam", "bandwidth") if k in o}
    elif method in ("densecrf", "ncut", "kernelcut"):
        opts = {"dense": {k: o.pop(k) for k in ("sigma_rgb",) if k in o}}
        if "lam" in o:
            opts["lam"] = o.pop("lam")
        loss = method
    elif method in ("collision", "collision-hard"):
        solver = {k: o.pop(k) for k in ("eta", "lam", "bandwidth") if k in o}
        if s.solver_steps is not None:
            solver["steps"] = s.solver_steps
        loss, opts = "collision", {"solver": solver, "hard": method == "collision-hard"}
    elif method == "proposals":
        loss, opts = "pseudo", {}
    elif method in ("urss-1", "urss-2"):
        loss, opts = "urss", {"phase": int(method[-1])}
    elif method == "urss-net-pce":  # the control: the URSS network and pipeline, pCE alone
        loss, opts = "urss", {"phase": 1, "omega1": 0.0}
    elif method == "spml":  # the final classifier (hard pseudo-labels on the frozen SPML embedding)
        loss, opts = "pseudo", {"hard": True}
    else:
        raise ValueError(method)
    if o:
        raise SystemExit(f"search parameter(s) {sorted(o)} do not apply to {method}")
    return loss, opts, warmup


def train_config(s: Settings, run_dir: Path, loss: str, options: dict[str, Any], warmup: int | None,
                 seeds: Path | None = None, pseudolabels: Path | None = None, superpixels: Path | None = None,
                 init_from: Path | None = None, lr: float | None = None):
    from wsss.training.segmentation import TrainConfig

    return TrainConfig(
        out=str(run_dir / "train"), loss=loss, loss_options=options,
        superpixels=str(superpixels) if superpixels is not None else None,
        init_from=str(init_from) if init_from is not None else None,
        seeds=str(seeds) if seeds is not None else None,
        pseudolabels=str(pseudolabels) if pseudolabels is not None else None,
        backbone=s.backbone, weights=s.weights, width_mult=s.width_mult, head_channels=s.head_channels, epochs=s.epochs,
        batch_size=s.batch_size, crop_size=s.crop_size, lr=s.lr if lr is None else lr, warmup_epochs=warmup, seed=s.seed, device=s.device,
        workers=0, log_every=10, progress=sys.stderr.isatty(),
        command=f"experiments/real_images.py ({run_dir.name})",
    )


def comparable(cfg) -> dict[str, Any]:
    """The settings that define a run (what must match for a finished run to be reused)."""
    from wsss.training.engine import RESUME_FREE

    d = dataclasses.asdict(cfg)
    return json.loads(json.dumps({k: v for k, v in d.items() if k not in RESUME_FREE and k != "out"}, default=str))


def resolved_loss(cfg) -> dict[str, Any]:
    """The loss settings ``cfg`` trains with, library defaults filled in: the training loop's own record
    (:func:`wsss.training.segmentation.loss_record`, what RUN/train/config.json holds), as JSON values."""
    from wsss.losses.registry import make_loss
    from wsss.training.segmentation import loss_record

    loss = make_loss(cfg.loss, json.loads(json.dumps(cfg.loss_options)))  # make_loss consumes its options
    return json.loads(json.dumps(loss_record(cfg, loss), default=str))


def stale_defaults(run_dir: Path, cfg) -> None:
    """Refuse to reuse a run whose loss defaults (λ, bandwidths, warm-up: not in ``cfg`` when not overridden)
    have changed in the library since it was trained: its RUN/train/config.json disagrees with them."""
    path = run_dir / "train" / "config.json"
    if not path.exists():
        return
    recorded = read_json(path).get("loss", {})
    diff = {k: (recorded.get(k), v) for k, v in resolved_loss(cfg).items() if k in recorded and recorded[k] != v}
    if diff:
        what = ", ".join(f"{k} {old} → {new}" for k, (old, new) in sorted(diff.items()))
        raise SystemExit(f"{run_dir}: trained with other loss defaults ({what}). Delete that run directory to retrain "
                         "it with the current defaults, or use another OUT.")


def budget_clock_name(s: Settings) -> str:
    """What ``train_seconds`` and the cap measure: CPU time of the process on a CPU (so that runs sharing the
    machine with other work are timed as if alone; with one thread it is the wall time of an idle core), wall
    time on a GPU."""
    return "wall" if s.device.startswith("cuda") else "cpu"


def budget_clock(s: Settings):
    return time.perf_counter if budget_clock_name(s) == "wall" else time.process_time


def train_run(s: Settings, run_dir: Path, cfg) -> dict[str, Any]:
    """Train ``cfg`` in ``run_dir/train`` unless already finished; resume an interrupted run.
    Returns the status record (state, train_seconds, epochs_done)."""
    from wsss.training.segmentation import train

    status_path = run_dir / "status.json"
    status = read_json(status_path) if status_path.exists() else None
    want = comparable(cfg)
    budget_s = s.budget_minutes * 60.0
    if status is not None:  # a TrainConfig field added since the run was recorded counts as its default
        from wsss.training.engine import with_added_options

        recorded = status.get("train_config", {})
        filled = json.loads(json.dumps(with_added_options(recorded, cfg), default=str))
        status["train_config"] = {k: v for k, v in filled.items() if k in recorded or k in want}
    if status is not None and status.get("train_config") != want:
        diff = sorted(k for k in set(want) | set(status.get("train_config", {}))
                      if want.get(k) != status.get("train_config", {}).get(k))
        raise SystemExit(f"{run_dir}: was trained with other settings ({', '.join(diff)}). Use another OUT, or delete "
                         "that run directory to retrain it.")
    if status is not None:
        stale_defaults(run_dir, cfg)
    if status is not None and status["state"] == "done":
        log(f"skip train {run_dir.name}: finished ({status['train_seconds']:.0f} s, {status['epochs_done']} epochs)")
        return status
    if status is not None and status["state"] == "budget" and status["train_seconds"] >= budget_s:
        log(f"skip train {run_dir.name}: stopped by the budget at epoch {status['epochs_done']}/{s.epochs}")
        return status
    train_dir = Path(cfg.out)
    last = train_dir / "last.pt"
    spent = float(status["train_seconds"]) if status is not None else 0.0
    if last.exists():
        cfg = dataclasses.replace(cfg, resume=True)
        log(f"resume train {run_dir.name} ({spent:.0f} s spent)")
    else:
        if train_dir.exists():  # started but no epoch finished: start over
            shutil.rmtree(train_dir)
        spent = 0.0
        log(f"train {run_dir.name}: --loss {cfg.loss} {json.dumps(cfg.loss_options)} for {s.epochs} epochs")
    run_dir.mkdir(parents=True, exist_ok=True)
    wall_spent = float(status.get("wall_seconds", spent)) if status is not None else 0.0
    record = {"state": "running", "train_seconds": spent, "wall_seconds": wall_spent, "clock": budget_clock_name(s),
              "epochs_done": 0, "epochs": s.epochs, "budget_minutes": s.budget_minutes, "train_config": want}
    write_json(status_path, record)
    clock = budget_clock(s)
    t0, w0 = clock(), time.perf_counter()

    def on_epoch_end(epoch: int, model) -> None:
        record["train_seconds"] = spent + (clock() - t0)
        record["wall_seconds"] = wall_spent + (time.perf_counter() - w0)
        record["epochs_done"] = epoch
        write_json(status_path, record)
        log(f"  {run_dir.name}: epoch {epoch}/{s.epochs} done, {record['train_seconds']:.0f} s")
        if epoch < s.epochs and record["train_seconds"] >= budget_s:
            raise BudgetExceeded

    for stale in ("val.h5", "val.metrics.json", "val.crf.metrics.json"):  # made from an older checkpoint
        (run_dir / stale).unlink(missing_ok=True)
    try:
        train(cfg, on_epoch_end=on_epoch_end)
        record["state"] = "done"
    except BudgetExceeded:
        record["state"] = "budget"
        log(f"  {run_dir.name}: budget of {s.budget_minutes:g} min used up after epoch {record['epochs_done']}")
    write_json(status_path, record)
    return record


def predict(s: Settings, checkpoint: Path, out: Path, data: Path, split: str) -> Path:
    from wsss.stages import predict as stage

    if out.exists():
        log(f"skip predict: {out} exists")
        return out
    log(f"predict {split} → {out}")
    stage.run(stage.PredictConfig(checkpoint=str(checkpoint), out=str(out), data=str(data), layout="generic",
                                  split=split, device=s.device, workers=1 if s.device.startswith("cuda") else s.workers,
                                  resume=True, command="experiments/real_images.py"))
    return out


def evaluate(s: Settings, artifact: Path, crf: bool, seeds: Path | None = None) -> dict[str, Any]:
    from wsss.crf import CRFParams
    from wsss.stages import evaluate as stage

    out = stage.default_output(artifact, crf)
    if out.exists():
        log(f"skip eval: {out} exists")
        return read_json(out)
    log(f"eval{' --crf' if crf else ''} {artifact}")
    params = CRFParams(bi_sxy=s.crf_bi_sxy, bi_compat=s.crf_bi_compat) if crf else None
    return stage.run(artifact, crf=params, seeds=seeds, workers=s.workers, out=out)


def solve_available() -> bool:
    try:
        import wsss.stages.solve  # noqa: F401
    except ImportError:
        return False
    return True


def solve(s: Settings, seeds: Path, out: Path, predictions: Path | None) -> Path:
    """``wsss solve``: pseudo-labels from the seeds (+ network predictions, or ``--init uniform``)."""
    if out.exists():
        log(f"skip solve: {out} exists")
        return out
    log(f"solve{' --init uniform' if predictions is None else ''} → {out}")
    cmd = [sys.executable, "-m", "wsss_cli.main", "solve", str(seeds), "--out", str(out), "--device", s.device]
    if predictions is not None:
        cmd += ["--predictions", str(predictions)]
    else:
        cmd += ["--init", "uniform"]
    cmd += ["--resume"]
    if s.solver_steps is not None:
        cmd += ["--steps", str(s.solver_steps)]
    subprocess.run(cmd, check=True)
    return out


def network_row(s: Settings, data: Path, run_dir: Path, status: dict[str, Any]) -> dict[str, Any]:
    """Predict val with the run's last checkpoint, evaluate with and without CRF."""
    ckpt = run_dir / "train" / "last.pt"
    pred = predict(s, ckpt, run_dir / "val.h5", data, "val")
    plain = evaluate(s, pred, crf=False)
    withcrf = evaluate(s, pred, crf=True)
    return {"status": status, "eval": plain, "eval_crf": withcrf}


def run_cell(s: Settings, data: Path, method: str, annotation: str, runs: Path,
             overrides: dict[str, Any] | None = None, run_dir: Path | None = None, crf: bool = True) -> dict[str, Any]:
    """Make one table cell; returns its record (also written to RUN/cell.json)."""
    run_dir = run_dir or runs / f"{method}@{annotation}"
    seeds = prepare_seeds(s, data, annotation)
    record: dict[str, Any] = {"method": method, "annotation": annotation, "run_dir": str(run_dir),
                              "overrides": overrides or {}}
    if method in ("solver", "proposals") and not solve_available():
        log(f"skip {method}@{annotation}: wsss.stages.solve is not available in this install")
        record["state"] = "unavailable (no solve stage)"
        return record
    t_start = time.perf_counter()
    try:
        return _run_cell(s, data, method, annotation, runs, overrides, run_dir, crf, seeds, record, t_start)
    except subprocess.CalledProcessError as exc:  # wsss solve (a CLI call) failed: keep building the table
        log(f"{method}@{annotation}: {' '.join(map(str, exc.cmd[2:4]))} failed with exit code {exc.returncode}")
        record["state"] = "failed (wsss solve; see the log)"
        return record


def _run_cell(s, data, method, annotation, runs, overrides, run_dir, crf, seeds, record, t_start):
    if method == "solver":
        run_dir.mkdir(parents=True, exist_ok=True)
        status_path = run_dir / "status.json"
        pseudo = run_dir / "pseudolabels.h5"
        if not pseudo.exists() or not status_path.exists():
            solve(s, seeds, pseudo, None)
            write_json(status_path, {"state": "done", "solve_seconds": time.perf_counter() - t_start})
        record["eval_train"] = evaluate(s, pseudo, crf=False, seeds=seeds)
        record["state"] = "done"
        record["solve_seconds"] = read_json(status_path)["solve_seconds"]
        return record
    if method == "proposals":
        base = run_cell(s, data, "pce", annotation, runs, crf=False)
        if base.get("state") not in ("done", "budget"):
            record["state"] = "waiting for pce"
            return record
        run_dir.mkdir(parents=True, exist_ok=True)
        base_dir = Path(base["run_dir"])
        # the proposals follow the pce checkpoint: if pce trained further since, start them over
        base_path = run_dir / "base.json"
        base_epochs = base["status"]["epochs_done"]
        if base_path.exists() and read_json(base_path).get("pce_epochs") != base_epochs:
            log(f"{run_dir.name}: the pce run changed since its proposals were made; redoing them")
            for stale in ("train-predictions.h5", "pseudolabels.h5", "pseudolabels.metrics.json", "status.json"):
                (run_dir / stale).unlink(missing_ok=True)
            shutil.rmtree(run_dir / "train", ignore_errors=True)
        write_json(base_path, {"pce_epochs": base_epochs, "pce_run": str(base_dir)})
        train_pred = predict(s, base_dir / "train" / "last.pt", run_dir / "train-predictions.h5", data, "train")
        pseudo = solve(s, seeds, run_dir / "pseudolabels.h5", train_pred)
        record["eval_train"] = evaluate(s, pseudo, crf=False, seeds=seeds)
        loss, opts, warmup = method_loss(method, s, overrides)
        cfg = train_config(s, run_dir, loss, opts, warmup, pseudolabels=pseudo)
        status = train_run(s, run_dir, cfg)
        record["pce_seconds"] = base["status"]["train_seconds"]
    elif method == "spml":
        status = spml_cell(s, data, annotation, run_dir, seeds, record)
    elif method in ("urss-net-pce", "urss-1", "urss-2"):
        init_from, lr = None, None
        if method == "urss-2":  # phase 2 starts from the phase-1 run of the same seed (finished or stopped by the cap)
            base = run_cell(s, data, "urss-1", annotation, runs, crf=False,
                            run_dir=cell_dir(runs, "urss-1", annotation, s.seed))
            if base.get("state") not in ("done", "budget"):
                record["state"] = "waiting for urss-1"
                return record
            init_from = Path(base["run_dir"]) / "train"
            lr = s.lr * URSS_PHASE2_LR_FACTOR
        loss, opts, warmup = method_loss(method, s, overrides)
        cfg = train_config(s, run_dir, loss, opts, warmup, seeds=seeds, superpixels=prepare_superpixels(s, data),
                           init_from=init_from, lr=lr)
        status = train_run(s, run_dir, cfg)
    else:
        loss, opts, warmup = method_loss(method, s, overrides)
        cfg = train_config(s, run_dir, loss, opts, warmup, seeds=seeds)
        status = train_run(s, run_dir, cfg)
    record["status"] = status
    record["state"] = status["state"]
    ckpt = run_dir / "train" / "last.pt"
    pred = predict(s, ckpt, run_dir / "val.h5", data, "val")
    record["eval"] = evaluate(s, pred, crf=False)
    if crf:
        record["eval_crf"] = evaluate(s, pred, crf=True)
    return record


# ---------------------------------------------------------------------------------------------
# tables


def summarize(record: dict[str, Any]) -> dict[str, Any]:
    """The table row of a cell record (fractions in [0, 1]; None where not applicable)."""
    ev = record.get("eval") or record.get("eval_train")
    crf = record.get("eval_crf")
    status = record.get("status") or {}
    seconds = status.get("train_seconds", record.get("solve_seconds"))
    for earlier in ("pce_seconds", "embedding_seconds"):  # proposals: its pce run; spml: its embedding run
        if seconds is not None and record.get(earlier) is not None:
            seconds = seconds + record[earlier]
    row = {
        "method": record["method"], "annotation": record["annotation"], "state": record.get("state", "not yet run"),
        "evaluated_on": "train pseudo-labels" if record["method"] == "solver" else "val",
        "miou": ev.get("miou") if ev else None, "pixel_accuracy": ev.get("pixel_accuracy") if ev else None,
        "f": ev.get("f") if ev else None, "iou": ev.get("iou") if ev else None,
        "miou_crf": crf.get("miou") if crf else None, "f_crf": crf.get("f") if crf else None,
        "pixel_accuracy_crf": crf.get("pixel_accuracy") if crf else None, "wall_seconds": status.get("wall_seconds"),
        "iou_crf": crf.get("iou") if crf else None,
        "train_seconds": seconds, "epochs_done": status.get("epochs_done"), "epochs": status.get("epochs"),
        "overrides": record.get("overrides") or {}, "run_dir": record.get("run_dir"),
    }
    if record["method"] in ("proposals", "spml") and record.get("eval_train"):
        row["pseudo_miou_train"] = record["eval_train"].get("miou")
    if record["method"] == "solver" and record.get("eval_train"):
        unl = record["eval_train"].get("unlabelled") or {}
        row["miou_unlabelled"] = unl.get("miou")
        row["solve_seconds"] = record.get("solve_seconds")
    return row


def pct(x: float | None) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{100.0 * x:.1f}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds / 60.0:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def header(s: Settings, info: dict[str, Any]) -> str:
    sch = s.schedule()
    return (
        f"Budget `{s.preset}`: {sch['backbone']} (width {sch['width_mult']}, head {sch['head_channels']}, weights "
        f"{sch['weights']}), crop {sch['crop_size']}, batch {sch['batch_size']}, {sch['epochs']} epochs, lr {sch['lr']:g} "
        f"(head ×10), cap {sch['budget_minutes']:g} min of {budget_clock_name(s)} time per run (train time below: "
        f"{budget_clock_name(s)} time), {sch['threads'] or 'torch default'} thread(s) per run, self-labeling solver steps "
        f"{sch['solver_steps'] or 'default'}, training seeds {','.join(map(str, sch['seeds']))} "
        f"({', '.join(MULTI_SEED_METHODS)} on the main table; the others the first), annotation seed {sch['annotation_seed']}, "
        f"device {sch['device']}. Eval CRF: bilateral sxy {s.crf_bi_sxy:g}, compat {s.crf_bi_compat:g} "
        f"(other CRF parameters: `wsss.crf.CRFParams` defaults). Machine: {info.get('cpu')}, {info.get('host_cpus')} CPUs, "
        f"torch {info.get('torch')} ({info.get('torch_threads')} threads){', ' + info['gpu'] if 'gpu' in info else ''}, "
        f"wsss {info.get('wsss')} @ {info.get('git_commit')}."
    )


def miou_cell(r: dict[str, Any], key: str = "miou") -> str:
    """``mean`` or, over several seeds, ``mean (min–max)`` of a row's mIoU (``key`` ``miou`` or ``miou_crf``)."""
    text = pct(r.get(key))
    if key == "miou" and r.get("spread") is not None:
        values = [v for v in r["seed_miou"] if v is not None]
        text += f" ({pct(min(values))}–{pct(max(values))})"
    return text


def markdown_table(rows: list[dict[str, Any]], classes: list[str], first: str) -> str:
    cols = [first, "seeds", "mIoU", "pixel acc", "mIoU +CRF", "pixel acc +CRF", "F", "F +CRF", "train time", "epochs",
            "state"] + classes
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        name = r["method"] if first == "method" else f"{r['method']} @ {r['annotation']}"
        if r.get("overrides"):
            name += " (" + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["overrides"].items()) + ")"
        if r["evaluated_on"] != "val":
            name += f" [{r['evaluated_on']}]"
        epochs = f"{r['epochs_done']}/{r['epochs']}" if r.get("epochs") else "–"
        state = r["state"] + (" (time cap)" if r["state"] == "budget" else "")
        per_class = [pct((r.get("iou") or {}).get(c)) for c in classes]
        seeds = ",".join(str(k) for k in r.get("seeds") or [r.get("seed", 0)])
        lines.append("| " + " | ".join([name, seeds, miou_cell(r), pct(r["pixel_accuracy"]), pct(r["miou_crf"]),
                                        pct(r.get("pixel_accuracy_crf")), pct(r["f"]), pct(r["f_crf"]),
                                        duration(r["train_seconds"]), epochs, state] + per_class) + " |")
    return "\n".join(lines)


def robustness_table(rows: list[dict[str, Any]], annotations: list[str]) -> str:
    methods = [m for m in ROBUST_METHODS + EXTRA_ROBUST_METHODS if any(r["method"] == m for r in rows)]
    cols = ["method"] + [f"{a} mIoU / pixel acc (+CRF mIoU)" for a in annotations]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for m in methods:
        cells = [m]
        for a in annotations:
            r = next((r for r in rows if r["method"] == m and r["annotation"] == a), None)
            cells.append("not yet run" if r is None or r["miou"] is None else
                         f"{pct(r['miou'])} / {pct(r['pixel_accuracy'])} ({pct(r['miou_crf'])})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def update_doc(doc: Path, blocks: dict[str, str]) -> None:
    """Replace the text between ``<!-- results:NAME:begin -->`` and ``<!-- results:NAME:end -->``."""
    text = doc.read_text()
    for name, body in blocks.items():
        begin, end = f"<!-- results:{name}:begin -->", f"<!-- results:{name}:end -->"
        i, j = text.find(begin), text.find(end)
        if i < 0 or j < i:
            log(f"{doc}: no markers for '{name}'; left as is")
            continue
        text = text[: i + len(begin)] + "\n" + body.rstrip() + "\n" + text[j:]
    write_text(doc, text)
    log(f"updated {doc}")


# ---------------------------------------------------------------------------------------------
# the two modes


def plan(s: Settings, methods: list[str], annotations: list[str], tables: list[str]) -> list[tuple[str, str, str]]:
    """``(table, method, annotation)`` cells in order."""
    cells = []
    if "main" in tables and "scribbles" in annotations:
        cells += [("main", m, "scribbles") for m in methods]
    if "robustness" in tables:
        for a in annotations:
            for m in ROBUST_METHODS:
                if m in methods and not (a == "scribbles" and "main" in tables):
                    cells.append(("robustness", m, a))
            for m in EXTRA_ROBUST_METHODS:
                if m in methods and a != "scribbles":
                    cells.append(("robustness", m, a))
    return cells


def cell_seeds(s: Settings, table: str, method: str) -> tuple[int, ...]:
    """Training seeds of one cell: every ``--seeds`` for the main table's :data:`MULTI_SEED_METHODS`, else the first."""
    return s.seeds if table == "main" and method in MULTI_SEED_METHODS else s.seeds[:1]


def cell_dir(runs: Path, method: str, annotation: str, seed: int) -> Path:
    """``runs/<method>@<annotation>`` (seed 0) or ``runs/<method>@<annotation>~seed<N>``."""
    return runs / (f"{method}@{annotation}" + (f"~seed{seed}" if seed != 0 else ""))


#: The row fields averaged over a cell's seeds.
MEAN_FIELDS = ("miou", "pixel_accuracy", "f", "miou_crf", "pixel_accuracy_crf", "f_crf", "train_seconds", "wall_seconds",
               "pseudo_miou_train")


def combine_seeds(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One table row from the rows of a cell's seeds: means of :data:`MEAN_FIELDS` and of the per-class IoU over the
    finished seeds, ``seed_miou`` (each seed's mIoU) and ``spread`` (max − min mIoU; None with one seed)."""
    if len(rows) == 1:
        return dict(rows[0], seeds=[rows[0]["seed"]], seed_miou=[rows[0]["miou"]], spread=None)
    done = [r for r in rows if r["miou"] is not None]
    out = dict(rows[0])
    out["seeds"] = [r["seed"] for r in rows]
    out["seed_miou"] = [r["miou"] for r in rows]
    out["state"] = rows[0]["state"] if all(r["state"] == rows[0]["state"] for r in rows) else \
        "/".join(r["state"] for r in rows)
    for key in MEAN_FIELDS:
        values = [r[key] for r in done if r.get(key) is not None]
        out[key] = sum(values) / len(values) if values else None
    for key in ("iou", "iou_crf"):
        dicts = [r[key] for r in done if r.get(key)]
        out[key] = {c: (sum(d[c] for d in dicts if d.get(c) is not None) / max(1, sum(d.get(c) is not None for d in dicts))
                        if any(d.get(c) is not None for d in dicts) else None) for c in dicts[0]} if dicts else None
    out["spread"] = (max(r["miou"] for r in done) - min(r["miou"] for r in done)) if len(done) > 1 else None
    return out


def tuned_overrides(s: Settings) -> dict[str, dict[str, Any]]:
    path = s.out / "search.json"
    if not path.exists():
        raise SystemExit(f"--tuned: {path} not found. Run with --search first.")
    return {m: dict(c["values"]) for m, c in read_json(path)["choice"].items()}


def run_tables(s: Settings, methods: list[str], annotations: list[str], tables: list[str], doc: Path | None,
               report_only: bool = False) -> dict[str, Any]:
    from wsss.data import open_dataset

    t0 = time.perf_counter()
    data = dataset_root(s)
    classes = open_dataset(data, layout="generic", split="train").classes
    runs = s.out / ("runs-tuned" if s.tuned else "runs")
    overrides = tuned_overrides(s) if s.tuned else {}
    cells = plan(s, methods, annotations, tables)
    log(f"{len(cells)} table cells; budget {s.preset}: {json.dumps(s.schedule())}")
    rows: dict[str, list[dict[str, Any]]] = {"main": [], "robustness": []}

    for table, method, annotation in cells:
        over = overrides.get(method) if method in overrides else None
        per_seed = []
        for seed in cell_seeds(s, table, method):
            run_dir = cell_dir(runs, method, annotation, seed)
            if report_only:  # tables from the finished cells only; nothing is trained or evaluated
                cell = run_dir / "cell.json"
                record = read_json(cell) if cell.exists() else {"method": method, "annotation": annotation,
                                                                 "run_dir": str(run_dir), "state": "not yet run"}
            else:
                record = run_cell(dataclasses.replace(s, seed=seed), data, method, annotation, runs, overrides=over,
                                  run_dir=run_dir)
                if Path(record["run_dir"]).exists():
                    write_json(Path(record["run_dir"]) / "cell.json", record)
            per_seed.append(dict(summarize(record), seed=seed))
        rows[table].append(combine_seeds(per_seed))
    wall = time.perf_counter() - t0
    info = machine()
    robust_rows = rows["robustness"] + [r for r in rows["main"] if r["method"] in ROBUST_METHODS + EXTRA_ROBUST_METHODS]
    result = {
        "kind": "wsss-real-images", "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "data": str(s.data), "dataset_used": str(data), "classes": classes, "settings": {**dataclasses.asdict(s), "data": str(s.data), "out": str(s.out)},
        "schedule": s.schedule(), "machine": info, "wall_seconds_this_call": wall, "units": "fractions in [0, 1]",
        "annotations": {a: ANNOTATION_HELP[a] for a in annotations},
        "main": rows["main"], "robustness": rows["robustness"],
        "command": " ".join(sys.argv),
    }
    write_json(s.out / "results.json", result)
    head = header(s, info)
    main_md = head + "\n\n" + markdown_table(rows["main"], classes, "method") + (
        "\n\nmIoU, F and per-class IoU in %, on val (`solver`: its pseudo-labels on train). `train time`: of "
        "`proposals` including its pce run; of `solver` the solve time."
    )
    robust_md = head + "\n\n" + robustness_table(robust_rows, annotations)
    md = (f"# Real-image results ({s.data.name})\n\nCommand: `{' '.join(sys.argv)}`\n\nWall time of this call: "
          f"{duration(wall)}.\n\n## Main table: full scribbles\n\n{main_md}\n\n## Robustness: scribble length, clicks, blocks\n\n"
          f"{robust_md}\n")
    write_text(s.out / "results.md", md)
    log(f"wrote {s.out / 'results.md'} and {s.out / 'results.json'} ({duration(wall)})")
    if doc is not None:
        update_doc(doc, {name: md for name, md in (("main", main_md), ("robustness", robust_md)) if name in tables})
    return result


#: Default ``--search-margin`` (a fraction of mIoU): the run-to-run noise of one cpu-budget run
#: (docs/results.md: the same run with 1 and 2 threads differs by 2–4 points).
SEARCH_MARGIN = 0.03


def choose_value(trials: list[dict[str, Any]], default: float | None, margin: float) -> tuple[float | None, str]:
    """The chosen value among one method's ``trials`` (``{"value", "miou"}``, mIoU a fraction or None) and why.

    The best val mIoU wins only when it beats the toolkit default's by more than ``margin`` (a fraction):
    one training run per value is noisy (docs/results.md: ±2–4 points from the thread count alone), so a
    smaller gain is no evidence against the default. Without a default among the trials, the best wins.
    """
    scored = [t for t in trials if t.get("miou") is not None]
    if not scored:
        return None, "no finished trial"
    best = max(scored, key=lambda t: t["miou"])
    base = next((t for t in scored if default is not None and t["value"] == default), None)
    if base is None:
        return best["value"], "best val mIoU (the default is not in the grid)"
    gain = best["miou"] - base["miou"]
    if best is base or gain <= margin:
        return base["value"], f"default kept (best other value {gain * 100:+.1f} points, margin {margin * 100:.1f})"
    return best["value"], f"best val mIoU, {gain * 100:+.1f} points over the default (margin {margin * 100:.1f})"


def search_table(s: Settings, result: dict[str, Any], grid_name: str) -> str:
    """The Markdown of grid ``grid_name`` of a search record (OUT/search.json): header, rule, one row a trial.
    ``(default)`` marks the library default when the trial ran."""
    margin = result.get("margin", SEARCH_MARGIN)
    choice = result["choice"]
    lines = ["| method | parameter | value | val mIoU | val F | train time | state |", "|---|---|---|---|---|---|---|"]
    for t in result["searches"][grid_name]["trials"]:
        mark = " **(chosen)**" if choice.get(t["method"], {}).get("values", {}).get(t["param"]) == t["value"] else ""
        mark += " (default)" if t.get("default") else ""
        state = t["state"] + (f" ({t['epochs_done']} epochs)" if t["state"] == "budget" and t.get("epochs_done") else "")
        lines.append(f"| {t['method']} | {t['param']} | {t['value']:.4g}{mark} | {pct(t['miou'])} | {pct(t['f'])} | "
                     f"{duration(t['train_seconds'])} | {state} |")
    rule = (f"chosen by val mIoU without CRF; a value replaces the default only when it beats it by more than "
            f"{margin * 100:.1f} points (`--search-margin`, the run-to-run noise)")
    return header(s, result["machine"]) + f"\n\nGrid `{grid_name}` (3 values per method; {rule}):\n\n" + "\n".join(lines)


def search_report(s: Settings, grid_name: str, doc: Path | None) -> str:
    """``--search --report-only``: the table of grid ``grid_name`` from OUT/search.json, nothing trained."""
    path = s.out / "search.json"
    if not path.exists():
        raise SystemExit(f"--report-only: {path} not found. Run with --search first.")
    result = read_json(path)
    if grid_name not in result.get("searches", {}):
        raise SystemExit(f"--report-only: {path} has no '{grid_name}' grid yet (has: {', '.join(result.get('searches', {})) or 'none'}).")
    body = search_table(s, result, grid_name)
    print(body)
    if doc is not None:
        update_doc(doc, {f"search-{grid_name}": body})
    return body


def run_search(s: Settings, methods: list[str], grid_name: str, doc: Path | None,
               margin: float = SEARCH_MARGIN) -> dict[str, Any]:
    """Train each method of ``methods`` in grid ``grid_name`` on full scribbles with each of its 3 values; choose
    by :func:`choose_value`. The default's trial is the main table's cell (same run), not a second training.
    Trials of methods not in this call stay in OUT/search.json, so a grid can be built one method at a time."""
    t0 = time.perf_counter()
    data = dataset_root(s)
    grid = search_grids()[grid_name]
    chosen = [m for m in methods if m in grid]
    if not chosen:
        raise SystemExit(f"--search: none of {', '.join(methods)} has a '{grid_name}' grid (grid: {', '.join(grid)}).")
    previous = read_json(s.out / "search.json") if (s.out / "search.json").exists() else {}
    choice = dict(previous.get("choice", {}))
    trials = [t for t in previous.get("searches", {}).get(grid_name, {}).get("trials", []) if t["method"] not in chosen]
    for method in chosen:
        (param, values), = grid[method].items()
        default = default_values(method).get(param)
        mine = []
        for value in values:
            log(f"search {method}: {param}={value:.6g}" + (" (the default: the main table's cell)" if value == default else ""))
            if value == default:
                record = run_cell(s, data, method, "scribbles", s.out / "runs", crf=False)
            else:
                run_dir = s.out / "search" / grid_name / f"{method}@scribbles" / f"{param}={value:.6g}"
                record = run_cell(s, data, method, "scribbles", s.out / "search", overrides={param: value},
                                  run_dir=run_dir, crf=False)
            row = summarize(record)
            mine.append({"method": method, "param": param, "value": value, "default": value == default,
                         "miou": row["miou"], "f": row["f"], "train_seconds": row["train_seconds"],
                         "epochs_done": row.get("epochs_done"), "state": row["state"], "run_dir": record["run_dir"]})
        trials.extend(mine)
        value, why = choose_value(mine, default, margin)
        if value is not None:
            values_chosen = dict(choice.get(method, {}).get("values", {}))
            values_chosen[param] = value
            miou = next(t["miou"] for t in mine if t["value"] == value)
            choice[method] = {"values": values_chosen, "miou": miou, "grid": grid_name, "why": why,
                              "chosen_on": "val mIoU (no CRF)", "margin": margin}
    wall = time.perf_counter() - t0
    info = machine()
    searches = dict(previous.get("searches", {}))
    searched = {t["method"] for t in trials}
    searches[grid_name] = {"grid": {m: grid[m] for m in grid if m in searched}, "trials": trials}
    result = {"kind": "wsss-real-images-search", "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "data": str(s.data), "schedule": s.schedule(), "machine": info, "searches": searches, "choice": choice,
              "units": "fractions in [0, 1]", "margin": margin, "wall_seconds_this_call": wall,
              "command": " ".join(sys.argv)}
    write_json(s.out / "search.json", result)
    body = search_table(s, result, grid_name)
    write_text(s.out / "search.md", f"# Search ({s.data.name})\n\nCommand: `{' '.join(sys.argv)}`\n\n{body}\n")
    log(f"wrote {s.out / 'search.md'} and {s.out / 'search.json'} ({duration(wall)})")
    if doc is not None:
        update_doc(doc, {f"search-{grid_name}": body})
    return result


# ---------------------------------------------------------------------------------------------
# command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Budgets: " + "; ".join(f"{k}: {v}" for k, v in PRESETS.items()))
    ap.add_argument("data", help="dataset folder, generic layout with train and val masks (e.g. CamVid)")
    ap.add_argument("out", help="output folder (created; reused across calls: finished runs are skipped)")
    ap.add_argument("--device", default="cpu", help="cpu (default; 'cpu' budget) or cuda / cuda:N ('cuda' budget)")
    ap.add_argument("--quick", action="store_true", help="smoke test: tiny budget, 6 train / 3 val images, "
                    f"methods {','.join(QUICK_METHODS)}, scribbles only (unless given)")
    ap.add_argument("--methods", help=f"comma-separated subset of {','.join(METHODS)} (default all)")
    ap.add_argument("--annotations", help=f"comma-separated subset of {','.join(ANNOTATIONS)} (default all; --quick: scribbles)")
    ap.add_argument("--tables", default="main,robustness", help="main, robustness or both (default)")
    ap.add_argument("--budget-minutes", type=float, help="cap on the training time of one run (cpu: 20, cuda: 60)")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--lr", type=float, help=f"backbone lr, head ×10 (cpu: {CPU_LR:.3g}, quick: {QUICK_LR:.3g}, cuda: {CUDA_LR:.3g}; "
                    "see PRESETS for their derivation)")
    ap.add_argument("--crop-size", type=int)
    ap.add_argument("--backbone", help="efficientnet_lite0 (cpu/cuda default), mobilenet_v2, resnet50, resnet101")
    ap.add_argument("--width-mult", type=float, help="MobileNetV2 width multiplier")
    ap.add_argument("--head-channels", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--solver-steps", type=int, help="self-labeling / solve steps (default: the solver's 200; --quick 5)")
    ap.add_argument("--limit-train", type=int, help="use the first N train images only")
    ap.add_argument("--limit-val", type=int, help="use the first N val images only")
    ap.add_argument("--seeds", help="comma-separated training seeds of the main table's "
                    f"{', '.join(MULTI_SEED_METHODS)} (the other cells use the first; default 0,1, --quick 0)")
    ap.add_argument("--annotation-seed", type=int, default=0, help="seed of the generated annotations (default 0)")
    ap.add_argument("--weights", help="backbone weights: packaged (EfficientNet-Lite0's ImageNet weights, the cpu/cuda "
                    "default), imagenet (torchvision, needs a network), none (random init) or a file")
    ap.add_argument("--threads", type=int, help="torch threads per run (cpu budget: 1; two invocations on disjoint "
                    "--methods then fill a 2-core machine)")
    ap.add_argument("--workers", type=int, default=1, help="processes for prepare / predict / eval (default 1)")
    ap.add_argument("--crf-bi-sxy", type=float, default=CRF_BI_SXY, help="eval CRF bilateral sxy (default 50, docs/metrics.md)")
    ap.add_argument("--crf-bi-compat", type=float, default=CRF_BI_COMPAT, help="eval CRF bilateral compat (default 5)")
    ap.add_argument("--search", action="store_true", help="search mode: 3 values per method on full scribbles, chosen on val")
    ap.add_argument("--search-grid", default="main", choices=("main", "bandwidth", "warmup"))
    ap.add_argument("--search-margin", type=float, default=100 * SEARCH_MARGIN,
                    help=f"points of val mIoU by which a searched value must beat the default to replace it (default "
                    f"{100 * SEARCH_MARGIN:g}: the run-to-run noise of one cpu-budget run, docs/results.md)")
    ap.add_argument("--report-only", action="store_true",
                    help="rebuild the tables from the finished cells in OUT without training anything (unfinished: 'not yet run'); "
                    "with --search: the --search-grid table from OUT/search.json")
    ap.add_argument("--tuned", action="store_true", help="use the values chosen by --search (OUT/search.json), runs in OUT/runs-tuned")
    ap.add_argument("--update-doc", type=Path, help="also write the tables between the markers of this Markdown file (docs/results.md)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    s = settings_from_args(args)
    methods = args.methods.split(",") if args.methods else list(QUICK_METHODS if args.quick else METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"--methods: unknown {', '.join(unknown)}. Choose from {', '.join(METHODS)}.")
    annotations = args.annotations.split(",") if args.annotations else (["scribbles"] if args.quick else list(ANNOTATIONS))
    unknown = [a for a in annotations if a not in ANNOTATIONS]
    if unknown:
        raise SystemExit(f"--annotations: unknown {', '.join(unknown)}. Choose from {', '.join(ANNOTATIONS)}.")
    tables = args.tables.split(",")
    if any(t not in TABLES for t in tables):
        raise SystemExit(f"--tables: choose from {', '.join(TABLES)}.")
    if not (s.data / "train").is_dir() or not (s.data / "val").is_dir():
        raise SystemExit(f"{s.data}: expected train/ and val/ folders (generic layout with masks).")
    s.out.mkdir(parents=True, exist_ok=True)
    import torch

    torch.manual_seed(s.seed)
    if s.threads:
        torch.set_num_threads(s.threads)
    if args.search:
        if args.report_only:
            search_report(s, args.search_grid, args.update_doc)
        else:
            run_search(s, methods, args.search_grid, args.update_doc, margin=args.search_margin / 100.0)
    else:
        run_tables(s, methods, annotations, tables, args.update_doc, report_only=args.report_only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
