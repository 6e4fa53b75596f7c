"""``wsss spml-labels``: SPML random-walk pseudo-labels from an embedding run and its seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from wsss.cam.seeds import SPML_ALPHA
from wsss.spml.random_walk import SPML_CRF, WALK_METHODS, RandomWalkConfig
from wsss_cli.common import command, config_of, console, resume_option, workers_option
from wsss_cli.crf import crf_device_option, engine_option, make_params

_W = RandomWalkConfig()
_C = SPML_CRF

SPML_LABELS_HELP = (
    "SPML pseudo-labels (Ke et al. 2021; docs/methods.md §10.5): the initial classifier's softmax averaged over the "
    "image and its mirror at 1/8 of the image size, each class divided by its maximum, classes absent from the seed "
    f"map zeroed, propagated by T^{_W.steps} (T = A / colsum(A), A_ij = exp({_W.power:g}·{_W.concentration:g}·(ê_iᵀê_j − 1)) "
    "on the unit embeddings, averaged over the mirror), upsampled to image size, then DenseCRF (SPML's parameters); "
    "writes a pseudolabels artifact (probs K×H×W float16, label H×W) for wsss train --loss pseudo --init-from RUN."
)


def register(app: typer.Typer) -> None:
    @command(app, "spml-labels", help=SPML_LABELS_HELP)
    def spml_labels(
        run: Path = typer.Argument(..., help="Run directory (or .pt) of wsss train --loss spml: embedding + initial classifier."),
        seeds: Path = typer.Option(..., "--seeds", help="Seeds artifact the run was trained on (scribbles, clicks, CAM seeds): the classes of each image."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output pseudolabels artifact (default: spml_pseudolabels.h5 next to the seeds)."),
        data: Optional[Path] = typer.Option(None, "--data", help="Dataset folder with the images (default: the one recorded in the seeds)."),
        layout: Optional[str] = typer.Option(None, "--layout", help="Dataset layout: auto, generic, voc, cityscapes, ade20k (default: recorded)."),
        split: Optional[str] = typer.Option(None, "--split", help="Dataset split (default: recorded)."),
        rw_power: float = typer.Option(_W.power, "--rw-power", help=f"Affinity power [Ke et al. 2021: {_W.power:g}]."),
        rw_concentration: float = typer.Option(_W.concentration, "--rw-concentration", help=f"Affinity concentration [Ke et al. 2021: {_W.concentration:g}]."),
        rw_squarings: int = typer.Option(_W.squarings, "--rw-squarings", help=f"T is squared this many times, 2^N steps [Ke et al. 2021: {_W.squarings}, 64 steps]."),
        rw_grid_scale: float = typer.Option(_W.grid_scale, "--rw-grid-scale", help=f"Walk grid relative to the image size [Ke et al. 2021: {_W.grid_scale:g}]."),
        rw_method: str = typer.Option(_W.method, "--rw-method", help=f"How T^(2^N) is applied: {', '.join(WALK_METHODS)} (squaring: the paper's; steps: 2^N products v ← vT; same result; auto: the cheaper)."),
        cams: Optional[Path] = typer.Option(None, "--cams", help="cams artifact (wsss cam export) of the seeds' images: walk the CAMs, with the background (1 − max CAM)^--cam-bg-power, instead of the initial classifier's softmax [Ke et al. 2021 tag pipeline; docs/methods.md §10.6]."),
        cam_bg_power: float = typer.Option(SPML_ALPHA, "--cam-bg-power", help=f"Power α of the CAMs' background score [SPML code: {SPML_ALPHA:g}]."),
        crf: bool = typer.Option(True, "--crf/--no-crf", help="DenseCRF after the walk [Ke et al. 2021: on]."),
        gauss_sxy: float = typer.Option(_C.gauss_sxy, "--gauss-sxy", help=f"Gaussian kernel spatial std, pixels [SPML code: {_C.gauss_sxy:g}]."),
        gauss_compat: float = typer.Option(_C.gauss_compat, "--gauss-compat", help=f"Gaussian kernel weight [SPML code: {_C.gauss_compat:g}]."),
        bi_sxy: float = typer.Option(_C.bi_sxy, "--bi-sxy", help=f"Bilateral kernel spatial std, pixels [SPML code: {_C.bi_sxy:g}]."),
        bi_srgb: float = typer.Option(_C.bi_srgb, "--bi-srgb", help=f"Bilateral kernel colour std, RGB 0–255 [SPML code: {_C.bi_srgb:g}]."),
        bi_compat: float = typer.Option(_C.bi_compat, "--bi-compat", help=f"Bilateral kernel weight [SPML code: {_C.bi_compat:g}]."),
        iterations: int = typer.Option(_C.iterations, "--crf-iterations", help=f"Mean-field iterations [SPML code: {_C.iterations}]."),
        eps: float = typer.Option(_C.eps, "--crf-eps", help="Probabilities are clipped to [eps, 1] before −ln [1e-5]."),
        engine: str = engine_option(),
        crf_device: str = crf_device_option(),
        device: str = typer.Option("cpu", "--device", help="Device of the network and the walk: cpu, cuda, cuda:N, auto."),
        workers: int = workers_option(),
        resume: bool = resume_option(),
    ) -> None:
        from wsss.stages import spml_labels as stage

        walk = RandomWalkConfig(power=rw_power, concentration=rw_concentration, squarings=rw_squarings,
                                grid_scale=rw_grid_scale, method=rw_method)
        params = make_params(gauss_sxy, gauss_compat, bi_sxy, bi_srgb, bi_compat, iterations, eps, engine, crf_device) if crf else None
        if out is None:
            out = seeds.with_name("spml_pseudolabels.h5")
        config = config_of(stage="spml-labels", run=run, seeds=seeds, out=out, data=data, layout=layout, split=split,
                           device=device, walk=walk.to_dict(), crf=None if params is None else params.to_dict(),
                           cams=cams, cam_bg_power=cam_bg_power)
        path = stage.run(run, seeds, out, walk=walk, crf=params, cams=cams, cam_bg_power=cam_bg_power, data=data,
                         layout=layout, split=split, device=device,
                         workers=workers, resume=resume, config=config)
        from wsss.parallel import distributed_context

        if distributed_context().is_main:
            console.print(f"wrote {path}", highlight=False)


__all__ = ["SPML_LABELS_HELP", "register"]
