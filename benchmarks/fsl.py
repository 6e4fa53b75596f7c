"""Cost of the feature similarity loss (exact all-pairs and windowed) against the classifier's
forward + backward pass, at the paper's grid size (docs/methods.md §6: stride-8 grid of a 448 crop = 56×56).

Usage::

    python benchmarks/fsl.py                                  # ResNet-50, crop 448, batch 1, CPU
    python benchmarks/fsl.py --device cuda --batch 8          # the paper's batch, on a GPU
    python benchmarks/fsl.py --crop 224 --backbone mobilenet_v2

Measured in the same run (best of ``--repeat`` after one warm-up):

- ``classifier``: forward + backward of :class:`wsss.cam.CamClassifier` (dilated, output stride 8,
  random init) with the GAP loss — the reference (ratio 1);
- ``ISL``: :func:`wsss.cam.losses.isl_loss` forward + backward on the scores (N = 10);
- ``FSL exact`` / ``FSL window R``: :func:`feature_similarity_loss` forward + backward (gate from
  the scores: present classes + background channel; colours from the crop), not including the
  classifier. The windowed line also reports its relative difference to the exact loss and the
  stated bound.
"""

from __future__ import annotations

import argparse

import torch

from timing import best_of
from wsss.cam.classifier import build_cam_classifier
from wsss.cam.losses import (feature_similarity_loss, fsl_gate, fsl_image, fsl_window_bound, gap_loss, isl_loss)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backbone", default="resnet50")
    ap.add_argument("--crop", type=int, default=448)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--window", type=int, default=15)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grids", type=int, nargs="*", default=[28, 56, 112],
                    help="extra FSL-only timings on random maps at these square grid sizes (scaling)")
    args = ap.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    model = build_cam_classifier(args.classes, args.backbone, output_stride=8).to(device).train()
    x = torch.randn(args.batch, 3, args.crop, args.crop, device=device)
    y = torch.zeros(args.batch, args.classes, device=device)
    y[:, :3] = 1                                                       # three present classes

    def classifier_step():
        model.zero_grad(set_to_none=True)
        gap_loss(model(x), y).backward()

    with torch.no_grad():
        scores0 = model(x)
    grid = tuple(scores0.shape[-2:])
    image = fsl_image(x, grid)
    gen = torch.Generator(device=device).manual_seed(args.seed)

    def isl_step():
        s = scores0.clone().requires_grad_(True)
        isl_loss(s, y, generator=gen).backward()

    def fsl_step(window):
        def run():
            s = scores0.clone().requires_grad_(True)
            feature_similarity_loss(fsl_gate(s, y), image, window=window).backward()
        return run

    t_cls = best_of(classifier_step, args.repeat, device)
    t_isl = best_of(isl_step, args.repeat, device)
    t_exact = best_of(fsl_step(None), args.repeat, device)
    t_win = best_of(fsl_step(args.window), args.repeat, device)

    with torch.no_grad():
        gate = fsl_gate(scores0, y)
        exact = feature_similarity_loss(gate, image).item()
        win = feature_similarity_loss(gate, image, window=args.window).item()
        bound = fsl_window_bound(gate, args.window)

    threads = torch.get_num_threads() if device.type == "cpu" else "-"
    print(f"device {device} (threads {threads}), {args.backbone} OS8, crop {args.crop}, batch {args.batch}, "
          f"grid {grid[0]}×{grid[1]} ({grid[0] * grid[1]} cells, {(grid[0] * grid[1]) ** 2 / 1e6:.1f} M ordered pairs/image), "
          f"{gate.shape[1]} gate channels; best of {args.repeat}")
    print(f"{'step (forward + backward)':<34}{'ms':>10}{'× classifier':>15}")
    rows = [("classifier + GAP loss", t_cls), ("ISL (N = 10)", t_isl), ("FSL exact (all pairs)", t_exact),
            (f"FSL window R = {args.window}", t_win)]
    for name, t in rows:
        print(f"{name:<34}{1000 * t:>10.1f}{t / t_cls:>15.4f}")
    rel = abs(exact - win) / max(abs(exact), 1e-30)
    print(f"window vs exact: |ΔL| = {abs(exact - win):.3e} ({100 * rel:.2f} % of |L| = {abs(exact):.3e}); "
          f"stated bound τ·g_max = {bound:.3e}")

    if args.grids:
        print(f"\nFSL alone, random gate ({gate.shape[1]} channels) and colours, batch {args.batch}:")
        print(f"{'grid':>8}{'exact ms':>12}{'window ms':>12}{'window/exact':>14}")
        for g in args.grids:
            r = torch.rand(args.batch, gate.shape[1], g, g, device=device, generator=gen)
            xs = torch.rand(args.batch, 3, g, g, device=device, generator=gen)

            def run(window, r=r, xs=xs):
                rr = r.clone().requires_grad_(True)
                feature_similarity_loss(rr, xs, window=window).backward()

            te = best_of(lambda: run(None), args.repeat, device)
            tw = best_of(lambda: run(args.window), args.repeat, device)
            print(f"{g:>5}×{g:<2}{1000 * te:>12.1f}{1000 * tw:>12.1f}{tw / te:>14.2f}")


if __name__ == "__main__":
    main()
