"""Pseudo-label solver: agreement with the exact random-walker optimum and wall time, paper setting
versus the toolkit default (docs/methods.md §4.5).

Usage::

    python benchmarks/solver.py --device cpu --images astronaut coffee chelsea rocket

Problem: η = 0, ``quadratic`` Potts, NN4, colour bandwidth s = 9, λ = 6 (the solver's default; with
η = 0 the optimum does not depend on λ but plain GD's speed does), weights + 1e-10 (as
``skimage.segmentation.random_walker``, so every unseeded region is connected to a seed).
Images: ``skimage.data`` photographs at their native size. Seeds (deterministic): SLIC
(``n_segments=16, compactness=10``) of the image; in each segment a 3-pixel-high horizontal stroke
through its innermost point (pixels at ≥ half the segment's maximal distance to its boundary); class
= segment index mod 4 (K = 4). Exact optimum: ``scipy.sparse.linalg.spsolve`` of
``L_UU y_U = −L_US ȳ_S`` with an independently built Laplacian.

Solvers, each from a uniform initialization and from "logits" = ln(max(y*, 1e-3)) + N(0, 1) noise
(a stand-in for good network logits; generator seed 0):

- paper: plain GD on v, 200 steps, lr 0.075 (``paper_config()``);
- default: ``SolverConfig()`` (convex start by multigrid CG, relative tolerance 1e-6, at most
  ``DEFAULT_CG_MAX_ITER`` = 6 iterations; the mirror steps are skipped here because the surrogate is
  the energy);
- exact: the default with ``cg_max_iter=EXACT_CG_MAX_ITER`` (100), the tight setting of the tests.

Prints per image and solver the soft Jaccard (Σ min / Σ max) to the optimum and the wall time (best of
``--repeats``), then the mean agreement and the ratio of total times default / paper. Goal: the
default reaches at least the paper's agreement in at most a quarter of its time (checked for the
default and for the exact variant).

Seed propagation against ``skimage.segmentation.random_walker`` (``--vs-rw``)::

    python benchmarks/solver.py --vs-rw --threads 1 --camvid CAMVID --seeds SEEDS.h5 --limit 20

where ``SEEDS.h5`` is ``wsss prepare-scribbles CAMVID SEEDS.h5 --split train`` (CAMVID: a CamVid folder). Per
image, in one process: ``random_walker(mode='cg_j', beta=130)`` (skimage's defaults but the mode,
``tol`` 1e-3) and ``wsss solve --init uniform`` (:func:`wsss.stages.solve.solve_image`, no predictions)
with the grid weights matched to β 130 on that image (bandwidth ``s = sqrt(255·10·std·√3 / (2β))``,
std of the 0–255 image over all channels, + 1e-10, i.e. the same edge weights), and at the default
bandwidth, and with the settings of seed propagation before its defaults (``TODAY_SEEDS_ONLY``: 50 mirror
steps after 6 float64 CG iterations; matched weights). Reports the times (best of ``--repeats``,
``--clock``; use ``--clock process --threads 1`` on a shared machine), their ratios, and the mIoU of the
arg-max against the dense ground truth over all images (all labelled pixels). The skimage photographs
(``--images``, no ground truth) with the drawn strokes above are timed as well.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spl
import torch
from scipy import ndimage as ndi
from skimage import data
from skimage.segmentation import slic

from timing import CLOCKS
from wsss.constants import IGNORE_INDEX
from wsss.potts.solver import EXACT_CG_MAX_ITER, SolverConfig, paper_config, soft_jaccard, solve_pseudolabels

S, LAM, K, OFFSET = 9.0, 6.0, 4, 1e-10


def strokes(img: np.ndarray, n_segments: int = 16, n_classes: int = K) -> np.ndarray:
    """H×W int64 seeds (IGNORE_INDEX = unlabeled) by the rule in the module docstring."""
    seg = slic(img, n_segments=n_segments, compactness=10, start_label=0)
    seeds = np.full(seg.shape, IGNORE_INDEX, np.int64)
    for k, s in enumerate(np.unique(seg)):
        m = seg == s
        d = ndi.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
        r = np.unravel_index(np.argmax(d), d.shape)[0]
        band = np.abs(np.arange(seg.shape[0])[:, None] - r) <= 1
        seeds[band & m & (d >= 0.5 * d.max())] = k % n_classes
    return seeds


def exact_rw(img: np.ndarray, seeds: np.ndarray, k: int) -> np.ndarray:
    """K×H×W float64 random-walker optimum (η = 0, NN4, w = exp(−‖ΔI‖²/(2s²)) + 1e-10)."""
    x = img.astype(np.float64)
    h, w = seeds.shape
    idx = np.arange(h * w).reshape(h, w)
    wh = np.exp(-((x[:, 1:] - x[:, :-1]) ** 2).sum(-1) / (2 * S * S)) + OFFSET
    wv = np.exp(-((x[1:] - x[:-1]) ** 2).sum(-1) / (2 * S * S)) + OFFSET
    i = np.r_[idx[:, :-1].ravel(), idx[:-1].ravel()]
    j = np.r_[idx[:, 1:].ravel(), idx[1:].ravel()]
    v = np.r_[wh.ravel(), wv.ravel()]
    W = sp.coo_matrix((np.r_[v, v], (np.r_[i, j], np.r_[j, i])), shape=(h * w,) * 2).tocsr()
    L = (sp.diags(np.asarray(W.sum(1)).ravel()) - W).tocsr()
    s = seeds.ravel() != IGNORE_INDEX
    u = ~s
    ys = np.eye(k)[seeds.ravel()[s]]
    y = np.zeros((h * w, k))
    y[s] = ys
    y[u] = spl.spsolve(L[u][:, u].tocsc(), -(L[u][:, s] @ ys))
    return y.T.reshape(k, h, w)


def timed(fn, device, repeats):
    best, out = float("inf"), None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t)
    return out, best


RW_BETA = 130.0  # skimage's default β
#: ``wsss solve --init uniform`` without predictions before the seed-propagation defaults: 50 mirror steps on
#: the default relaxation after 6 float64 CG iterations
TODAY_SEEDS_ONLY = dict(steps=50, cg_max_iter=6, cg_dtype="float64")


def matched_bandwidth(img: np.ndarray, beta: float = RW_BETA) -> float:
    """Colour bandwidth ``s`` whose grid weights ``exp(−‖ΔI‖²/2s²)`` (RGB 0–255) equal
    ``random_walker``'s ``exp(−β ‖ΔI/255‖² / (10·std(I/255)·√3))`` on this image."""
    std = float(np.asarray(img, np.float64).std())
    return float(np.sqrt(255.0 * 10.0 * std * np.sqrt(3.0) / (2.0 * beta)))


def random_walker_labels(img: np.ndarray, seeds: np.ndarray, beta: float = RW_BETA) -> np.ndarray:
    """H×W int64 arg-max of ``random_walker(mode='cg_j')`` probabilities, in class ids."""
    from skimage.segmentation import random_walker

    markers = np.where(seeds == IGNORE_INDEX, 0, seeds.astype(np.int64) + 1)
    present = np.unique(markers[markers > 0])
    prob = random_walker(img, markers, beta=beta, mode="cg_j", channel_axis=-1, return_full_prob=True)
    return present[prob.argmax(0)] - 1


def run_vs_random_walker(args) -> None:
    from wsss import metrics as M
    from wsss.artifacts import Artifact
    from wsss.data import open_dataset
    from wsss.stages.solve import solve_image

    def miou(conf: np.ndarray) -> float:
        return 100.0 * M.mean_iou(conf)

    clock = CLOCKS[args.clock]

    def best(fn):
        out, t_best = None, float("inf")
        for _ in range(args.repeats):
            t0 = clock()
            out = fn()
            t_best = min(t_best, clock() - t0)
        return out, t_best

    cases = []  # (name, image, seeds, gt or None, K)
    if args.camvid:
        ds = open_dataset(args.camvid, split="train")
        art = Artifact(args.seeds, kind="seeds")
        for image_id in art.ids[:: args.stride][: args.limit or None]:
            cases.append((image_id, ds.load_image(image_id), art.read(image_id, "label"), ds.load_mask(image_id),
                          ds.num_classes))
    for name in args.images:
        img = getattr(data, name)()
        img = np.repeat(img[..., None], 3, -1) if img.ndim == 2 else img[..., :3]
        cases.append((name, img, strokes(img), None, K))
    k_conf = max(c[4] for c in cases)
    modes = ("rw", "matched", "today", "default")
    conf = {m: np.zeros((k_conf, k_conf), np.int64) for m in modes}
    tot = {m: 0.0 for m in conf}
    res = SolverConfig().resolved(seeds_only=True)
    print(f"random_walker (cg_j, β {RW_BETA:g}, tol 1e-3) vs wsss solve --init uniform (no predictions); torch threads "
          f"{torch.get_num_threads()}, clock {args.clock}, best of {args.repeats}")
    print(f"ours: the seed-propagation default (mirror steps {res.steps}, {res.cg_max_iter} CG iterations, {res.cg_dtype} "
          f"smoothing); 'today': the settings before it ({TODAY_SEEDS_ONLY}); matched: s = s(β), weights + 1e-10")
    print(f"{'image':16s} {'size':>9s} {'s(β)':>6s} {'rw s':>7s} {'ours s':>7s} {'rw/ours':>8s} {'today s':>8s} "
          f"{'today/ours':>10s} {'ours@9 s':>9s}")
    for name, img, seeds, gt, k in cases:
        s_m = matched_bandwidth(img)
        cfg_m = SolverConfig(init="uniform", bandwidth=s_m, weight_offset=OFFSET)
        cfg_t = SolverConfig(init="uniform", bandwidth=s_m, weight_offset=OFFSET, **TODAY_SEEDS_ONLY)
        lab_rw, t_rw = best(lambda: random_walker_labels(img, seeds))
        y_m, t_m = best(lambda: solve_image(img, seeds, None, k, cfg_m))
        y_t, t_t = best(lambda: solve_image(img, seeds, None, k, cfg_t))
        y_d, t_d = best(lambda: solve_image(img, seeds, None, k, SolverConfig(init="uniform")))
        labels = {"rw": lab_rw, "matched": y_m.argmax(0), "today": y_t.argmax(0), "default": y_d.argmax(0)}
        for m, t in (("rw", t_rw), ("matched", t_m), ("today", t_t), ("default", t_d)):
            tot[m] += t
        if gt is not None:
            for m, lab in labels.items():
                conf[m] += M.confusion_matrix(gt, lab.astype(np.uint8), k_conf)
        print(f"{name:16s} {img.shape[0]:>4d}×{img.shape[1]:<4d} {s_m:6.1f} {t_rw:7.3f} {t_m:7.3f} {t_rw / t_m:7.2f}× "
              f"{t_t:8.3f} {t_t / t_m:9.2f}× {t_d:9.3f}", flush=True)
    print(f"total: random_walker {tot['rw']:.2f} s, ours (matched weights) {tot['matched']:.2f} s "
          f"= {tot['rw'] / tot['matched']:.2f}× faster; today's settings {tot['today']:.2f} s "
          f"(new / today = {tot['today'] / tot['matched']:.2f}× faster); ours (bandwidth {SolverConfig().bandwidth:g}) "
          f"{tot['default']:.2f} s = {tot['rw'] / tot['default']:.2f}× faster than random_walker")
    if args.camvid:
        print(f"mIoU vs dense ground truth ({args.camvid} train, {sum(c[3] is not None for c in cases)} images): "
              f"random_walker {miou(conf['rw']):.2f}, ours matched {miou(conf['matched']):.2f}, today's settings "
              f"matched {miou(conf['today']):.2f}, ours bandwidth {SolverConfig().bandwidth:g} {miou(conf['default']):.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--images", nargs="*", default=["astronaut", "coffee", "chelsea", "rocket"])
    ap.add_argument("--repeats", type=int, default=1, help="timing: best of this many runs")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    ap.add_argument("--vs-rw", action="store_true", help="seed propagation against skimage random_walker")
    ap.add_argument("--camvid", default=None, help="--vs-rw: CamVid folder (train images and masks)")
    ap.add_argument("--seeds", default=None, help="--vs-rw: seeds artifact of CamVid train (wsss prepare-scribbles)")
    ap.add_argument("--limit", type=int, default=0, help="--vs-rw: first N CamVid images (0: all)")
    ap.add_argument("--stride", type=int, default=1, help="--vs-rw: every N-th CamVid image (before --limit)")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall", help="--vs-rw: timing clock")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.vs_rw:
        run_vs_random_walker(args)
        return
    device = torch.device(args.device)
    common = dict(eta=0.0, lam=LAM, relaxation="quadratic", neighbourhood="nn4", bandwidth=S, weight_offset=OFFSET)
    solvers = {"paper": paper_config(**common), "default": SolverConfig(**common),
               "exact": SolverConfig(cg_max_iter=EXACT_CG_MAX_ITER, **common)}
    rows, totals = [], {(s, i): [0.0, []] for s in solvers for i in ("uniform", "logits")}
    print(f"device {device}, torch threads {torch.get_num_threads()}, K = {K}, λ = {LAM}, s = {S}")
    print(f"{'image':10s} {'size':>9s} {'solver':8s} {'init':8s} {'soft Jaccard':>12s} {'time s':>8s}")
    for name in args.images:
        img = getattr(data, name)()
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, -1)
        img = img[..., :3]
        seeds = strokes(img)
        ref = exact_rw(img, seeds, K)
        refs = torch.from_numpy(ref)[None]
        im = torch.from_numpy(img).permute(2, 0, 1)[None].float().to(device)
        sd = torch.from_numpy(seeds)[None].to(device)
        g = torch.Generator().manual_seed(0)
        noisy = (torch.log(refs.clamp_min(1e-3)) + torch.randn(refs.shape, generator=g, dtype=torch.float64)).float()
        inits = {"uniform": torch.zeros_like(noisy).to(device), "logits": noisy.to(device)}
        for sname, cfg in solvers.items():
            for iname, z in inits.items():
                cfg_i = SolverConfig(**{**cfg.__dict__, "init": "logits"})
                y, dt = timed(lambda: solve_pseudolabels(z, sd, im, cfg_i), device, args.repeats)
                jac = float(soft_jaccard(y.double().cpu(), refs)[0])
                totals[(sname, iname)][0] += dt
                totals[(sname, iname)][1].append(jac)
                print(f"{name:10s} {img.shape[0]:>4d}×{img.shape[1]:<4d} {sname:8s} {iname:8s} {100 * jac:11.2f}% {dt:8.2f}",
                      flush=True)
    print()
    print(f"{'solver':8s} {'init':8s} {'mean soft Jaccard':>18s} {'min':>8s} {'total time s':>13s}")
    for (sname, iname), (t, js) in totals.items():
        print(f"{sname:8s} {iname:8s} {100 * np.mean(js):17.2f}% {100 * np.min(js):7.2f}% {t:13.2f}")
    for sname in ("default", "exact"):
        for iname in ("uniform", "logits"):
            tp, jp = totals[("paper", iname)][0], np.mean(totals[("paper", iname)][1])
            td, jd = totals[(sname, iname)][0], np.mean(totals[(sname, iname)][1])
            verdict = "meets" if (jd >= jp and td <= tp / 4) else "MISSES"
            print(f"{sname}, init {iname}: time {sname}/paper = {td / tp:.3f}; agreement {100 * jd:.2f}% vs "
                  f"{100 * jp:.2f}% -> {verdict} the goal (≥ paper's agreement in ≤ 1/4 of its time)")


if __name__ == "__main__":
    main()
