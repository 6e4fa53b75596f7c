"""Time of one training step with ``--loss collision`` relative to ``--loss pce`` (goal: ≤ 1.5×), for the
training default and the previous one, and the agreement of their pseudo-labels with an exact solution.

Same model, same batch; a step is forward + loss (+ the pseudo-label solve for collision) + backward +
SGD update. Three steps are timed, interleaved (so load changes hit all three), on ``--clock``
(default: this process's CPU time, steadier on a shared machine), after one warm-up each; the minimum
and the median over ``--repeats`` are printed, with the ratios of the minima:

- ``pce``;
- ``collision, before``: the training solver before its speed-up (:data:`BEFORE`: full-resolution convex start, 20 mirror steps at
  lr 1 with autograd gradients; what ``wsss train --loss collision`` ran before);
- ``collision, new``: the training default (``wsss.losses.registry.solver_config(training=True)``, plus
  any ``--solver-option``).

Agreement (docs/methods.md §4.5): soft Jaccard, mean over the batch, of each setting's pseudo-labels with
the **exact reference**: the same energy solved by ``--reference-steps`` (1000) mirror steps at lr 1 from
the exact convex start (100 CG iterations), float64, at full resolution, from the same logits. Two sets of
logits: the benchmark's network as it is (untrained head: predictions near uniform, where the energy keeps
falling by sharpening and no solve converges, so the reference is only "further along"), and the same
network after ``--warmup-steps`` pCE steps at lr 0.01 on the batch (informative predictions, as after
the pCE warm-up of collision training; there 1000 and 2000 steps agree at 97–99 %). The energy of each
solution is printed too (lower is better).

    python benchmarks/train_step.py --threads 1           # MobileNetV2 DeepLabV3+, batch 2, 128², CPU
    python benchmarks/train_step.py --device cuda --size 513 --batch 12   # the paper's setting on a GPU
"""

from __future__ import annotations

import argparse
import copy
import statistics
import warnings
from dataclasses import replace

import numpy as np
import torch

from timing import CLOCKS, sync

#: The ``--loss collision`` solver options before the speed-up (full-resolution start, 20 mirror steps at lr 1, autograd).
BEFORE = {"steps": 20, "lr": 1.0, "start_downsample": 1, "closed_form": False}
#: Problem of the exact reference (see the module docstring).
REFERENCE_LR = 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--width-mult", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=128, help="square crop side")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="process")
    parser.add_argument("--amp", action="store_true", help="float16 autocast on CUDA, as wsss train")
    parser.add_argument("--solver-option", action="append", default=[], help="KEY=VALUE SolverConfig override")
    parser.add_argument("--reference-steps", type=int, default=1000, help="mirror steps of the exact reference")
    parser.add_argument("--warmup-steps", type=int, default=40, help="pCE steps before the second agreement")
    parser.add_argument("--no-agreement", action="store_true", help="time only")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from wsss.losses.registry import LossBatch, make_loss, solver_config
    from wsss.losses.term import reduce_terms
    from wsss.models import DeepLabV3Plus, ModelConfig
    from wsss.potts.solver import EXACT_CG_MAX_ITER, soft_jaccard, solve_pseudolabels
    from wsss.training.toy import _image
    from wsss_cli.train import _parse_pairs

    device = torch.device(args.device)
    clock = CLOCKS[args.clock]
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = DeepLabV3Plus(ModelConfig(args.classes, args.backbone, width_mult=args.width_mult)).to(device).train()
    start_state = copy.deepcopy(model.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    rng = np.random.default_rng(0)
    images, _, seeds = zip(*(_image(rng, args.size) for _ in range(args.batch)))
    image = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().to(device)
    seed_map = torch.from_numpy(np.stack(seeds)).long().to(device)
    valid = torch.ones(args.batch, args.size, args.size, dtype=torch.bool, device=device)
    batch = LossBatch(image, seed_map, valid)
    use_amp = args.amp and device.type == "cuda"

    def step(loss) -> float:
        sync(device)
        t0 = clock()
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            logits = model(image)
        total, _ = reduce_terms(loss.terms(logits.float(), batch))
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        sync(device)
        return clock() - t0

    new_options = _parse_pairs(args.solver_option, "--solver-option")
    solvers = {"before": solver_config(dict(BEFORE), training=True), "new": solver_config(new_options, training=True)}
    losses = {"pce": make_loss("pce"),
              "collision, before": make_loss("collision", {"solver": dict(BEFORE)}),
              "collision, new": make_loss("collision", {"solver": new_options})}
    times: dict[str, list[float]] = {name: [] for name in losses}
    for loss in losses.values():
        step(loss)  # warm-up
    for _ in range(args.repeats):  # interleaved
        for name, loss in losses.items():
            times[name].append(step(loss))
    best = {name: min(v) for name, v in times.items()}

    def describe(cfg) -> str:
        c = cfg.resolved()
        return (f"{c.optimizer} steps {c.steps} lr {c.lr:g}, convex start at 1/{c.start_downsample} resolution, "
                f"{c.cg_max_iter} CG iterations ({c.cg_dtype} smoothing), closed-form gradient {c.closed_form}; "
                f"λ {c.lam:g}, η {c.eta:g}, "
                f"{c.relaxation} + {c.ce} CE, {c.neighbourhood}")

    print(f"device {device}, {args.backbone} ×{args.width_mult}, batch {args.batch}×{args.size}², K {args.classes}, "
          f"threads {torch.get_num_threads()}, clock {args.clock}, {args.repeats} interleaved repeats")
    for name in ("before", "new"):
        print(f"  solver {name:6s}: {describe(solvers[name])}")
    for name in losses:
        print(f"  {name:18s} min {1000 * best[name]:8.1f} ms/step   median {1000 * statistics.median(times[name]):8.1f}")
    pce, before, new = best["pce"], best["collision, before"], best["collision, new"]
    print(f"collision new / pce = {new / pce:.2f}× (goal ≤ 1.5×); before / pce = {before / pce:.2f}×; "
          f"new / before = {new / before:.2f}")
    if args.no_agreement:
        return

    def agreement(logits: torch.Tensor, label: str) -> None:
        ref_cfg = replace(solvers["new"].resolved(), steps=args.reference_steps, lr=REFERENCE_LR,
                          cg_max_iter=EXACT_CG_MAX_ITER, cg_dtype="float64", closed_form=True)
        ref = solve_pseudolabels(logits.double(), seed_map, image.double(), ref_cfg, valid)
        line = []
        for name, cfg in solvers.items():
            y = solve_pseudolabels(logits, seed_map, image, cfg, valid).double()
            e = float(energy(y, logits, ref_cfg).sum())
            line.append(f"{name} {100 * float(soft_jaccard(y, ref).mean()):.1f} % (E {e:.0f})")
        print(f"  {label}: soft Jaccard to the exact reference (E {float(energy(ref, logits, ref_cfg).sum()):.0f}): "
              + ", ".join(line))

    def energy(y: torch.Tensor, logits: torch.Tensor, cfg) -> torch.Tensor:
        from wsss.potts.solver import solution_energy

        return solution_energy(y, logits.double(), seed_map, image.double(), cfg, valid)

    print(f"agreement with the exact reference ({args.reference_steps} mirror steps at lr {REFERENCE_LR:g} from the "
          f"{EXACT_CG_MAX_ITER}-iteration convex start, float64, full resolution):")
    model.load_state_dict(start_state)
    with torch.no_grad():
        agreement(model(image).float(), "untrained network (the timed setting)")
    warm = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    pce_loss = make_loss("pce")
    for _ in range(args.warmup_steps):
        total, _ = reduce_terms(pce_loss.terms(model(image).float(), batch))
        warm.zero_grad(set_to_none=True)
        total.backward()
        warm.step()
    with torch.no_grad():
        agreement(model(image).float(), f"after {args.warmup_steps} pCE steps")


if __name__ == "__main__":
    main()
