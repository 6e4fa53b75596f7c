"""``wsss superpixels``: SLIC superpixels of a dataset's images."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from wsss.stages.superpixels import DEFAULT_COMPACTNESS, DEFAULT_N_SEGMENTS, DEFAULT_SIGMA
from wsss_cli.common import command, config_of, console, layout_option, resume_option, split_option, workers_option


def register(app: typer.Typer) -> None:
    @command(app, "superpixels")
    def superpixels(
        data: Path = typer.Argument(..., help="Dataset root (see --layout)."),
        output: Path = typer.Argument(..., help="Output artifact (.h5), kind 'superpixels'."),
        layout: str = layout_option(),
        split: str = split_option(),
        list_file: Optional[Path] = typer.Option(None, "--list-file", help="Image ids to process, one per line (replaces the split's list)."),
        n_segments: int = typer.Option(
            DEFAULT_N_SEGMENTS, "--n-segments", min=1,
            help="Approximate number of SLIC segments per image (toolkit choice; URSS's MATLAB settings are unpublished).",
        ),
        compactness: float = typer.Option(
            DEFAULT_COMPACTNESS, "--compactness", min=0.0,
            help="SLIC colour/space trade-off in CIELAB; larger = squarer segments (skimage's default).",
        ),
        sigma: float = typer.Option(
            DEFAULT_SIGMA, "--sigma", min=0.0,
            help="Gaussian pre-smoothing in pixels before SLIC (toolkit choice; skimage's default is 0).",
        ),
        workers: int = workers_option(),
        resume: bool = resume_option(),
    ) -> None:
        """SLIC superpixels (scikit-image) of every image: writes 'segments' (H×W int32) per image.

        Used by URSS (pseudo-boundaries) and SPML (low-level regions). Runs under torchrun too.
        """
        from wsss.stages.superpixels import run

        config = config_of(stage="superpixels", data=data, layout=layout, split=split, list_file=list_file,
                           n_segments=n_segments, compactness=compactness, sigma=sigma, workers=workers, resume=resume)
        path = run(data, output, layout=layout, split=split, list_file=list_file, n_segments=n_segments,
                   compactness=compactness, sigma=sigma, workers=workers, resume=resume, config=config)
        from wsss.parallel import distributed_context

        if distributed_context().is_main:
            console.print(f"wrote {path}", highlight=False)
