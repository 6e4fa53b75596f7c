"""``wsss show``: PNG overlays of artifacts with the VOC palette and a legend."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from wsss_cli.common import command, console, layout_option


def register(app: typer.Typer) -> None:
    @command(app, "show")
    def show(
        artifacts: Optional[List[Path]] = typer.Argument(
            None, help="Artifacts to draw, one panel each; their kind decides the panel (seeds, predictions, pseudolabels, superpixels, cams)."
        ),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder for the PNGs (one per image, named after the image id)."),
        data: Optional[Path] = typer.Option(None, "--data", help="Dataset root. Default: the dataset recorded in the artifacts."),
        layout: str = layout_option(),
        split: Optional[str] = typer.Option(None, "--split", help="Dataset split. Default: the artifacts' recorded split, else train."),
        seeds: Optional[List[Path]] = typer.Option(None, "--seeds", help="A seeds artifact (labelled pixels painted opaque). Repeatable."),
        pred: Optional[List[Path]] = typer.Option(None, "--pred", help="A predictions artifact (arg-max blended). Repeatable."),
        pseudo: Optional[List[Path]] = typer.Option(None, "--pseudo", help="A pseudolabels artifact (arg-max blended). Repeatable."),
        superpixels: Optional[List[Path]] = typer.Option(None, "--superpixels", help="A superpixels artifact (boundaries in yellow). Repeatable."),
        cams: Optional[List[Path]] = typer.Option(None, "--cams", help="A cams artifact (max over classes as heat). Repeatable."),
        ids: Optional[List[str]] = typer.Option(None, "--ids", help="Image ids to draw (repeat the option or separate with commas). Default: the first --limit."),
        limit: int = typer.Option(8, "--limit", "-n", min=1, help="Number of images to draw when --ids is not given (sorted ids)."),
        alpha: float = typer.Option(0.5, "--alpha", min=0.0, max=1.0, help="Opacity of label colours and heat maps over the image."),
        scale: int = typer.Option(0, "--scale", min=0, help="Integer upscaling of the panels; 0 = enough for a 160 px short side (max 8)."),
        gt: bool = typer.Option(True, "--gt/--no-gt", help="Add a ground-truth panel when the dataset has masks."),
    ) -> None:
        """Draw PNG overlays: image | each artifact | ground truth, side by side, with a legend of the classes present."""
        from wsss.artifacts import Artifact
        from wsss.stages.show import run

        loaded = []
        for paths, kind in ((seeds, "seeds"), (pred, "predictions"), (pseudo, "pseudolabels"),
                            (superpixels, "superpixels"), (cams, "cams")):
            loaded += [Artifact(p, kind=kind) for p in (paths or [])]
        loaded += list(artifacts or [])
        wanted = [i.strip() for item in (ids or []) for i in item.split(",") if i.strip()] or None
        folder = run(out, loaded, data=data, layout=layout, split=split, ids=wanted, limit=limit, alpha=alpha,
                     scale=scale, ground_truth=gt)
        console.print(f"wrote overlays to {folder}", highlight=False)
