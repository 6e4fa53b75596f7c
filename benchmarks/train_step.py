"""Time of one training step with ``--loss collision`` relative to ``--loss pce`` (goal: ≤ 2×).

Same model, same batch, default solver settings (:class:`wsss.potts.solver.SolverConfig`); a step is
forward + loss (+ the pseudo-label solve for collision) + backward + SGD update. Prints the median
time of each and the ratio, measured in the same run.

    python benchmarks/train_step.py                       # MobileNetV2 DeepLabV3+, batch 2, 128², CPU
    python benchmarks/train_step.py --device cuda --size 513 --batch 12   # the paper's setting on a GPU
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--width-mult", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=128, help="square crop side")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    parser.add_argument("--amp", action="store_true", help="float16 autocast on CUDA, as wsss train")
    parser.add_argument("--solver-option", action="append", default=[], help="KEY=VALUE SolverConfig override")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from wsss.losses.registry import LossBatch, make_loss
    from wsss.losses.term import reduce_terms
    from wsss.models import DeepLabV3Plus, ModelConfig
    from wsss.training.toy import _image
    from wsss_cli.train import _parse_pairs

    device = torch.device(args.device)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = DeepLabV3Plus(ModelConfig(args.classes, args.backbone, width_mult=args.width_mult)).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    rng = np.random.default_rng(0)
    images, _, seeds = zip(*(_image(rng, args.size) for _ in range(args.batch)))
    image = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().to(device)
    seed_map = torch.from_numpy(np.stack(seeds)).long().to(device)
    valid = torch.ones(args.batch, args.size, args.size, dtype=torch.bool, device=device)
    batch = LossBatch(image, seed_map, valid)
    use_amp = args.amp and device.type == "cuda"

    def step(loss) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            logits = model(image)
        total, _ = reduce_terms(loss.terms(logits.float(), batch))
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    losses = {"pce": make_loss("pce"),
              "collision": make_loss("collision", {"solver": _parse_pairs(args.solver_option, "--solver-option")})}
    times: dict[str, list[float]] = {name: [] for name in losses}
    for name, loss in losses.items():
        step(loss)  # warm-up
    for _ in range(args.repeats):  # interleaved, so load changes hit both
        for name, loss in losses.items():
            times[name].append(step(loss))
    med = {name: statistics.median(v) for name, v in times.items()}
    solver = losses["collision"].solver
    print(f"device {device}, {args.backbone} ×{args.width_mult}, batch {args.batch}×{args.size}², K {args.classes}, "
          f"solver {solver.optimizer} steps {solver.steps or 'default'} lr {solver.lr or 'default'} cg_max_iter {solver.cg_max_iter} ({solver.cg_dtype}), threads {torch.get_num_threads()}")
    for name in losses:
        print(f"  {name:10s} {1000 * med[name]:9.1f} ms/step")
    ratio = med["collision"] / med["pce"]
    print(f"collision / pce = {ratio:.2f}× (goal ≤ 2×)")


if __name__ == "__main__":
    main()
