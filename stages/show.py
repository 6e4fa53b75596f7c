"""Stage ``show``: PNG overlays of artifacts on their images, side by side, with a class legend.

One PNG per image: the image, one panel per artifact, and the dense ground truth (when the
dataset has masks), each upscaled by an integer factor (nearest neighbour, so colours stay exact),
with a title above and a legend of the classes present (VOC palette) below. Panels per kind:

- ``seeds``: labelled pixels painted opaque in their class colour (sparse: blending would hide them);
- ``predictions`` / ``pseudolabels``: the stored ``label`` (or the arg-max of ``scores`` /
  ``probs``) blended over the image with ``alpha``;
- ``superpixels``: segment boundaries drawn in yellow (1-pixel lines);
- ``cams``: the maximum over classes as a blue→red heat map, blended with ``alpha``;
- ground truth: like predictions; 255 (ignore) in the VOC ignore colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wsss.artifacts import Artifact
from wsss.constants import IGNORE_INDEX
from wsss.errors import UserError
from wsss.palette import VOC_PALETTE, colorize
from wsss.paths import StageInputs
from wsss.validation import check_allocation, check_finite_input, check_writable_folder

#: artifact kinds ``show`` can draw
SHOWABLE_KINDS = ("seeds", "predictions", "pseudolabels", "superpixels", "cams")
MARGIN = 4
TITLE_HEIGHT = 14
SWATCH = 10
LEGEND_ROW = 14
BOUNDARY_COLOUR = np.array([255, 255, 0], dtype=np.uint8)
MIN_PANEL_SIDE = 160
MAX_SCALE = 8


@dataclass
class Panel:
    """One picture of a figure.

    Attributes:
        title: text above the panel.
        rgb: H×W×3 uint8 picture (before upscaling).
        labels: class labels shown in the panel (for the legend), 255 excluded.
    """

    title: str
    rgb: np.ndarray
    labels: set[int] = field(default_factory=set)


# -- panels ---------------------------------------------------------------------------------------
def blend_labels(image: np.ndarray, label: np.ndarray, alpha: float) -> np.ndarray:
    """Blend palette colours of a dense label map over an image.

    Args:
        image: H×W×3 uint8; label: H×W uint8 (255 drawn in the ignore colour); alpha: 0..1 weight of the colours.

    Returns:
        H×W×3 uint8.
    """
    mixed = (1.0 - alpha) * image.astype(np.float32) + alpha * colorize(label).astype(np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def paint_seeds(image: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Paint labelled pixels (≠ 255) opaque in their palette colour.

    Args:
        image: H×W×3 uint8; label: H×W uint8, 255 = unlabelled.

    Returns:
        H×W×3 uint8.
    """
    out = image.copy()
    seeded = label != IGNORE_INDEX
    out[seeded] = VOC_PALETTE[label[seeded]]
    return out


def paint_boundaries(image: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Draw superpixel boundaries (H×W int segments) on an H×W×3 uint8 image, in yellow.

    For legibility only one side of each boundary is drawn (a pixel whose lower or right
    neighbour is in another segment), a 1-pixel line instead of :func:`superpixel_boundaries`' 2.
    """
    seg = np.asarray(segments)
    edge = np.zeros(seg.shape, dtype=bool)
    edge[:-1, :] |= seg[1:, :] != seg[:-1, :]
    edge[:, :-1] |= seg[:, 1:] != seg[:, :-1]
    out = image.copy()
    out[edge] = BOUNDARY_COLOUR
    return out


def heat_colours(values: np.ndarray) -> np.ndarray:
    """Map H×W values in [0, 1] to H×W×3 uint8 colours running blue → cyan → yellow → red."""
    t = np.clip(values, 0.0, 1.0)[..., None]
    centres = np.array([0.75, 0.5, 0.25], dtype=np.float64)  # where R, G, B peak
    rgb = np.clip(1.5 - np.abs(4.0 * (t - centres)), 0.0, 1.0)
    return np.rint(255 * rgb).astype(np.uint8)


def blend_heat(image: np.ndarray, cams: np.ndarray, alpha: float) -> np.ndarray:
    """Blend the maximum over classes of C×H×W activation maps over an H×W×3 uint8 image.

    Maps already in [0, 1] are shown as they are; others are divided by their maximum.
    """
    heat = np.asarray(cams, dtype=np.float32).max(axis=0) if cams.ndim == 3 else np.asarray(cams, np.float32)
    heat = np.nan_to_num(heat, nan=0.0, posinf=0.0, neginf=0.0)
    top = float(heat.max(initial=0.0))
    if top > 1.0:
        heat = heat / top
    mixed = (1.0 - alpha) * image.astype(np.float32) + alpha * heat_colours(heat).astype(np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def dense_label(art: Artifact, image_id: str) -> np.ndarray:
    """H×W uint8 label of a predictions / pseudolabels artifact: ``label`` or arg-max of ``scores``/``probs``."""
    for name in ("scores", "probs"):
        if art.has(image_id, name):
            scores = check_finite_input(art.path, image_id, name, art.read(image_id, name).astype(np.float32))
            if art.has(image_id, "label"):
                return art.read(image_id, "label").astype(np.uint8)
            return scores.argmax(axis=0).astype(np.uint8)
    if art.has(image_id, "label"):
        return art.read(image_id, "label").astype(np.uint8)
    raise UserError(f"{art.path}: image '{image_id}' has neither 'label' nor 'scores'/'probs'. Pass a predictions or pseudolabels artifact.")


def _check_shape(art: Artifact, image_id: str, array: np.ndarray, shape: tuple[int, int]) -> None:
    if array.shape[-2:] != tuple(shape):
        raise UserError(
            f"{art.path}: image '{image_id}' is {array.shape[-1]}×{array.shape[-2]} but the dataset image is "
            f"{shape[1]}×{shape[0]} (W×H). Pass the dataset (--data/--split) the artifact was made from."
        )


def artifact_panel(art: Artifact, image_id: str, image: np.ndarray, alpha: float) -> Panel:
    """The panel of one artifact for one image (see the module docstring per kind)."""
    shape = image.shape[:2]
    title = f"{art.kind}: {art.path.stem}"
    if art.kind == "seeds":
        label = art.read(image_id, "label")
        _check_shape(art, image_id, label, shape)
        return Panel(title, paint_seeds(image, label), _present(label))
    if art.kind in ("predictions", "pseudolabels"):
        label = dense_label(art, image_id)
        _check_shape(art, image_id, label, shape)
        return Panel(title, blend_labels(image, label, alpha), _present(label))
    if art.kind == "superpixels":
        segments = art.read(image_id, "segments")
        _check_shape(art, image_id, segments, shape)
        return Panel(f"{title} ({int(segments.max()) + 1})", paint_boundaries(image, segments))
    if art.kind == "cams":
        cams = check_finite_input(art.path, image_id, "cams", art.read(image_id, "cams"))
        _check_shape(art, image_id, cams, shape)
        return Panel(title, blend_heat(image, cams, alpha))
    raise UserError(f"{art.path}: 'show' cannot draw '{art.kind}' artifacts. Pass one of: {', '.join(SHOWABLE_KINDS)}.")


def _present(label: np.ndarray) -> set[int]:
    return {int(v) for v in np.unique(label) if v != IGNORE_INDEX}


# -- figure ---------------------------------------------------------------------------------------
def auto_scale(height: int, width: int) -> int:
    """Smallest integer factor making the shorter image side at least 160 px (1..8)."""
    return int(min(MAX_SCALE, max(1, -(-MIN_PANEL_SIDE // max(1, min(height, width))))))


def compose(panels: Sequence[Panel], classes: Sequence[str], scale: int = 1):
    """Lay panels out side by side with titles and a legend of the classes present.

    Args:
        panels: pictures of equal size H×W.
        classes: class names (index = label).
        scale: integer upscaling factor (nearest neighbour).

    Returns:
        (PIL RGB image, list of (x0, y0, x1, y1) boxes of the upscaled panels, x1/y1 exclusive).
        Width = n·W·scale + (n+1)·MARGIN.
    """
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    height, width = panels[0].rgb.shape[:2]
    ph, pw = height * scale, width * scale
    total_w = len(panels) * pw + (len(panels) + 1) * MARGIN
    labels = sorted(set().union(*(p.labels for p in panels)))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    entries = []  # (label, text, width in px)
    for lab in labels:
        text = classes[lab] if lab < len(classes) else f"class{lab}"
        entries.append((lab, text, SWATCH + 4 + int(np.ceil(measure.textlength(text, font=font))) + 10))
    rows, row, used = [], [], MARGIN
    for entry in entries:
        if row and used + entry[2] > total_w:
            rows.append(row)
            row, used = [], MARGIN
        row.append(entry)
        used += entry[2]
    if row:
        rows.append(row)
    total_h = MARGIN + TITLE_HEIGHT + ph + MARGIN + len(rows) * LEGEND_ROW + (MARGIN if rows else 0)
    canvas = Image.new("RGB", (total_w, total_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    boxes = []
    for i, panel in enumerate(panels):
        if panel.rgb.shape[:2] != (height, width):
            raise ValueError("all panels must have the same size")
        x0, y0 = MARGIN + i * (pw + MARGIN), MARGIN + TITLE_HEIGHT
        picture = Image.fromarray(np.ascontiguousarray(panel.rgb), mode="RGB")
        if scale != 1:
            picture = picture.resize((pw, ph), Image.NEAREST)
        canvas.paste(picture, (x0, y0))
        draw.text((x0, MARGIN), _fit(panel.title, pw, measure, font), fill=(0, 0, 0), font=font)
        boxes.append((x0, y0, x0 + pw, y0 + ph))
    y = MARGIN + TITLE_HEIGHT + ph + MARGIN
    for row in rows:
        x = MARGIN
        for lab, text, w in row:
            colour = tuple(int(c) for c in VOC_PALETTE[lab])
            draw.rectangle((x, y + 1, x + SWATCH - 1, y + SWATCH), fill=colour, outline=(0, 0, 0))
            draw.text((x + SWATCH + 4, y), text, fill=(0, 0, 0), font=font)
            x += w
        y += LEGEND_ROW
    return canvas, boxes


def _fit(text: str, width: int, measure, font) -> str:
    """Shorten text with an ellipsis until it fits ``width`` px."""
    if measure.textlength(text, font=font) <= width:
        return text
    while text and measure.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def figure_name(image_id: str) -> str:
    """File name of an image's figure (``/`` in ids, e.g. Cityscapes', becomes ``__``)."""
    return image_id.replace("/", "__") + ".png"


# -- stage ----------------------------------------------------------------------------------------
def run(
    out_dir: str | Path,
    artifacts: Sequence[str | Path] = (),
    *,
    data: str | Path | None = None,
    layout: str = "auto",
    split: str | None = None,
    ids: Sequence[str] | None = None,
    limit: int = 8,
    alpha: float = 0.5,
    scale: int = 0,
    ground_truth: bool = True,
    progress: bool = True,
) -> Path:
    """Write one overlay PNG per image to ``out_dir``.

    Args:
        out_dir: output folder (created).
        artifacts: artifact files, one panel each, in order; kinds in :data:`SHOWABLE_KINDS`.
        data: dataset root; default: the dataset recorded in the first artifact that has one.
        layout: dataset layout (with ``data``).
        split: dataset split; default: the recorded one, else ``train``.
        ids: images to draw; default: the first ``limit`` images (sorted) present in every artifact.
        limit: number of images when ``ids`` is not given.
        alpha: weight of label colours and heat maps over the image (0..1).
        scale: integer upscaling factor; 0 = :func:`auto_scale`.
        ground_truth: add a ground-truth panel when the dataset has masks.
        progress: draw a progress bar.

    Returns:
        ``out_dir``.
    """
    from PIL import Image  # noqa: F401  (fail early if Pillow is missing)

    from wsss.data import open_dataset, open_recorded_dataset
    from wsss.progress import progress_bar

    if not 0.0 <= alpha <= 1.0:
        raise UserError(f"--alpha {alpha}: must be between 0 and 1.")
    if limit < 1:
        raise UserError(f"--limit {limit}: must be at least 1.")
    if scale < 0:
        raise UserError(f"--scale {scale}: must be 0 (auto) or a positive factor.")
    arts = [a if isinstance(a, Artifact) else Artifact(a, kind=SHOWABLE_KINDS) for a in artifacts]
    recorded = next((a.dataset for a in arts if a.dataset), None)
    if data is not None:
        if split is None:
            split = (recorded or {}).get("split", "train")
        dataset = open_dataset(data, layout=layout, split=split)
    elif recorded is not None:
        if split is not None:
            recorded = {**recorded, "split": split}
        dataset = open_recorded_dataset(recorded)
    else:
        raise UserError("show: no dataset given and no artifact records one. Pass --data DATASET_ROOT.")

    available = set(dataset.ids)
    for art in arts:
        available &= set(art.ids)
    if ids:
        for image_id in ids:
            if image_id not in dataset.ids:
                raise UserError(f"{dataset.root}: no image '{image_id}' in split '{dataset.split}'. Check --ids and --split.")
            for art in arts:
                if image_id not in art:
                    raise UserError(f"{art.path}: has no image '{image_id}'. Check --ids or rerun the stage on that image.")
        chosen = list(ids)
    else:
        chosen = sorted(available)[:limit]
        if not chosen:
            raise UserError(
                f"{dataset.root}: no image is in the dataset split '{dataset.split}' and every artifact. "
                "Pass the dataset and split the artifacts were made from."
            )
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a folder. Choose another output folder.")
    StageInputs(files=[a.path for a in arts], datasets=[dataset]).check_output(out_dir, folder=True, option="-o folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    check_writable_folder(out_dir)
    with_gt = ground_truth and dataset.has_masks()
    with progress_bar("show", total=len(chosen), enabled=progress) as advance:
        for image_id in chosen:
            image = dataset.load_image(image_id)
            panels = [Panel("image", image)]
            panels += [artifact_panel(art, image_id, image, alpha) for art in arts]
            if with_gt:
                mask = dataset.load_mask(image_id, image.shape[:2])
                panels.append(Panel("ground truth", blend_labels(image, mask, alpha), _present(mask)))
            factor = scale or auto_scale(*image.shape[:2])
            check_allocation(4.0 * 3 * (len(panels) * image.shape[1] + 1) * image.shape[0] * factor ** 2,
                             f"--scale {factor}: the figure of image '{image_id}' ({len(panels)} panels of "
                             f"{image.shape[1]}×{image.shape[0]} px)", "Use a smaller --scale.")
            figure, _ = compose(panels, dataset.classes, factor)
            figure.save(out_dir / figure_name(image_id))
            advance(1)
    return out_dir
