"""``wsss prepare-scribbles | prepare-points | prepare-blocks | prepare-tags``: weak annotations.

Option parsing and the statistics table only; the work is in :mod:`wsss.stages.prepare` and
:mod:`wsss.annotations`. Formats and defaults: docs/methods.md §7.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from wsss_cli.common import command, config_of, console, err_console, layout_option, resume_option, seed_option, split_option, workers_option

DATASET_HELP = "Dataset root (images and, for generation, dense masks) in any supported layout."
OUTPUT_HELP = "Artifact to write (.h5)."


def _list_option() -> Any:
    return typer.Option(None, "--list", help="List file of image ids replacing the split's list (one id per line).")


def _skip_bad_option() -> Any:
    return typer.Option(
        False, "--skip-bad",
        help="Leave out images whose annotation or mask is bad (malformed XML, unknown class, point outside the image, "
        "size mismatch, no object) and list them at the end. Default: stop at the first one, writing nothing.",
    )


def _background_class_option() -> Any:
    return typer.Option(
        "auto", "--background-class",
        help="The background class: 'auto' = the class named background (VOC class 0), 'none', or a class name/index.",
    )


def _mask_ignore_option() -> Any:
    return typer.Option(
        True, "--mask-ignore/--no-mask-ignore",
        help="Imported annotations: unlabel pixels whose dense mask label is 255 when the dataset has masks "
        "(docs/methods.md §7: no seed on an ignored pixel). Generated annotations always respect 255.",
    )


def _objects_option() -> Any:
    from wsss.stages.prepare import DEFAULT_OBJECTS

    return typer.Option(
        DEFAULT_OBJECTS, "--objects",
        help="Generated: which objects (8-connected regions of one class) get a seed, as a human annotator would: "
        "'large' = one per object of at least --min-object of the image area, smaller fragments unlabelled "
        "(toolkit rule: full scribbles then label ≈ 3 % of the pixels, like ScribbleSup's human scribbles on VOC); "
        "'all' = every fragment (the earlier behaviour). Default: large.",
    )


def _min_object_option() -> Any:
    from wsss.annotations.rule import MIN_OBJECT_FRACTION

    return typer.Option(
        MIN_OBJECT_FRACTION, "--min-object",
        help=f"Generated, --objects large: minimum object area as a fraction of the image area "
        f"(default {MIN_OBJECT_FRACTION}: 86 px on a 240×180 frame, 375 px on a 500×375 VOC image).",
    )


def print_stats(stats: dict, classes: list[str], output: Path) -> None:
    """Rich table of the statistics a prepare command stored (``stats`` attribute)."""
    table = Table(title=f"statistics of {output}", show_header=False)
    table.add_row("images", str(stats.get("images")))
    if "labelled_fraction" in stats:
        f = stats["labelled_fraction"]
        table.add_row("labelled pixels", f"{100 * f['mean']:.2f} % mean, {100 * f['min']:.2f} – {100 * f['max']:.2f} % range "
                      f"({stats['labelled_pixels']} of {stats['pixels']})")
        seeds = stats.get("seeds_per_image")
        if seeds is not None:
            table.add_row("seeds per image", f"{seeds['mean']:.1f} mean, {seeds['min']} – {seeds['max']} range")
        if stats.get("objects") is not None:
            table.add_row("objects without seed", f"{stats['objects_without_seed']} of {stats['objects']}")
            if stats.get("objects_below_minimum") is not None:
                table.add_row("objects below the minimum size", f"{stats['objects_below_minimum']} (unlabelled by the object rule)")
        else:
            table.add_row("objects without seed", "n/a (no dense masks)")
        per_class = dict(zip(classes, stats.get("per_class_pixels", [])))
        name = "labelled pixels per class"
    else:
        t = stats["tags_per_image"]
        table.add_row("tags per image", f"{t['mean']:.2f} mean, {t['min']} – {t['max']} range")
        table.add_row("boxes", str(stats.get("boxes")))
        per_class = {k: f"{n} images, {b} boxes" for k, n, b in zip(classes, stats.get("per_class_images", []), stats.get("per_class_boxes", []))}
        name = "per class"
    table.add_row("skipped", str(len(stats.get("skipped", []))))
    console.print(table)
    classes = Table(title=name)
    classes.add_column("class")
    classes.add_column("count", justify="right")
    for k, v in per_class.items():
        classes.add_row(str(k), str(v))
    console.print(classes)
    skipped = stats.get("skipped", [])
    if skipped:
        err_console.print(f"[bold yellow]skipped {len(skipped)} image(s):[/]", highlight=False)
        for item in skipped:
            err_console.print(f"  {item['image']}: {item['reason']}", highlight=False, soft_wrap=True)


def _report(path: Path) -> None:
    from wsss.artifacts import Artifact

    with Artifact(path) as art:
        stats = art.json_attr("stats", {})
        classes = art.classes
    print_stats(stats, classes, path)
    console.print(f"wrote {path}", highlight=False)


def register(app: typer.Typer) -> None:
    @command(app, "prepare-scribbles")
    def prepare_scribbles(
        dataset: Path = typer.Argument(..., help=DATASET_HELP),
        output: Path = typer.Argument(..., help=OUTPUT_HELP),
        xml: Optional[Path] = typer.Option(None, "--xml", help="Import ScribbleSup XML files <image_id>.xml from this folder."),
        png: Optional[Path] = typer.Option(None, "--png", help="Import seed PNGs <image_id>.png (palette or grey, 255 = unlabelled) from this folder."),
        from_masks: bool = typer.Option(False, "--from-masks", help="Generate skeleton scribbles from the dense masks (the default when neither --xml nor --png is given)."),
        length_ratio: float = typer.Option(1.0, "--length-ratio", help="Keep the centred piece of relative length r of every scribble; 0 = one click "
                                           "(ScribbleSup/regularized-losses shortened scribbles use 0, 0.3, 0.5, 0.8, 1). Default 1: full length."),
        shrink_rate: float = typer.Option(0.0, "--shrink-rate", help="URSS scribble-shrink: keep a piece of relative length 1-s; 1 = a spot. Default 0 (off)."),
        shrink_position: str = typer.Option("random", "--shrink-position", help="Where the shrunk piece sits: random (uniform start, toolkit default; Pan et al. 2021 say only 'shrunk randomly') or centre."),
        drop_rate: float = typer.Option(0.0, "--drop-rate", help="URSS scribble-drop: each object loses its scribbles with probability d (Pan et al. 2021: 0.1-0.5). Default 0 (off)."),
        drop_unit: str = typer.Option("object", "--drop-unit", help="Drop per 'object' (Pan et al. 2021, §5.1, default) or per 'scribble' (§5.4 wording)."),
        drop_background: bool = typer.Option(False, "--drop-background/--keep-background", help="Allow dropping background scribbles (Pan et al. 2021 do not say; default: background kept)."),
        width: Optional[int] = typer.Option(None, "--width", help="Stroke width in px. Default: --xml 3 (rloss's ScribbleSup conversion, used by "
                                            "URSS and SPML); generated: 3 px per 500 px of the image's longer side, at least 1 (the same stroke "
                                            "relative to the image as those VOC scribbles: 1 px on 240×180 CamVid)."),
        objects: str = _objects_option(),
        min_object: float = _min_object_option(),
        min_area: int = typer.Option(16, "--min-area", help="Generated, --objects all: objects smaller than this many px get a point instead (toolkit default 16)."),
        erode: int = typer.Option(0, "--erode", help="Generated: erode each object by a disk of this radius before skeletonising (default 0)."),
        background: bool = typer.Option(True, "--background/--no-background", help="Generated: scribble the background objects too (default: yes, docs/methods.md §7.2)."),
        background_class: str = _background_class_option(),
        mask_ignore: bool = _mask_ignore_option(),
        layout: str = layout_option(),
        split: str = split_option(),
        list_file: Optional[Path] = _list_option(),
        seed: int = seed_option(),
        workers: int = workers_option(),
        resume: bool = resume_option(),
        skip_bad: bool = _skip_bad_option(),
    ) -> None:
        """Scribble seeds: import ScribbleSup XML or seed PNGs, or generate skeleton scribbles from dense masks;
        optionally shorten (--length-ratio), shrink (--shrink-rate) and drop (--drop-rate) them. Writes a 'seeds' artifact."""
        from wsss.errors import UserError
        from wsss.stages.prepare import run_scribbles

        if from_masks and (xml is not None or png is not None):
            raise UserError("--from-masks: cannot be combined with --xml or --png. Choose one source.")
        options = dict(dataset=dataset, output=output, xml_dir=xml, png_dir=png, length_ratio=length_ratio, shrink_rate=shrink_rate,
                       shrink_position=shrink_position, drop_rate=drop_rate, drop_unit=drop_unit, drop_background=drop_background,
                       width=width, objects=objects, min_object=min_object, min_area=min_area, erode=erode, background=background, background_class=background_class,
                       mask_ignore=mask_ignore, layout=layout, split=split, list_file=list_file, seed=seed, workers=workers,
                       resume=resume, skip_bad=skip_bad)
        config = config_of(**options)
        options.pop("dataset")
        path = run_scribbles(dataset, config=config, **options)
        _report(path)

    @command(app, "prepare-points")
    def prepare_points(
        dataset: Path = typer.Argument(..., help=DATASET_HELP),
        output: Path = typer.Argument(..., help=OUTPUT_HELP),
        points: Optional[Path] = typer.Option(None, "--points", help="Import clicks from a CSV (image_id,x,y,class[,radius]) or JSON file; "
                                             "x = column, y = row, 0-based. Default: one click per object of the dense masks."),
        random: bool = typer.Option(False, "--random", help="Generated: a uniformly random pixel of each object instead of the pixel "
                                    "farthest from its boundary (default: distance-transform maximum, docs/methods.md §7.2)."),
        radius: int = typer.Option(0, "--radius", help="Draw each click as a disk of this radius in px (default 0: one pixel; "
                                   "SPML's point data is 6 px wide, about --radius 3)."),
        objects: str = _objects_option(),
        min_object: float = _min_object_option(),
        background: bool = typer.Option(True, "--background/--no-background", help="Generated: click the background objects too (default: yes)."),
        background_class: str = _background_class_option(),
        mask_ignore: bool = _mask_ignore_option(),
        layout: str = layout_option(),
        split: str = split_option(),
        list_file: Optional[Path] = _list_option(),
        seed: int = seed_option(),
        workers: int = workers_option(),
        resume: bool = resume_option(),
        skip_bad: bool = _skip_bad_option(),
    ) -> None:
        """Point seeds: one click per object of the dense masks, or clicks imported from CSV/JSON. Writes a 'seeds' artifact."""
        from wsss.stages.prepare import run_points

        options = dict(dataset=dataset, output=output, points_file=points, random=random, radius=radius, objects=objects,
                       min_object=min_object, background=background,
                       background_class=background_class, mask_ignore=mask_ignore, layout=layout, split=split,
                       list_file=list_file, seed=seed, workers=workers, resume=resume, skip_bad=skip_bad)
        config = config_of(**options)
        options.pop("dataset")
        _report(run_points(dataset, config=config, **options))

    @command(app, "prepare-blocks")
    def prepare_blocks(
        dataset: Path = typer.Argument(..., help=DATASET_HELP),
        output: Path = typer.Argument(..., help=OUTPUT_HELP),
        block_size: int = typer.Option(32, "--block-size", help="Side of the square grid blocks in px (Tree Energy Loss block annotation; "
                                       "TEL's value is not published: toolkit default 32)."),
        keep: float = typer.Option(0.5, "--keep", help="Fraction of blocks kept with their dense labels, chosen at random (toolkit default 0.5)."),
        objects: str = _objects_option(),
        min_object: float = _min_object_option(),
        layout: str = layout_option(),
        split: str = split_option(),
        list_file: Optional[Path] = _list_option(),
        seed: int = seed_option(),
        workers: int = workers_option(),
        resume: bool = resume_option(),
        skip_bad: bool = _skip_bad_option(),
    ) -> None:
        """Block seeds (TEL): a random fraction of grid blocks keeps its dense labels, the rest is unlabelled. Writes a 'seeds' artifact."""
        from wsss.stages.prepare import run_blocks

        options = dict(dataset=dataset, output=output, block_size=block_size, keep=keep, objects=objects, min_object=min_object,
                       layout=layout, split=split,
                       list_file=list_file, seed=seed, workers=workers, resume=resume, skip_bad=skip_bad)
        config = config_of(**options)
        options.pop("dataset")
        _report(run_blocks(dataset, config=config, **options))

    @command(app, "prepare-tags")
    def prepare_tags(
        dataset: Path = typer.Argument(..., help=DATASET_HELP),
        output: Path = typer.Argument(..., help=OUTPUT_HELP),
        source: str = typer.Option("auto", "--source", help="Where tags come from: auto (--csv if given, else VOC Annotations/*.xml "
                                   "if present or --xml, else the dense masks), masks, xml or csv."),
        xml: Optional[Path] = typer.Option(None, "--xml", help="Folder of VOC-style <image_id>.xml (default: the VOC layout's Annotations/)."),
        csv: Optional[Path] = typer.Option(None, "--csv", help="CSV of image_id,class[,class...] lines (names or indices)."),
        boxes: str = typer.Option("auto", "--boxes", help="Boxes from: auto (the XML with XML tags, connected components with mask "
                                  "tags, none with CSV tags), xml, masks or none."),
        background_class: str = _background_class_option(),
        min_area: int = typer.Option(1, "--min-area", help="Mask boxes: components smaller than this many px get no box (default 1)."),
        layout: str = layout_option(),
        split: str = split_option(),
        list_file: Optional[Path] = _list_option(),
        workers: int = workers_option(),
        resume: bool = resume_option(),
        skip_bad: bool = _skip_bad_option(),
    ) -> None:
        """Image-level tags (background excluded) and boxes from dense masks, VOC XML or a CSV, for the CAM stage.
        Writes a 'tags' artifact (boxes: class, xmin, ymin, xmax, ymax, 0-based inclusive)."""
        from wsss.stages.prepare import run_tags

        options = dict(dataset=dataset, output=output, source=source, xml_dir=xml, csv_file=csv, boxes=boxes,
                       background_class=background_class, min_area=min_area, layout=layout, split=split,
                       list_file=list_file, workers=workers, resume=resume, skip_bad=skip_bad)
        config = config_of(**options)
        options.pop("dataset")
        _report(run_tags(dataset, config=config, **options))
