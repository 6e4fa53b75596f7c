"""``wsss solve``: soft pseudo-labels from seeds (and predictions) with the self-labeling solver."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from wsss.potts.solver import SolverConfig
from wsss_cli.common import command, config_of, console, resume_option, workers_option

_D = SolverConfig()

SOLVE_HELP = (
    "Minimizes η Σ CE(y, σ) + λ Σ w_pq P(y_p, y_q) over soft pseudo-labels y with the seeds fixed "
    "(Zhang & Boykov 2025; docs/methods.md §4.5), per image; writes a pseudolabels artifact (probs K×H×W float16, label H×W). "
    "Default optimizer 'mirror': convex start (random walker with priors, 6 multigrid-CG iterations; --cg-max-iter 100 for the exact solve) then "
    "preconditioned mirror descent on the chosen energy; 'sgd' with --steps 200 --lr 0.075 is the paper's. "
    "Without --predictions (seed propagation) the default is the convex start alone: the random walker, 5 mixed-precision CG iterations."
)


def register(app: typer.Typer) -> None:
    @command(app, "solve", help=SOLVE_HELP)
    def solve(
        seeds: Path = typer.Argument(..., help="Input seeds artifact (scribbles, points, blocks, CAM seeds)."),
        predictions: Optional[Path] = typer.Option(None, "--predictions", "-p", help="Predictions (or pseudolabels) artifact with class probabilities at image size: the solver's σ and starting logits."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output pseudolabels artifact (default: pseudolabels.h5 next to the seeds)."),
        data: Optional[Path] = typer.Option(None, "--data", help="Dataset folder with the images (default: the one recorded in the seeds)."),
        layout: Optional[str] = typer.Option(None, "--layout", help="Dataset layout: auto, generic, voc, cityscapes, ade20k (default: recorded)."),
        split: Optional[str] = typer.Option(None, "--split", help="Dataset split (default: recorded)."),
        init: str = typer.Option(_D.init, "--init", help="logits (start from the predictions, Zhang & Boykov 2025) or uniform (allowed without --predictions)."),
        relaxation: str = typer.Option(_D.relaxation, "--relaxation", help="Potts relaxation: bilinear, quadratic, normalized-quadratic, collision-ce, collision-divergence, log-quadratic [Zhang & Boykov 2025 recommend: collision-divergence]."),
        ce: str = typer.Option(_D.ce, "--ce", help="CE term: standard, reverse, collision, quadratic [Zhang & Boykov 2025, best: collision]."),
        neighbourhood: str = typer.Option(_D.neighbourhood, "--neighbourhood", help="nn4 (Zhang & Boykov 2025), nn8 or dn (dn: bilinear/quadratic only)."),
        eta: float = typer.Option(_D.eta, "--eta", help="Weight η of the CE term [0.3: an unverified secondary source; best of 0.1 / 0.3 / 1.0 on the demo data; docs/methods.md §4.5]."),
        lam: float = typer.Option(_D.lam, "--lambda", help="Weight λ of the Potts term [60: toolkit, chosen on the demo data and CamVid (wsss.potts.solver.SolverConfig); an unverified secondary source says 6]."),
        bandwidth: float = typer.Option(_D.bandwidth, "--bandwidth", help="Colour bandwidth s of the grid weights [Zhang & Boykov 2025: 9 VOC, 3 Cityscapes/ADE20k]."),
        optimizer: str = typer.Option(_D.optimizer, "--optimizer", help="mirror (toolkit default), sgd (Zhang & Boykov 2025) or adam."),
        steps: Optional[int] = typer.Option(None, "--steps", help="Gradient steps [mirror 50, without --predictions 0 (the convex start alone: the random walker, docs/methods.md §4.5); sgd/adam 200 (Zhang & Boykov 2025)]."),
        lr: Optional[float] = typer.Option(None, "--lr", help="Step size [mirror 1.0; sgd 0.075 (Zhang & Boykov 2025); adam 0.1]."),
        cg_max_iter: Optional[int] = typer.Option(_D.cg_max_iter, "--cg-max-iter", help="Multigrid-CG iterations of the convex start [6: toolkit, beats the paper setting's agreement in < 1/4 of its time; without --predictions 5 (seed propagation, docs/methods.md §4.5); 100 solves the convex problem to 1e-6, >= 99.5 % of the exact optimum; benchmarks/solver.py]."),
        dn_sigma_xy: float = typer.Option(_D.dn_sigma_xy, "--dn-sigma-xy", help="DN spatial bandwidth [Zhang & Boykov 2025: 100]."),
        dn_sigma_rgb: float = typer.Option(_D.dn_sigma_rgb, "--dn-sigma-rgb", help="DN colour bandwidth [rloss: 15; not in the paper]."),
        device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N, auto."),
        workers: int = workers_option(),
        resume: bool = resume_option(),
        allow_empty: bool = typer.Option(False, "--allow-empty", help="With --predictions: accept seeds without any labelled pixel (the solver then only regularizes the predictions). Default: an error."),
    ) -> None:
        from wsss.stages import solve as stage

        solver = SolverConfig(init=init, relaxation=relaxation, ce=ce, neighbourhood=neighbourhood, eta=eta,
                              lam=lam, bandwidth=bandwidth, optimizer=optimizer, steps=steps, lr=lr,
                              cg_max_iter=cg_max_iter, dn_sigma_xy=dn_sigma_xy, dn_sigma_rgb=dn_sigma_rgb)
        if out is None:
            out = seeds.with_name("pseudolabels.h5")
        config = config_of(seeds=seeds, predictions=predictions, out=out, data=data, layout=layout, split=split,
                           device=device, **{k: v for k, v in solver.__dict__.items()})
        path = stage.run(seeds, out, predictions=predictions, solver=solver, data=data, layout=layout,
                         split=split, device=device, workers=workers, resume=resume, allow_empty=allow_empty,
                         config=config)
        from wsss.parallel import distributed_context

        if distributed_context().is_main:
            console.print(f"wrote {path}", highlight=False)


__all__ = ["SOLVE_HELP", "register"]
