"""Speed and accuracy of the permutohedral BilateralFilter against the exact dense product.

Usage::

    python benchmarks/bilateral.py --device cpu --sizes 64 128 256 512
    python benchmarks/bilateral.py --calibrate CAMVID/train/images --frames 3

Timing (default): K = 21 smooth random maps on a random-texture image (or ``--frame``, e.g. a CamVid
frame, resized to n²), σ_rgb 15, σ_xy 100. Per size: lattice build + one filtering and the build
alone for three builds in one run — the new one (:class:`wsss.filters.PermutohedralLattice`), today's
(:class:`wsss.filters.permutohedral_reference.SimplexLattice`, the simplex-level build it replaced)
and the 0.1 build (:class:`~wsss.filters.permutohedral_reference.ReferenceLattice`, with its CSR
filtering) — with the ratios reference / new; one filtering with the lattice reused; a
``BilateralFilter`` built and applied (features included); the exact self-weights
(``PermutohedralLattice.self_weight``, computed on demand); the exact chunked dense product (up to
``--exact-max`` pixels). Each time is the minimum over ``--repeat`` rounds in which the three builds
alternate; ``--clock process`` measures this process's CPU time instead of wall time (steadier on a
shared machine; CPU only).

Calibration (``--calibrate DIR``): the fitted scale ``c_tk = ⟨F(S), WS⟩/‖WS‖²`` and the relative
L2 errors (raw and after the fit) on real frames, σ_rgb 15, σ_xy 50 (= 100 · scale 0.5), smooth random
21-class maps — the measurement that sets the default DenseCRF-loss weight (docs/bilateral.md).
"""

from __future__ import annotations

import argparse
import glob
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from timing import CLOCKS, best_of, sync
from wsss.filters import BilateralFilter, DenseGaussianFilter, PermutohedralLattice, image_features
from wsss.filters.permutohedral_reference import ReferenceLattice, SimplexLattice

def smooth_maps(b: int, k: int, h: int, w: int, gen: torch.Generator, device) -> torch.Tensor:
    """``b×k×h×w`` float32 softmax of bilinearly upsampled coarse random logits."""
    z = torch.randn(b, k, max(2, h // 16), max(2, w // 16), generator=gen) * 4.0
    z = F.interpolate(z, size=(h, w), mode="bilinear", align_corners=False)
    return torch.softmax(z, dim=1).to(device)


def test_image(h: int, w: int, gen: torch.Generator, device) -> torch.Tensor:
    """``1×3×h×w`` float32 RGB 0–255: smooth colour blobs plus noise (a stand-in for a photo)."""
    base = torch.rand(1, 3, max(2, h // 8), max(2, w // 8), generator=gen) * 255.0
    img = F.interpolate(base, size=(h, w), mode="nearest")
    img = img + 8.0 * torch.randn(1, 3, h, w, generator=gen)
    return img.clamp(0, 255).to(device)


def frame_image(path: str, n: int, device) -> torch.Tensor:
    """``1×3×n×n`` float32 RGB 0–255: the image at ``path`` resized (bilinear)."""
    from PIL import Image

    arr = np.asarray(Image.open(path).convert("RGB").resize((n, n), Image.BILINEAR), dtype=np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1)[None].to(device)


#: the three lattice builds timed side by side: (label, class)
BUILDS = (("new", PermutohedralLattice), ("today", SimplexLattice), ("0.1", ReferenceLattice))


def build_speedup(img: torch.Tensor, x: torch.Tensor, args, device, clock) -> dict:
    """Minimum times of lattice build + one filtering (``N×K`` rows) and of the build alone, for the
    new build, today's (:class:`~wsss.filters.permutohedral_reference.SimplexLattice`) and the 0.1
    one (0.1 build, CSR filtering), the three interleaved in every round.
    Returns ``{(label, "b+f" | "build"): seconds}``."""
    b, k, h, w = x.shape
    pts = image_features(img, args.sigma_xy, args.sigma_rgb).reshape(b * h * w, -1)
    bid = torch.zeros(b * h * w, dtype=torch.int64, device=device)
    rows = x.permute(0, 2, 3, 1).reshape(-1, k).contiguous()
    best = {}
    for _ in range(args.repeat + 1):  # the first round warms up
        for label, cls in BUILDS:
            for what, fn in (("b+f", lambda: cls(pts, bid).filter(rows)), ("build", lambda: cls(pts, bid))):
                t = best_of(fn, 1, device, clock)
                best[label, what] = min(best.get((label, what), float("inf")), t)
    return best


def run_timing(args) -> None:
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    clock = CLOCKS[args.clock]
    print(f"device={device} threads={torch.get_num_threads()} K={args.k} "
          f"sigma_rgb={args.sigma_rgb} sigma_xy={args.sigma_xy} image={args.frame or 'synthetic'} "
          f"clock={args.clock}, min of {args.repeat} interleaved rounds")
    print("lattice build + one filtering (b+f) and build alone, ms: new build, today's (simplex) build, "
          "0.1 build (with its CSR filtering); ratios = reference time / new time")
    print(f"{'size':>7} {'vertices':>8} | {'new b+f':>8} {'today':>7} {'0.1':>7} {'/today':>7} {'/0.1':>6} | "
          f"{'new bld':>8} {'today':>7} {'0.1':>7} {'/today':>7} {'/0.1':>6} | {'filter':>7} {'Bilat.':>7} "
          f"{'self-wt':>7} | {'exact':>8} {'rel.err':>7}")
    for s in args.sizes:
        img = frame_image(args.frame, s, device) if args.frame else test_image(s, s, gen, device)
        x = smooth_maps(1, args.k, s, s, gen, device)
        holder = {}

        def build_and_filter():
            f = BilateralFilter(img, args.sigma_xy, args.sigma_rgb)
            holder["f"] = f
            return f(x)

        t_bilateral = best_of(build_and_filter, args.repeat, device, clock)
        f = holder["f"]
        t_filter = best_of(lambda: f(x), args.repeat, device, clock)
        sp = build_speedup(img, x, args, device, clock)
        t_sw = best_of(lambda: f.lattice.self_weight(), args.repeat, device, clock)
        t_exact = float("nan")
        err = float("nan")
        if s * s <= args.exact_max:
            ex = DenseGaussianFilter(img, args.sigma_xy, args.sigma_rgb)
            t0 = time.perf_counter()
            ref = ex(x)
            sync(device)
            t_exact = time.perf_counter() - t0
            err = ((f(x) - ref).norm() / ref.norm()).item()
        cols = []
        for what in ("b+f", "build"):
            new, today, old = (sp[label, what] for label, _ in BUILDS)
            cols.append(f"{new * 1e3:>8.1f} {today * 1e3:>7.1f} {old * 1e3:>7.1f} "
                        f"{today / new:>6.2f}× {old / new:>5.2f}×")
        print(f"{s:>6}² {f.lattice.num_vertices:>8} | {cols[0]} | {cols[1]} | {t_filter * 1e3:>7.1f} "
              f"{t_bilateral * 1e3:>7.1f} {t_sw * 1e3:>7.1f} | {t_exact:>6.2f} s {err:>7.3f}", flush=True)


def run_calibration(args) -> None:
    from PIL import Image

    device = torch.device(args.device)
    files = sorted(glob.glob(os.path.join(args.calibrate, "*.png")))
    files = files[:: max(1, len(files) // args.frames)][: args.frames]  # spread over sequences
    if not files:
        raise SystemExit(f"{args.calibrate}: no .png frames found. Pass a folder of RGB images.")
    gen = torch.Generator().manual_seed(0)
    cs = []
    print(f"sigma_rgb={args.sigma_rgb} sigma_xy={args.cal_sigma_xy} K={args.k}")
    for path in files:
        arr = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
        img = torch.from_numpy(arr).permute(2, 0, 1)[None].to(device)
        _, _, h, w = img.shape
        x = smooth_maps(1, args.k, h, w, gen, device)
        ref = DenseGaussianFilter(img, args.cal_sigma_xy, args.sigma_rgb)(x)
        out = BilateralFilter(img, args.cal_sigma_xy, args.sigma_rgb)(x)
        c = ((out * ref).sum() / (ref * ref).sum()).item()
        raw = ((out - ref).norm() / ref.norm()).item()
        fit = ((out - c * ref).norm() / (c * ref).norm()).item()
        cs.append(c)
        print(f"{os.path.basename(path)} {w}×{h}: c={c:.3f} raw={raw:.3f} fitted={fit:.3f}", flush=True)
    print(f"mean c_tk = {np.mean(cs):.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    p.add_argument("--k", type=int, default=21)
    p.add_argument("--sigma-rgb", type=float, default=15.0)
    p.add_argument("--sigma-xy", type=float, default=100.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--exact-max", type=int, default=128 * 128,
                   help="largest pixel count for which the exact O(N²) product is timed")
    p.add_argument("--calibrate", default=None, help="folder of RGB frames: measure c_tk instead")
    p.add_argument("--frames", type=int, default=3)
    p.add_argument("--cal-sigma-xy", type=float, default=50.0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--frame", default=None, help="timing: an RGB image resized to each size (default: synthetic)")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                   help="wall time, or this process's CPU time (steadier on a shared machine)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.calibrate:
        run_calibration(args)
    else:
        run_timing(args)


if __name__ == "__main__":
    main()
