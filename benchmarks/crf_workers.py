"""Speed-up of ``wsss crf`` with 2 worker processes over 1, and a check that outputs are identical.

Makes a ``predictions`` artifact of noisy class probabilities from the dense masks of a dataset
(``--data``, any supported layout with masks) or of a generated synthetic set (``--demo``: the
toolkit's demo generator when available, else a small built-in one), then times the library stage
:func:`wsss.stages.crf.run` with ``--workers 1`` and ``--workers 2`` on the same images and prints

    crf 1 worker: T1 s, 2 workers: T2 s, speed-up T1/T2

Goal on 2 idle cores: ≥ 1.7×. On a busy machine the wall-clock ratio says little, so the
script also prints the CPU time of each run and the speed-up it implies on free cores. The work per image (DenseCRF, single-threaded C++) must dominate
the pool start-up and the HDF5 writes done by the parent process, so use realistic sizes
(240×180 or larger) and a few dozen images. torch is imported before timing so that the
one-off import in each forked worker (the runner sets one torch thread per worker) is not
counted; it is a constant per run, not per image.

Examples::

    python benchmarks/crf_workers.py --demo --images 48
    python benchmarks/crf_workers.py --data CAMVID --split val --images 64
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _own_demo(out: Path, images: int, size: tuple[int, int], classes: int, seed: int) -> Path:
    """Fallback generator: random ellipses on a colour gradient, generic layout."""
    from PIL import Image

    from wsss.data.generic import save_label_png

    rng = np.random.default_rng(seed)
    h, w = size
    (out / "train" / "images").mkdir(parents=True)
    (out / "train" / "masks").mkdir(parents=True)
    (out / "classes.txt").write_text("\n".join(["background"] + [f"class{c}" for c in range(1, classes)]) + "\n")
    yy, xx = np.mgrid[:h, :w]
    colours = rng.integers(0, 256, (classes, 3))
    for i in range(images):
        mask = np.zeros((h, w), np.uint8)
        for _ in range(4):
            c = rng.integers(1, classes)
            cy, cx, ry, rx = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.1, 0.3) * h, rng.uniform(0.1, 0.3) * w
            mask[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = c
        image = colours[mask] + rng.normal(0, 8, (h, w, 3))
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(out / "train" / "images" / f"im{i:04d}.png")
        save_label_png(out / "train" / "masks" / f"im{i:04d}.png", mask)
    return out


def make_demo(out: Path, images: int, size: tuple[int, int], classes: int, seed: int) -> Path:
    try:
        from wsss.data.demo import generate_demo
    except ImportError:
        return _own_demo(out, images, size, classes, seed)
    return generate_demo(out, train=images, val=0, size=size, classes=classes, seed=seed, progress=False)


def noisy_predictions(dataset, ids: list[str], path: Path, seed: int) -> Path:
    """A predictions artifact: softmax of (3 · one-hot(GT) + smooth noise), so about a third of
    the pixels have a wrong arg-max in blobs, as a weak network would."""
    from scipy.ndimage import gaussian_filter

    from wsss.artifacts import ArtifactWriter
    from wsss.constants import IGNORE_INDEX

    rng = np.random.default_rng(seed)
    k = dataset.num_classes
    with ArtifactWriter(path, "predictions", classes=dataset.classes, config={"benchmark": "noisy GT"},
                        dataset=dataset.describe()) as writer:
        for image_id in ids:
            gt = dataset.load_mask(image_id)
            logits = 3.0 * np.eye(k, dtype=np.float32)[np.where(gt == IGNORE_INDEX, 0, gt)].transpose(2, 0, 1)
            noise = gaussian_filter(rng.normal(0, 1, logits.shape), sigma=(0, 4, 4)) * 12
            z = logits + noise.astype(np.float32)
            p = np.exp(z - z.max(0))
            p /= p.sum(0)
            writer.write(image_id, {"scores": p.astype(np.float16), "label": p.argmax(0).astype(np.uint8)})
        writer.commit()
    return path


def _burn(n: int) -> float:
    start = time.perf_counter()
    total = 0
    for i in range(n):
        total += i * i
    return time.perf_counter() - start


def free_cores(workers: int, n: int = 4_000_000) -> float:
    """Control: how many cores ``workers`` pure-Python processes get right now (2.0 on 2 idle
    cores, about 1 when another job keeps one core busy)."""
    import multiprocessing as mp

    alone = _burn(n)
    with mp.get_context("fork").Pool(workers) as pool:
        start = time.perf_counter()
        pool.map(_burn, [n] * workers)
        together = time.perf_counter() - start
    return workers * alone / together


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the pool workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="dataset folder with dense masks (any supported layout)")
    source.add_argument("--demo", action="store_true", help="generate a synthetic set in a temporary folder")
    parser.add_argument("--split", default="train", help="split of --data (default train)")
    parser.add_argument("--layout", default="auto", help="layout of --data (default auto)")
    parser.add_argument("--images", type=int, default=48, help="number of images (default 48)")
    parser.add_argument("--size", type=int, nargs=2, default=(180, 240), metavar=("H", "W"), help="--demo image size (default 180 240)")
    parser.add_argument("--classes", type=int, default=6, help="--demo classes incl. background (default 6)")
    parser.add_argument("--workers", type=int, default=2, help="worker count compared with 1 (default 2)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per setting; the fastest counts (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch  # noqa: F401  (see the module docstring)

    from wsss.artifacts import Artifact
    from wsss.crf import CRFParams
    from wsss.data import open_dataset
    from wsss.stages import crf as stage

    tmp = Path(tempfile.mkdtemp(prefix="wsss-crf-bench-"))
    try:
        if args.demo:
            root = make_demo(tmp / "demo", args.images, tuple(args.size), args.classes, args.seed)
            dataset = open_dataset(root, split="train")
        else:
            dataset = open_dataset(args.data, layout=args.layout, split=args.split)
        ids = dataset.ids[: args.images]
        dataset = dataset.subset(ids)
        pred = noisy_predictions(dataset, ids, tmp / "pred.h5", args.seed)
        shape = dataset.load_mask(ids[0]).shape
        print(f"{len(ids)} images of {shape[1]}×{shape[0]}, {dataset.num_classes} classes, "
              f"CRF defaults {CRFParams().to_dict()}", flush=True)

        # the artifact records the dataset root and split; a subset is re-read by id from it
        times, cpus = {}, {}
        for workers in (1, args.workers):
            best, best_cpu = float("inf"), float("inf")
            for r in range(args.repeats):
                out = tmp / f"crf_w{workers}_{r}.h5"
                cpu0 = _cpu_seconds()
                start = time.perf_counter()
                stage.run(pred, out, workers=workers, config={"benchmark": True})
                best = min(best, time.perf_counter() - start)
                best_cpu = min(best_cpu, _cpu_seconds() - cpu0)
            times[workers], cpus[workers] = best, best_cpu
            print(f"  {workers} worker(s): {best:.2f} s ({1000 * best / len(ids):.0f} ms/image), "
                  f"CPU {best_cpu:.2f} s = {best_cpu / best:.2f} cores busy; load average {os.getloadavg()[0]:.1f}",
                  flush=True)

        control = free_cores(args.workers)
        print(f"  control: {args.workers} pure-Python processes get {control:.2f} cores right now", flush=True)

        a, b = Artifact(tmp / "crf_w1_0.h5"), Artifact(tmp / f"crf_w{args.workers}_0.h5")
        identical = a.ids == b.ids and all(
            np.array_equal(a.read(i, n), b.read(i, n)) for i in a.ids for n in ("scores", "label")
        )
        speedup = times[1] / times[args.workers]
        # the wall-clock figure needs idle cores; the CPU-time figure is what the same run would give
        # with `workers` free cores (perfect balance assumed: images are handed out one at a time)
        ideal = cpus[1] / (cpus[args.workers] / args.workers)
        print(f"crf 1 worker: {times[1]:.2f} s, {args.workers} workers: {times[args.workers]:.2f} s, "
              f"speed-up {speedup:.2f}× (on {args.workers} free cores: ≈ {ideal:.2f}× from CPU time); "
              f"outputs identical: {identical}")
        return 0 if identical else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
