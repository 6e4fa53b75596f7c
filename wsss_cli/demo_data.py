"""``wsss demo-data``: generate the built-in procedural dataset."""

from __future__ import annotations

from pathlib import Path

import typer

from wsss.data.demo import DEMO_DEFAULTS, MAX_CLASSES, SHAPE_FAMILIES
from wsss_cli.common import command, console, seed_option


def register(app: typer.Typer) -> None:
    @command(app, "demo-data")
    def demo_data(
        out: Path = typer.Argument(..., help="Output folder (generic layout: OUT/{train,val}/{images,masks}/, OUT/classes.txt)."),
        train: int = typer.Option(DEMO_DEFAULTS["train"], "--train", min=0, help="Number of training images."),
        val: int = typer.Option(DEMO_DEFAULTS["val"], "--val", min=0, help="Number of validation images."),
        size: tuple[int, int] = typer.Option(DEMO_DEFAULTS["size"], "--size", help="Image height and width in pixels (≥ 16 each)."),
        classes: int = typer.Option(
            DEMO_DEFAULTS["classes"], "--classes", min=2, max=MAX_CLASSES,
            help=f"Number of classes K including background; object classes are the shape families {', '.join(SHAPE_FAMILIES)} in that order.",
        ),
        seed: int = seed_option(DEMO_DEFAULTS["seed"]),
        ignore_border: int = typer.Option(
            DEMO_DEFAULTS["ignore_border"], "--ignore-border", min=0,
            help="Mark pixels within this many px of a class boundary as 255 (ignore), like VOC's void band. 0 = off.",
        ),
    ) -> None:
        """Generate the procedural demo dataset: textured shapes (one shape family and one saturated hue per class, wobbly outlines, rims that fade towards grey) on grey gradient backgrounds with clutter, some of it coloured like an object class, with dense masks.

Class identity is learnable from colour and texture in minutes; exact outlines follow colour edges but not the interior colours, so scribbles alone place them poorly and edge-aware losses help (module wsss.data.demo, docs/demo-results.md). Defaults (64 train / 32 val images of 96×96, 5 classes) train to a useful mIoU in minutes on a 2-core CPU (examples/compare-losses.sh). The same --seed gives byte-identical files; --train N gives the first N images of any larger --train.
        """
        from wsss.data.demo import generate_demo

        path = generate_demo(out, train=train, val=val, size=size, classes=classes, seed=seed, ignore_border=ignore_border)
        console.print(f"wrote {train} train + {val} val images ({size[0]}×{size[1]}, {classes} classes) to {path}", highlight=False)
