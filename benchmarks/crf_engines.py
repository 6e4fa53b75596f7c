"""DenseCRF engines side by side: pydensecrf2 (reference) and the toolkit's lattice (CPU, CUDA).

Usage::

    python benchmarks/crf_engines.py --time --sizes 256 512 --device cpu       # 1 thread
    python benchmarks/crf_engines.py --time --clock process                  # CPU time (shared machine)
    python benchmarks/crf_engines.py --time --sizes 512 --device cuda --batch 8
    python benchmarks/crf_engines.py --agree demo                            # wsss demo-data, in memory
    python benchmarks/crf_engines.py --agree CAMVID --split val

Timing (``--time``): one CRF of an n×n photograph-like image (a CamVid frame resized when
``--frame`` is given, else a synthetic one), K = 21 smooth random class maps, 10 iterations, DeepLab
defaults (:class:`wsss.crf.CRFParams`); minimum over ``--repeat`` runs (the machine is shared: take
the minimum, and rerun). Prints pydensecrf2, the lattice engine and the lattice engine's earlier
per-kernel CSR loop (:func:`csr_lattice_crf`) in one run and the ratios; on CUDA also the per-image
time of a batch of ``--batch`` images.

Agreement (``--agree``): label agreement of the lattice engine with pydensecrf2 and mIoU against the
dense ground truth of both, on every image of a split, with unaries from noisy ground truth (no trained
model needed): logits ``3·onehot(gt) + smooth noise (σ 1.5, 1/8 resolution) + pixel noise (σ 0.5)``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from timing import CLOCKS, best_of
from wsss.crf import CRFParams, dense_crf
from wsss.crf_lattice import DEGREE_FLOOR, lattice_crf
from wsss.filters import PermutohedralLattice, image_features
from wsss.filters.permutohedral_reference import csr_filter


def smooth_probs(k: int, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    """K×H×W float32 softmax of bilinearly upsampled coarse random logits."""
    z = torch.randn(1, k, max(2, h // 16), max(2, w // 16), generator=gen) * 4.0
    return torch.softmax(F.interpolate(z, size=(h, w), mode="bilinear", align_corners=False), 1)[0]


def frame(n: int, path: str | None, gen: torch.Generator) -> np.ndarray:
    """n×n×3 uint8: the frame at ``path`` resized, or smooth colour blobs plus noise."""
    if path:
        from PIL import Image

        return np.array(Image.open(path).convert("RGB").resize((n, n), Image.BILINEAR))
    base = torch.rand(1, 3, max(2, n // 8), max(2, n // 8), generator=gen) * 255.0
    img = F.interpolate(base, size=(n, n), mode="nearest") + 8.0 * torch.randn(1, 3, n, n, generator=gen)
    return img.clamp(0, 255)[0].permute(1, 2, 0).to(torch.uint8).numpy()


def csr_lattice_crf(images: torch.Tensor, probs: torch.Tensor, params: CRFParams) -> torch.Tensor:
    """The lattice engine as it was before the fused operator (the reference of the "new / CSR" ratio):
    per iteration and kernel one CSR splat / ``index_select`` blur / CSR slice
    (:func:`wsss.filters.permutohedral_reference.csr_filter`) of ``Q·D^{-1/2}``, on today's lattice
    build. ``images`` 1×3×H×W float, ``probs`` 1×K×H×W; returns 1×K×H×W marginals."""
    b, k, h, w = probs.shape
    rows = probs.permute(0, 2, 3, 1).reshape(b * h * w, k)
    neg_unary = rows.clamp(params.eps, 1.0).log_()
    bid = torch.zeros(b * h * w, dtype=torch.int64, device=images.device)
    kernels = []
    for compat, sxy, srgb in ((params.gauss_compat, params.gauss_sxy, None),
                              (params.bi_compat, params.bi_sxy, params.bi_srgb)):
        lat = PermutohedralLattice(image_features(images, sxy, srgb).reshape(b * h * w, -1), bid)
        ones = torch.ones(b * h * w, 1, dtype=torch.float32, device=images.device)
        kernels.append((compat, lat, (csr_filter(lat, ones) + DEGREE_FLOOR).rsqrt_()))
    q = torch.softmax(neg_unary, dim=1)
    for _ in range(params.iterations):
        logits = neg_unary.clone()
        for compat, lat, norm in kernels:
            logits.addcmul_(csr_filter(lat, q * norm), norm, value=compat)
        q = torch.softmax(logits, dim=1)
    return q.view(b, h, w, k).permute(0, 3, 1, 2)


def run_timing(args) -> None:
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    params = CRFParams(iterations=args.iterations)
    clock = CLOCKS[args.clock if device.type == "cpu" else "wall"]
    print(f"DenseCRF, K = {args.k}, {params.iterations} iterations, DeepLab defaults "
          f"(gauss {params.gauss_sxy:g}/{params.gauss_compat:g}, bilateral {params.bi_sxy:g}/{params.bi_srgb:g}/"
          f"{params.bi_compat:g}), {torch.get_num_threads()} torch thread(s), lattice on {device}; "
          f"min of {args.repeat}, clock {args.clock if device.type == 'cpu' else 'wall'}; ratio = pydensecrf2 / lattice; "
          f"CSR = the per-kernel CSR loop (reference), new/CSR = CSR / lattice")
    print(f"{'size':>6} {'pydensecrf2 s':>14} {'lattice s':>10} {'ratio':>7} {'agree':>7} {'CSR s':>7} {'new/CSR':>8}"
          + (f" {'batch/img s':>12} {'ratio':>7}" if device.type == "cuda" else ""))
    for n in args.sizes:
        img = frame(n, args.frame, gen)
        probs = smooth_probs(args.k, n, n, gen)
        p_np = probs.numpy()
        t_ref = best_of(lambda: dense_crf(img, p_np, CRFParams(engine="pydensecrf", iterations=args.iterations)),
                        args.repeat, clock=clock)
        img_t = torch.from_numpy(img).permute(2, 0, 1)[None].float().to(device)
        probs_t = probs[None].to(device)
        t_lat = best_of(lambda: lattice_crf(img_t, probs_t, params), args.repeat, device, clock)
        t_csr = best_of(lambda: csr_lattice_crf(img_t, probs_t, params), args.repeat, device, clock)
        a = dense_crf(img, p_np, CRFParams(engine="pydensecrf", iterations=args.iterations)).argmax(0)
        b = lattice_crf(img_t, probs_t, params)[0].argmax(0).cpu().numpy()
        row = (f"{n:>5}² {t_ref:>14.3f} {t_lat:>10.3f} {t_ref / t_lat:>6.2f}× {np.mean(a == b):>7.4f} "
               f"{t_csr:>7.3f} {t_csr / t_lat:>7.2f}×")
        if device.type == "cuda":
            imgs = img_t.expand(args.batch, -1, -1, -1).contiguous()
            ps = probs_t.expand(args.batch, -1, -1, -1).contiguous()
            t_b = best_of(lambda: lattice_crf(imgs, ps, params), args.repeat, device) / args.batch
            row += f" {t_b:>12.4f} {t_ref / t_b:>6.1f}×"
        print(row, flush=True)


def noisy_unaries(mask: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """K×H×W float32 probabilities from the ground truth with smooth and pixel noise (255 → class 0)."""
    h, w = mask.shape
    onehot = np.eye(k, dtype=np.float32)[np.where(mask == 255, 0, mask)].transpose(2, 0, 1)
    coarse = torch.from_numpy(rng.normal(0, 1.5, (1, k, max(2, h // 8), max(2, w // 8))).astype(np.float32))
    smooth = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0].numpy()
    z = 3.0 * onehot + smooth + rng.normal(0, 0.5, (k, h, w)).astype(np.float32)
    p = np.exp(z - z.max(0))
    return (p / p.sum(0)).astype(np.float32)


def run_agreement(args) -> None:
    from wsss import metrics as M
    from wsss.data import open_dataset

    if args.agree == "demo":
        import tempfile

        from wsss.data.demo import generate_demo

        root = generate_demo(tempfile.mkdtemp() + "/demo", progress=False)
        ds = open_dataset(root, split="val")
    else:
        ds = open_dataset(args.agree, split=args.split)
    ids = ds.ids[: args.limit] if args.limit else ds.ids
    k = ds.num_classes
    base = CRFParams(bi_sxy=args.bi_sxy, bi_compat=args.bi_compat)
    params = {"pydensecrf": replace(base, engine="pydensecrf"),
              "lattice": replace(base, engine="lattice", device=args.device)}
    rng = np.random.default_rng(0)
    conf = {name: np.zeros((k, k), np.int64) for name in ("input", "pydensecrf", "lattice")}
    agree, times = [], {"pydensecrf": 0.0, "lattice": 0.0}
    for image_id in ids:
        image, mask = ds.load_image(image_id), ds.load_mask(image_id)
        probs = noisy_unaries(mask, k, rng)
        labels = {"input": probs.argmax(0)}
        for engine, p in params.items():
            t0 = time.perf_counter()
            labels[engine] = dense_crf(image, probs, p).argmax(0)
            times[engine] += time.perf_counter() - t0
        for name, lab in labels.items():
            conf[name] += M.confusion_matrix(mask, lab.astype(np.uint8), k)
        agree.append(np.mean(labels["lattice"] == labels["pydensecrf"]))
    miou = {name: 100 * M.mean_iou(c) for name, c in conf.items()}
    print(f"{ds.root} [{ds.split}], {len(ids)} images, K = {k}, noisy ground-truth unaries, bilateral sxy {base.bi_sxy:g}, compat {base.bi_compat:g} "
          f"(other CRF parameters: DeepLab defaults); "
          f"lattice on {args.device}, {torch.get_num_threads()} torch thread(s)")
    print(f"label agreement lattice vs pydensecrf2: mean {100 * np.mean(agree):.2f} %, "
          f"min {100 * np.min(agree):.2f} %")
    print(f"mIoU: input {miou['input']:.2f}, pydensecrf2 {miou['pydensecrf']:.2f}, lattice {miou['lattice']:.2f} "
          f"(Δ {miou['lattice'] - miou['pydensecrf']:+.2f} points)")
    print(f"time: pydensecrf2 {times['pydensecrf']:.1f} s, lattice {times['lattice']:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--time", action="store_true", help="time both engines")
    ap.add_argument("--agree", default=None, help="dataset folder (or 'demo') for the agreement check")
    ap.add_argument("--split", default="val")
    ap.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--frame", default=None, help="image file to resize for the timing (default: synthetic)")
    ap.add_argument("--k", type=int, default=21)
    ap.add_argument("--bi-sxy", type=float, default=CRFParams().bi_sxy, help="agreement: bilateral sxy")
    ap.add_argument("--bi-compat", type=float, default=CRFParams().bi_compat, help="agreement: bilateral weight")
    ap.add_argument("--iterations", type=int, default=CRFParams().iterations)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=8, help="CUDA: images per batch")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="CPU timing: wall time or this process's CPU time (steadier on a shared machine)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.time:
        run_timing(args)
    if args.agree:
        run_agreement(args)


if __name__ == "__main__":
    main()
