"""Mean per-batch counts of a training run: images, valid pixels, seed pixels, unlabelled valid pixels and
valid NN4 / NN8 pairs — what each loss term is averaged over (:mod:`wsss.losses.term`).

The loss defaults tuned under the toolkit's earlier normalization (every term divided by the valid
pixels of the batch) were converted to the per-term means at these counts, measured on the tuning runs'
own data pipeline (same seeds, crop, batch, scale range, flip, seed and epochs as ``wsss train``):

    # demo data (docs/demo-results.md): 96² images, 1-px scribbles of every object, batch 4, 30 epochs
    wsss demo-data /tmp/demo && wsss prepare-scribbles /tmp/demo /tmp/demo-seeds.h5 --objects all --width 1
    python benchmarks/loss_counts.py /tmp/demo-seeds.h5 --crop 96 --batch 4 --epochs 30
    # CamVid cpu budget (docs/results.md): 3-px scribbles of every fragment, crop 128, batch 8, 30 epochs
    wsss prepare-scribbles CAMVID /tmp/cv-seeds.h5 --objects all --width 3
    python benchmarks/loss_counts.py /tmp/cv-seeds.h5 --crop 128 --batch 8 --epochs 30

Prints one JSON object (means over every batch of every epoch).
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.utils.data import DataLoader

from wsss.artifacts import Artifact
from wsss.constants import IGNORE_INDEX
from wsss.data import open_recorded_dataset
from wsss.losses.gridcrf import valid_pair_count
from wsss.training.data import AugmentConfig, EpochSampler, TargetSource, TrainSet


def batch_counts(labels: torch.Tensor, valid: torch.Tensor) -> dict[str, float]:
    """Counts of one batch. labels: ``B×H×W`` int64 (255 = unlabelled); valid: ``B×H×W`` bool."""
    seeds = (labels != IGNORE_INDEX) & valid
    return {
        "images": float(labels.shape[0]),
        "valid_pixels": float(valid.sum()),
        "seed_pixels": float(seeds.sum()),
        "unlabelled_valid_pixels": float((valid & ~seeds).sum()),
        "nn4_pairs": float(valid_pair_count(valid, "nn4")),
        "nn8_pairs": float(valid_pair_count(valid, "nn8")),
    }


def measure(seeds: str, crop: int, batch: int, epochs: int, scale_min: float = 0.5, scale_max: float = 2.0,
            flip: bool = True, seed: int = 0) -> dict[str, float]:
    """Mean counts per batch over ``epochs`` epochs of the ``wsss train`` data pipeline on ``seeds``."""
    artifact = Artifact(seeds, "seeds")
    dataset = open_recorded_dataset(dict(artifact.dataset))
    trainset = TrainSet(dataset, TargetSource("seeds", dataset, artifact), AugmentConfig(crop, scale_min, scale_max, flip), seed)
    sampler = EpochSampler(trainset, rank=0, world_size=1, seed=seed)
    loader = DataLoader(trainset, batch_size=batch, sampler=sampler, num_workers=0, drop_last=False)
    sums: dict[str, float] = {}
    n = 0
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for b in loader:
            for k, v in batch_counts(b["labels"], b["valid"]).items():
                sums[k] = sums.get(k, 0.0) + v
            n += 1
    out = {k: v / n for k, v in sums.items()}
    out["batches"] = n
    out["seed_fraction_of_valid"] = out["seed_pixels"] / out["valid_pixels"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("seeds", help="seeds artifact (its recorded dataset gives the images)")
    ap.add_argument("--crop", type=int, default=513)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--scale-min", type=float, default=0.5)
    ap.add_argument("--scale-max", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(json.dumps(measure(args.seeds, args.crop, args.batch, args.epochs, args.scale_min, args.scale_max,
                             seed=args.seed), indent=1))


if __name__ == "__main__":
    main()
