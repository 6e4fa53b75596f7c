"""``wsss spml-relabel``: SPML's cross-image nearest-neighbour relabelling of pseudo-labels (the tag pipeline)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from wsss.spml.random_walk import SPML_CRF
from wsss.spml.relabel import RelabelConfig
from wsss_cli.common import command, config_of, console, resume_option, workers_option
from wsss_cli.crf import crf_device_option, engine_option, make_params
from wsss_cli.predict import parse_scales

_R = RelabelConfig()
_C = SPML_CRF


def _csv(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:g}" for v in values)


SPML_RELABEL_HELP = (
    "SPML cross-image nearest-neighbour relabelling (Ke et al. 2021, appendix A.4, the tag pipeline; docs/methods.md "
    f"§10.6): k-means prototypes ({_R.grid}×{_R.grid} grid) of every training image's embedding at scales "
    f"{_csv(_R.memory_scales)}, each labelled with the majority of the given pseudo-labels, form a memory; each "
    f"image's own clusters (scales {_csv(_R.scales)} and mirrored) take the labels of their top-{_R.top_k} memory "
    f"prototypes by vote, each present class divided by max(its maximum, {_R.floor:g}), then DenseCRF (SPML's "
    "parameters). Round 1: --labels from wsss spml-labels on CAM seeds; round 2: the round-1 final classifier's "
    "predictions on the training images. Writes a pseudolabels artifact for wsss train --loss pseudo --init-from RUN."
)


def register(app: typer.Typer) -> None:
    @command(app, "spml-relabel", help=SPML_RELABEL_HELP)
    def spml_relabel(
        run: Path = typer.Argument(..., help="Run directory (or .pt) of wsss train --loss spml: its embedding."),
        labels: Path = typer.Option(..., "--labels", help="Pseudo-labels to refine: a pseudolabels artifact (wsss spml-labels) or a predictions artifact (wsss predict of a final classifier on the training images); their label map."),
        seeds: Path = typer.Option(..., "--seeds", help="Seeds artifact of the training images (CAM seeds for tags): the images and the classes of each."),
        out: Path = typer.Option(..., "--out", "-o", help="Output pseudolabels artifact."),
        data: Optional[Path] = typer.Option(None, "--data", help="Dataset folder with the images (default: the one recorded in the seeds)."),
        layout: Optional[str] = typer.Option(None, "--layout", help="Dataset layout: auto, generic, voc, cityscapes, ade20k (default: recorded)."),
        split: Optional[str] = typer.Option(None, "--split", help="Dataset split (default: recorded)."),
        grid: int = typer.Option(_R.grid, "--grid", help=f"k-means grid side, G² clusters per image and scale [SPML code: {_R.grid}]."),
        kmeans_iterations: int = typer.Option(_R.iterations, "--kmeans-iterations", help=f"k-means iterations [SPML code: {_R.iterations}]."),
        top_k: int = typer.Option(_R.top_k, "--top-k", help=f"Memory prototypes retrieved per cluster [SPML code: {_R.top_k}]."),
        memory_scales: str = typer.Option(_csv(_R.memory_scales), "--memory-scales", help=f"Image scales of the memory prototypes [SPML code: {_csv(_R.memory_scales)}]."),
        scales: str = typer.Option(_csv(_R.scales), "--scales", help=f"Image scales of the votes [SPML code: {_csv(_R.scales)}]."),
        flip: bool = typer.Option(_R.flip, "--flip/--no-flip", help="Also vote on the mirrored image at each scale [SPML code: on]."),
        floor: float = typer.Option(_R.floor, "--floor", help=f"Lower bound of the maximum each present class is divided by [SPML code: {_R.floor:g}]."),
        crf: bool = typer.Option(True, "--crf/--no-crf", help="DenseCRF after the votes, with the parameters of wsss spml-labels [Ke et al. 2021: on]."),
        engine: str = engine_option(),
        crf_device: str = crf_device_option(),
        device: str = typer.Option("cpu", "--device", help="Device of the network: cpu, cuda, cuda:N, auto."),
        workers: int = workers_option(),
        resume: bool = resume_option(),
    ) -> None:
        from wsss.stages import spml_relabel as stage

        relabel = RelabelConfig(grid=grid, iterations=kmeans_iterations, top_k=top_k,
                                memory_scales=parse_scales(memory_scales, "--memory-scales"),
                                scales=parse_scales(scales), flip=flip, floor=floor)
        params = (make_params(_C.gauss_sxy, _C.gauss_compat, _C.bi_sxy, _C.bi_srgb, _C.bi_compat, _C.iterations, _C.eps,
                              engine, crf_device) if crf else None)
        config = config_of(stage="spml-relabel", run=run, labels=labels, seeds=seeds, out=out, data=data, layout=layout,
                           split=split, device=device, relabel=relabel.to_dict(),
                           crf=None if params is None else params.to_dict())
        path = stage.run(run, labels, seeds, out, relabel=relabel, crf=params, data=data, layout=layout, split=split,
                         device=device, workers=workers, resume=resume, config=config)
        from wsss.parallel import distributed_context

        if distributed_context().is_main:
            console.print(f"wrote {path}", highlight=False)


__all__ = ["SPML_RELABEL_HELP", "register"]
