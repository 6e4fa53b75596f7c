"""Stage ``prepare-*``: weak annotations for a dataset, imported or generated, as artifacts.

- :func:`run_scribbles` → ``seeds``: ScribbleSup XML, seed PNGs, or skeleton scribbles generated
  from dense masks; shorten / shrink / drop.
- :func:`run_points` → ``seeds``: one click per object, or clicks from a CSV / JSON file.
- :func:`run_blocks` → ``seeds``: a random fraction of grid blocks with their dense labels.
- :func:`run_tags` → ``tags``: image-level tags and boxes from masks, VOC XML or a CSV.

Every function takes the dataset (root, layout, split), the output path and its options, and
returns the artifact path. Randomness comes from :func:`wsss.annotations.seeding.image_rng`
(seed, image id, purpose), so the output depends neither on ``workers`` nor on ``torchrun`` ranks.
Dense pixels labelled 255 are never labelled. Bad inputs raise :class:`UserError` naming the file;
with ``skip_bad`` the image is left out instead and listed in the statistics (``stats.skipped``).
The artifact's root attribute ``stats`` holds :class:`~wsss.annotations.stats.SeedStatistics` /
:class:`~wsss.annotations.stats.TagStatistics` (JSON); each image group has attributes
``objects`` and ``objects_without_seed`` when dense masks were available.

Formats and defaults: docs/methods.md §7; artifact layouts: docs/artifacts.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from wsss.annotations.blocks import block_grid, blocks_from_mask
from wsss.annotations.objects import Objects, find_background, find_objects
from wsss.annotations.points import check_points, points_from_objects, read_points_file, render_points
from wsss.annotations.rule import MIN_OBJECT_FRACTION, OBJECT_RULES, annotated_objects, stroke_width, unannotated_pixels
from wsss.annotations.scribbles import apply_drop, edit_scribbles, render_scribbles, scribbles_from_objects
from wsss.annotations.scribblesup import load_seed_png, read_scribblesup_xml
from wsss.annotations.seeding import image_rng
from wsss.annotations.stats import SeedStatistics, TagStatistics
from wsss.annotations.tags import boxes_from_mask, read_tags_csv, read_voc_xml, tags_from_mask
from wsss.artifacts import ArtifactWriter
from wsss.constants import IGNORE_INDEX
from wsss.data import Dataset, open_dataset
from wsss.errors import UserError
from wsss.parallel import run_per_image
from wsss.paths import StageInputs
from wsss.validation import check_number


#: Defaults (toolkit choices unless a source is named)
DEFAULT_WIDTH = 3  # imported ScribbleSup XML: rloss's conversion, 3 px (generated: wsss.annotations.rule.stroke_width)
DEFAULT_MIN_AREA = 16  # objects="all": smaller objects get a point instead of a scribble
DEFAULT_OBJECTS = "large"  # the object rule of wsss.annotations.rule
DEFAULT_BLOCK_SIZE = 32  # toolkit choice: TEL's block size is not published
DEFAULT_KEEP = 0.5  # toolkit choice


# ---------------------------------------------------------------------------------------------
# shared helpers


def _open(root: str | Path, layout: str, split: str, list_file: str | Path | None) -> Dataset:
    options = {"list_file": Path(list_file)} if list_file is not None else {}
    return open_dataset(root, layout=layout, split=split, **options)


def image_shape(dataset: Dataset, image_id: str) -> tuple[int, int]:
    """(H, W) of an image, read from its header (the pixels are not decoded)."""
    from PIL import Image, UnidentifiedImageError

    path = dataset.image_path(image_id)
    try:
        with Image.open(path) as im:
            w, h = im.size
    except FileNotFoundError as exc:
        raise UserError(f"{path}: image not found. Check the dataset folder.") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"{path}: unreadable or corrupt image ({exc}). Replace or remove the file.") from exc
    return h, w


def _optional_mask(dataset: Dataset, image_id: str, shape: tuple[int, int], use: bool) -> np.ndarray | None:
    """The dense mask when ``use`` and the layout has one for this image, else None."""
    if not use:
        return None
    path = dataset.mask_path(image_id)
    if path is None or not Path(path).exists():
        return None
    return dataset.load_mask(image_id, shape)


def _require_masks(dataset: Dataset, what: str) -> None:
    if not dataset.has_masks():
        raise UserError(
            f"{dataset.root}: {what} needs dense masks, and the {dataset.layout} layout has none for split "
            f"'{dataset.split}'. Use a split with ground truth, or import annotations instead."
        )


def _check_rule(objects: str, min_object: float) -> None:
    if objects not in OBJECT_RULES:
        raise UserError(f"--objects {objects}: choose {' or '.join(OBJECT_RULES)}.")
    _check("--min-object", min_object, 0.0, 1.0)


def _selected_objects(dataset: Dataset, image_id: str, objects: Objects, shape: tuple[int, int], rule: str,
                      min_object: float, what: str, excluded: bool) -> np.ndarray:
    """The object rule's selection (:func:`~wsss.annotations.rule.annotated_objects`); UserError when
    the image has nothing to annotate."""
    selected = annotated_objects(objects, shape, rule, min_object)
    if not selected.any():
        if len(objects) == 0:
            raise UserError(f"{dataset.mask_path(image_id)}: no object to {what} (only 255{' and background' if excluded else ''} "
                            "pixels). Fix the mask, or pass --skip-bad to leave the image out.")
        raise UserError(f"{dataset.mask_path(image_id)}: no object of at least {100 * min_object:g} % of the image to {what} "
                        f"({len(objects)} smaller fragments). Lower --min-object, pass --objects all, or --skip-bad.")
    return selected


def _check(name: str, value: float, lo: float, hi: float | None = None) -> None:
    check_number(name, value, lo, hi, integer=isinstance(value, int))


def objects_without_seed(objects: Objects, label: np.ndarray) -> int:
    """Number of objects with no labelled (≠ 255) pixel in ``label`` (H×W uint8)."""
    seeded = np.unique(objects.labels[label != IGNORE_INDEX])
    return len(objects) - int((seeded > 0).sum())


def _object_attrs(objects: Objects | None, label: np.ndarray, selected: np.ndarray | None = None) -> dict[str, int]:
    if objects is None:
        return {}
    attrs = {"objects": len(objects), "objects_without_seed": objects_without_seed(objects, label)}
    if selected is not None:
        attrs["objects_below_minimum"] = int((~selected).sum())
    return attrs


def _guard(fn: Callable[[str], tuple[Mapping[str, np.ndarray], Mapping[str, Any]]], skip_bad: bool):
    """Turn a bad image into a placeholder entry (``skipped`` attribute) when ``skip_bad``."""

    def call(image_id: str):
        try:
            return fn(image_id)
        except UserError as exc:
            if not skip_bad:
                raise
            return {}, {"skipped": str(exc)}

    return call


def _add_seeds(stats: SeedStatistics, writer: ArtifactWriter, image_id: str, attrs: Mapping[str, Any]) -> None:
    stats.add(writer.read(image_id, "label"), attrs.get("objects"), attrs.get("objects_without_seed"),
              seeds=attrs.get("seeds"), objects_below_minimum=attrs.get("objects_below_minimum"))


def _add_tags(stats: TagStatistics, writer: ArtifactWriter, image_id: str, attrs: Mapping[str, Any]) -> None:
    stats.add(writer.read(image_id, "tags"), writer.read(image_id, "boxes"))


#: artifact kind -> (its statistics, how one written image is added to them)
_STATISTICS = {"seeds": (SeedStatistics, _add_seeds), "tags": (TagStatistics, _add_tags)}


def _finalizer(kind: str, classes: list[str], output: Path):
    """The ``finalize`` step of :func:`_run`: drop the images skipped as bad input, compute the
    statistics of the others into the artifact's ``stats`` attribute; none left is an error."""
    make_stats, add = _STATISTICS[kind]

    def finalize(writer: ArtifactWriter) -> None:
        stats = make_stats(classes)
        kept = 0
        for image_id in writer.ids:
            attrs = writer.image_attrs(image_id)
            if "skipped" in attrs:
                stats.skip(image_id, attrs["skipped"])
                writer.remove(image_id)
                continue
            add(stats, writer, image_id, attrs)
            kept += 1
        if not kept:
            raise UserError(f"{output}: every image was skipped as bad input ({len(stats.skipped)}); nothing written. "
                            f"First problem: {stats.skipped[0]['reason'] if stats.skipped else '-'}")
        writer.set_attrs(stats=stats.as_dict())

    return finalize


def _run(fn, dataset: Dataset, output: str | Path, kind: str, config: Mapping[str, Any], *,
         workers: int, resume: bool, skip_bad: bool, description: str,
         files: tuple = (), folders: tuple = ()) -> Path:
    """Write the artifact; ``files`` / ``folders``: annotation inputs besides the dataset."""
    output = Path(output)
    writer_args = {
        "path": output,
        "kind": kind,
        "classes": dataset.classes,
        "config": dict(config),
        "dataset": dataset.describe(),
        "sources": StageInputs(files=list(files), folders=list(folders), datasets=[dataset]),
    }
    return run_per_image(
        _guard(fn, skip_bad),
        dataset.ids,
        writer_args,
        workers=workers,
        resume=resume,
        description=description,
        finalize=_finalizer(kind, dataset.classes, output),
    )


def _config(config: Mapping[str, Any] | None, params: dict[str, Any], **resolved: Any) -> dict[str, Any]:
    cfg = dict(config) if config is not None else {k: (str(v) if isinstance(v, Path) else v) for k, v in params.items()}
    cfg["resolved"] = resolved
    return cfg


# ---------------------------------------------------------------------------------------------
# scribbles


def run_scribbles(
    root: str | Path,
    output: str | Path,
    *,
    layout: str = "auto",
    split: str = "train",
    list_file: str | Path | None = None,
    xml_dir: str | Path | None = None,
    png_dir: str | Path | None = None,
    length_ratio: float = 1.0,
    shrink_rate: float = 0.0,
    shrink_position: str = "random",
    drop_rate: float = 0.0,
    drop_unit: str = "object",
    drop_background: bool = False,
    width: int | None = None,
    objects: str = DEFAULT_OBJECTS,
    min_object: float = MIN_OBJECT_FRACTION,
    min_area: int = DEFAULT_MIN_AREA,
    erode: int = 0,
    background: bool = True,
    background_class: str = "auto",
    mask_ignore: bool = True,
    seed: int = 0,
    workers: int = 1,
    resume: bool = False,
    skip_bad: bool = False,
    config: Mapping[str, Any] | None = None,
) -> Path:
    """Scribble seeds: imported (``xml_dir`` ScribbleSup XML, ``png_dir`` seed PNGs) or generated
    from the dense masks (neither given).

    Args:
        root, layout, split, list_file: the dataset (:func:`wsss.data.open_dataset`).
        output: the ``seeds`` artifact to write.
        xml_dir: folder of ScribbleSup ``<image_id>.xml`` files.
        png_dir: folder of seed ``<image_id>.png`` files (255 = unlabelled; palette or grey).
        length_ratio: r in [0, 1], centred piece of each scribble (XML or generated).
        shrink_rate: s in [0, 1], URSS scribble-shrink (XML or generated).
        shrink_position: ``random`` (uniform start, default) or ``centre``.
        drop_rate: d in [0, 1], URSS scribble-drop (any source; for PNGs every connected
            component of a class is an object).
        drop_unit: ``object`` or ``scribble``.
        drop_background: allow dropping background objects (default off).
        width: stroke width in px; None = 3 for XML (rloss's conversion), and for generated scribbles
            :func:`wsss.annotations.rule.stroke_width` (3 px per 500 px of the longer image side).
        objects: generated: the object rule, ``large`` (default: one scribble per object of at least
            ``min_object`` of the image area, smaller fragments unlabelled) or ``all`` (every fragment,
            the earlier behaviour); :mod:`wsss.annotations.rule`.
        min_object: generated, ``large``: minimum object area as a fraction of the image (default 0.002).
        min_area: generated, ``all``: objects smaller than this get a point (default 16 px).
        erode: generated: erosion radius before skeletonising (default 0).
        background: generated: scribble the background class too (default on).
        background_class: ``auto`` (a class named "background"), ``none``, or a name/index.
        mask_ignore: imported: unlabel pixels whose dense label is 255 when masks exist (default on).
        seed, workers, resume, skip_bad: see the module docstring.
        config: configuration to record (the CLI passes every option and the command line);
            default: these arguments.

    Returns:
        the artifact path.
    """
    params = dict(locals())
    params.pop("config")
    if xml_dir is not None and png_dir is not None:
        raise UserError("--xml and --png: give at most one source of scribbles (none = generate from masks).")
    _check("--length-ratio", length_ratio, 0.0, 1.0)
    _check("--shrink-rate", shrink_rate, 0.0, 1.0)
    _check("--drop-rate", drop_rate, 0.0, 1.0)
    if width is not None:
        _check("--width", width, 1)
    _check_rule(objects, min_object)
    _check("--min-area", min_area, 0)
    _check("--erode", erode, 0)
    _check("--seed", seed, 0)
    if shrink_position not in ("random", "centre", "center"):
        raise UserError(f"--shrink-position {shrink_position}: choose random or centre.")
    if drop_unit not in ("object", "scribble"):
        raise UserError(f"--drop-unit {drop_unit}: choose object or scribble.")
    if drop_rate == 1 and drop_background:
        raise UserError("--drop-rate 1 --drop-background: drops every scribble, so the seeds would label no pixel "
                        "at all. Use a smaller --drop-rate or keep the background.")
    if png_dir is not None and (length_ratio < 1.0 or shrink_rate > 0.0):
        raise UserError(f"{png_dir}: --length-ratio and --shrink-rate need scribble polylines; seed PNGs have none. "
                        "Use --xml or generate from masks (only --drop-rate applies to PNGs).")
    for folder, what in ((xml_dir, "--xml"), (png_dir, "--png")):
        if folder is not None and not Path(folder).is_dir():
            raise UserError(f"{folder}: {what} folder not found. Check the path.")
    dataset = _open(root, layout, split, list_file)
    classes, K = dataset.classes, dataset.num_classes
    bg = find_background(classes, background_class)
    centred = shrink_position != "random"
    source = "xml" if xml_dir is not None else "png" if png_dir is not None else "masks"
    if source == "masks":
        _require_masks(dataset, "generating scribbles")
    exclude = (bg,) if (not background and bg is not None) else ()

    def edit_and_drop(scribbles, image_id):
        scribbles = edit_scribbles(scribbles, length_ratio=length_ratio, shrink_rate=shrink_rate,
                                   shrink_centred=centred, shrink_rng=image_rng(seed, image_id, "shrink"))
        return apply_drop(scribbles, drop_rate, image_rng(seed, image_id, "drop"), unit=drop_unit,
                          background=bg, drop_background=drop_background)

    rule = objects

    def generated(image_id: str):
        shape = image_shape(dataset, image_id)
        mask = dataset.load_mask(image_id, shape)
        found = find_objects(mask, K, exclude=exclude)
        selected = _selected_objects(dataset, image_id, found, shape, rule, min_object, "scribble", bool(exclude))
        scribbles = scribbles_from_objects(found, min_area=min_area, erode=erode, selected=selected)
        scribbles, dropped = edit_and_drop(scribbles, image_id)
        label = render_scribbles(scribbles, shape, width or stroke_width(shape), objects=found)
        return {"label": label}, {**_object_attrs(found, label, selected), "dropped": dropped, "seeds": len(scribbles)}

    def from_xml(image_id: str):
        shape = image_shape(dataset, image_id)
        scribbles = read_scribblesup_xml(Path(xml_dir) / f"{image_id}.xml", classes, shape)
        mask = _optional_mask(dataset, image_id, shape, True)
        scribbles, dropped = edit_and_drop(scribbles, image_id)
        valid = (mask != IGNORE_INDEX) if (mask is not None and mask_ignore) else None
        label = render_scribbles(scribbles, shape, width or DEFAULT_WIDTH, valid=valid)
        found = find_objects(mask, K) if mask is not None else None
        return {"label": label}, {**_object_attrs(found, label), "dropped": dropped, "scribbles": len(scribbles),
                                  "seeds": len(scribbles)}

    def from_png(image_id: str):
        shape = image_shape(dataset, image_id)
        path = Path(png_dir) / f"{image_id}.png"
        label = load_seed_png(path, K, shape).copy()
        if not (label != IGNORE_INDEX).any():
            raise UserError(f"{path}: no labelled pixel (all 255). Fix the file, or pass --skip-bad to leave the image out.")
        dropped = 0
        if drop_rate > 0.0:
            units = find_objects(label, K)
            u = image_rng(seed, image_id, "drop").random(len(units))
            gone = u < drop_rate
            if bg is not None and not drop_background:
                gone &= units.classes != bg
            dropped = int(gone.sum())
            lut = np.concatenate([[False], gone])
            label[lut[units.labels]] = IGNORE_INDEX
        mask = _optional_mask(dataset, image_id, shape, True)
        if mask is not None and mask_ignore:
            label[mask == IGNORE_INDEX] = IGNORE_INDEX
        found = find_objects(mask, K) if mask is not None else None
        return {"label": label}, {**_object_attrs(found, label), "dropped": dropped}

    fn = {"masks": generated, "xml": from_xml, "png": from_png}[source]
    cfg = _config(config, params, source=source, background_index=bg)
    return _run(fn, dataset, output, "seeds", cfg, workers=workers, resume=resume, skip_bad=skip_bad,
                description=f"scribbles ({source})", folders=(xml_dir, png_dir))


# ---------------------------------------------------------------------------------------------
# points


def run_points(
    root: str | Path,
    output: str | Path,
    *,
    layout: str = "auto",
    split: str = "train",
    list_file: str | Path | None = None,
    points_file: str | Path | None = None,
    random: bool = False,
    radius: int = 0,
    objects: str = DEFAULT_OBJECTS,
    min_object: float = MIN_OBJECT_FRACTION,
    background: bool = True,
    background_class: str = "auto",
    mask_ignore: bool = True,
    seed: int = 0,
    workers: int = 1,
    resume: bool = False,
    skip_bad: bool = False,
    config: Mapping[str, Any] | None = None,
) -> Path:
    """Point seeds: one click per object of the dense masks, or clicks imported from ``points_file``.

    Args:
        points_file: CSV / JSON clicks (:mod:`wsss.annotations.points`); None = generate.
        random: generated: a uniformly random object pixel instead of the distance-transform peak.
        radius: disk radius in px (default 0 = one pixel); a file's ``radius`` column overrides it.
        objects, min_object: generated: the object rule (as :func:`run_scribbles`; default one click per
            object of at least 0.2 % of the image).
        background: generated: click the background objects too (default on).
        Others: as :func:`run_scribbles`.
    """
    params = dict(locals())
    params.pop("config")
    _check("--radius", radius, 0)
    _check_rule(objects, min_object)
    rule = objects
    _check("--seed", seed, 0)
    dataset = _open(root, layout, split, list_file)
    classes, K = dataset.classes, dataset.num_classes
    bg = find_background(classes, background_class)
    exclude = (bg,) if (not background and bg is not None) else ()

    if points_file is None:
        _require_masks(dataset, "generating points")

        def fn(image_id: str):
            shape = image_shape(dataset, image_id)
            mask = dataset.load_mask(image_id, shape)
            found = find_objects(mask, K, exclude=exclude)
            selected = _selected_objects(dataset, image_id, found, shape, rule, min_object, "click", bool(exclude))
            points = points_from_objects(found, image_rng(seed, image_id, "points") if random else None, selected)
            label = render_points(points, shape, radius, objects=found)
            return {"label": label}, {**_object_attrs(found, label, selected), "seeds": len(points)}

        source = "masks"
    else:
        all_points, problems = read_points_file(points_file, classes)

        def fn(image_id: str):
            if image_id in problems:
                raise UserError(problems[image_id])
            points = all_points.get(image_id)
            if not points:
                raise UserError(f"{points_file}: no point for image '{image_id}'. Add one, or pass --skip-bad to leave the image out.")
            shape = image_shape(dataset, image_id)
            check_points(points, shape, points_file)
            mask = _optional_mask(dataset, image_id, shape, True)
            valid = (mask != IGNORE_INDEX) if (mask is not None and mask_ignore) else None
            label = render_points(points, shape, radius, valid=valid)
            found = find_objects(mask, K) if mask is not None else None
            return {"label": label}, {**_object_attrs(found, label), "points": len(points), "seeds": len(points)}

        source = "file"
    cfg = _config(config, params, source=source, background_index=bg)
    return _run(fn, dataset, output, "seeds", cfg, workers=workers, resume=resume, skip_bad=skip_bad,
                description=f"points ({source})", files=(points_file,))


# ---------------------------------------------------------------------------------------------
# blocks


def run_blocks(
    root: str | Path,
    output: str | Path,
    *,
    layout: str = "auto",
    split: str = "train",
    list_file: str | Path | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    keep: float = DEFAULT_KEEP,
    objects: str = DEFAULT_OBJECTS,
    min_object: float = MIN_OBJECT_FRACTION,
    seed: int = 0,
    workers: int = 1,
    resume: bool = False,
    skip_bad: bool = False,
    config: Mapping[str, Any] | None = None,
) -> Path:
    """Block seeds: a random fraction ``keep`` of the ``block_size`` grid blocks keeps its dense labels.

    Args:
        block_size: block side in px (default 32, toolkit choice).
        keep: fraction of blocks kept (default 0.5, toolkit choice).
        objects, min_object: the object rule (as :func:`run_scribbles`): pixels of fragments smaller than
            ``min_object`` of the image stay unlabelled inside kept blocks (``all``: every pixel kept).
        Others: as :func:`run_scribbles`.
    """
    params = dict(locals())
    params.pop("config")
    _check("--block-size", block_size, 1)
    _check("--keep", keep, 0.0, 1.0)
    _check_rule(objects, min_object)
    rule = objects
    if keep == 0:
        raise UserError("--keep 0: keeps no block, so the seeds would label no pixel at all. Keep a fraction > 0.")
    _check("--seed", seed, 0)
    dataset = _open(root, layout, split, list_file)
    K = dataset.num_classes
    _require_masks(dataset, "block annotation")

    def fn(image_id: str):
        shape = image_shape(dataset, image_id)
        mask = dataset.load_mask(image_id, shape)
        found = find_objects(mask, K)
        if len(found) == 0:
            raise UserError(f"{dataset.mask_path(image_id)}: no labelled pixel (all 255). Fix the mask, or pass --skip-bad.")
        selected = annotated_objects(found, shape, rule, min_object)
        label = blocks_from_mask(mask, block_size, keep, image_rng(seed, image_id, "blocks"),
                                 unlabelled=unannotated_pixels(found, selected))
        grid = np.zeros(block_grid(shape, block_size), dtype=bool)
        rows, cols = np.nonzero(label != IGNORE_INDEX)
        grid[rows // block_size, cols // block_size] = True
        return {"label": label}, {**_object_attrs(found, label, selected), "seeds": int(grid.sum())}

    cfg = _config(config, params)
    return _run(fn, dataset, output, "seeds", cfg, workers=workers, resume=resume, skip_bad=skip_bad, description="blocks")


# ---------------------------------------------------------------------------------------------
# tags and boxes


def run_tags(
    root: str | Path,
    output: str | Path,
    *,
    layout: str = "auto",
    split: str = "train",
    list_file: str | Path | None = None,
    source: str = "auto",
    xml_dir: str | Path | None = None,
    csv_file: str | Path | None = None,
    boxes: str = "auto",
    background_class: str = "auto",
    min_area: int = 1,
    workers: int = 1,
    resume: bool = False,
    skip_bad: bool = False,
    config: Mapping[str, Any] | None = None,
) -> Path:
    """Tags (and boxes) artifact.

    Args:
        source: ``auto`` (``csv`` if ``csv_file``, ``xml`` if ``xml_dir`` or the layout has
            ``Annotations/*.xml`` (VOC), else ``masks``), ``masks``, ``xml`` or ``csv``.
        xml_dir: folder of VOC-style ``<image_id>.xml`` (default: the VOC layout's Annotations/).
        csv_file: ``image_id,class[,class...]`` lines.
        boxes: ``auto`` (from the XML when the tags are, from the masks when the tags are, none
            for a CSV), ``xml``, ``masks`` or ``none``.
        background_class: the class left out of tags and mask boxes (``auto``: "background").
        min_area: mask boxes: components smaller than this get no box (default 1).
        Others: as :func:`run_scribbles`.
    """
    params = dict(locals())
    params.pop("config")
    if source not in ("auto", "masks", "xml", "csv"):
        raise UserError(f"--source {source}: choose auto, masks, xml or csv.")
    if boxes not in ("auto", "masks", "xml", "none"):
        raise UserError(f"--boxes {boxes}: choose auto, masks, xml or none.")
    _check("--min-area", min_area, 0)
    if xml_dir is not None and not Path(xml_dir).is_dir():
        raise UserError(f"{xml_dir}: --xml folder not found. Check the path.")
    if csv_file is not None and not Path(csv_file).is_file():
        raise UserError(f"{csv_file}: --csv file not found. Check the path.")
    dataset = _open(root, layout, split, list_file)
    classes, K = dataset.classes, dataset.num_classes
    bg = find_background(classes, background_class)
    annotation_path = getattr(dataset, "annotation_path", None)

    def xml_path(image_id: str) -> Path:
        if xml_dir is not None:
            return Path(xml_dir) / f"{image_id}.xml"
        if annotation_path is None:
            raise UserError(f"{dataset.root}: the {dataset.layout} layout has no Annotations/ XML. Pass --xml DIR.")
        return Path(annotation_path(image_id))

    if source == "auto":
        if csv_file is not None:
            source = "csv"
        elif xml_dir is not None or (annotation_path is not None and xml_path(dataset.ids[0]).exists()):
            source = "xml"
        else:
            source = "masks"
    if source == "csv" and csv_file is None:
        raise UserError("--source csv: pass the file with --csv FILE.")
    if boxes == "auto":
        boxes = {"xml": "xml", "masks": "masks", "csv": "none"}[source]
    if boxes == "xml" and source != "xml" and xml_dir is None and annotation_path is None:
        raise UserError(f"{dataset.root}: --boxes xml needs VOC Annotations/ XML files. Pass --xml DIR.")
    if "masks" in (source, boxes):
        _require_masks(dataset, "tags or boxes from masks")
    csv_tags, problems = read_tags_csv(csv_file, classes) if source == "csv" else ({}, {})

    def fn(image_id: str):
        shape = image_shape(dataset, image_id) if ("masks" in (source, boxes) or "xml" in (source, boxes)) else None
        mask = dataset.load_mask(image_id, shape) if "masks" in (source, boxes) else None
        xml = read_voc_xml(xml_path(image_id), classes, shape) if "xml" in (source, boxes) else None
        if source == "masks":
            tags = tags_from_mask(mask, K, bg)
            if len(tags) == 0:
                raise UserError(f"{dataset.mask_path(image_id)}: no object besides background/255, so no tag. "
                                "Fix the mask, or pass --skip-bad to leave the image out.")
        elif source == "xml":
            tags = xml[0]
        else:
            if image_id in problems:
                raise UserError(problems[image_id])
            tags = csv_tags.get(image_id)
            if tags is None or len(tags) == 0:
                raise UserError(f"{csv_file}: no tag for image '{image_id}'. Add a line, or pass --skip-bad to leave the image out.")
        if boxes == "masks":
            box = boxes_from_mask(mask, K, bg, min_area=min_area)
        elif boxes == "xml":
            box = xml[1]
        else:
            box = np.zeros((0, 5), dtype=np.int32)
        return {"tags": tags.astype(np.int16), "boxes": box.astype(np.int32)}, {}

    cfg = _config(config, params, source=source, boxes=boxes, background_index=bg)
    return _run(fn, dataset, output, "tags", cfg, workers=workers, resume=resume, skip_bad=skip_bad,
                description=f"tags ({source})", files=(csv_file,), folders=(xml_dir,))


__all__ = ["image_shape", "objects_without_seed", "run_blocks", "run_points", "run_scribbles", "run_tags"]
