"""The built-in procedural demo dataset: cluttered scenes of textured shapes with dense masks.

``generate_demo(out, ...)`` writes, in the generic layout::

    OUT/classes.txt                 background + one class per shape family
    OUT/demo.json                   the generator settings (for provenance)
    OUT/train/images/train_0000.png   H×W RGB
    OUT/train/masks/train_0000.png    H×W grey, class indices (255 = ignore band, when enabled)
    OUT/val/images/val_0000.png ...

What a scene holds (all sizes relative to ``s = min(H, W)``):

- **Background** (class 0): a linear colour gradient between two random colours, low-frequency
  colour noise, and 2–6 clutter patches (small blobs, boxes, long thin bars) whose colour is half
  the time drawn from an object class's colour distribution. Clutter makes colour edges that are
  not object boundaries.
- **Objects**: 1–4 per image, classes drawn uniformly, radius 0.14–0.30 s, random centre (may
  cross the border), rotation and aspect; later objects occlude earlier ones. Class ``c`` has a
  shape family (ellipse, rectangle, triangle, blob, ring, cross, star; in that order), a mean
  colour with a per-object spread wide enough for the classes' colours to overlap, a linear
  shading, and a texture (smooth, stripes, grain, mottled). About one object in seven is
  "camouflaged" (coloured like the background under it), so some object boundaries have no
  colour edge.
- A light blur (σ = 0.7 px) softens edges, and pixel noise (σ = 4) is added.

So colour edges mostly, but not always, coincide with object boundaries: scribbles + partial
cross-entropy learn colour/texture but place boundaries poorly, edge-aware regularizers (CRF,
Potts) move them to the colour edges, and full masks still do better on camouflaged objects.

Every image has its own random stream seeded by ``(seed, split, index)``: the same seed gives
byte-identical files, and ``--train 8`` makes the first 8 images of ``--train 64``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter, maximum_filter, minimum_filter

from wsss.errors import UserError
from wsss.progress import progress_bar

#: shape family of object classes 1, 2, ... (class 0 is background)
SHAPE_FAMILIES = ("ellipse", "rectangle", "triangle", "blob", "ring", "cross", "star")
#: mean RGB colour of each family (per-object spread :data:`COLOUR_SPREAD` makes them overlap)
FAMILY_COLOURS = np.array(
    [[190, 70, 60], [60, 120, 190], [80, 170, 80], [200, 170, 60], [150, 80, 170], [210, 120, 160], [70, 180, 180]],
    dtype=np.float64,
)
#: texture of each family
FAMILY_TEXTURES = ("smooth", "stripes", "grain", "mottled", "smooth", "stripes", "grain")
COLOUR_SPREAD = 35.0
CAMOUFLAGE_PROBABILITY = 0.15
MAX_CLASSES = 1 + len(SHAPE_FAMILIES)

#: defaults of ``wsss demo-data`` (sized to train in minutes on a 2-core CPU)
DEMO_DEFAULTS = {"train": 64, "val": 32, "size": (96, 96), "classes": 5, "seed": 0, "ignore_border": 0}

_SPLIT_CODES = {"train": 0, "val": 1}


def demo_classes(num_classes: int) -> list[str]:
    """Class names of a demo dataset with ``num_classes`` classes (``background`` + shape families)."""
    if not 2 <= num_classes <= MAX_CLASSES:
        raise UserError(f"--classes {num_classes}: the demo data has 2 to {MAX_CLASSES} classes (background + shape families). Choose a value in that range.")
    return ["background", *SHAPE_FAMILIES[: num_classes - 1]]


# -- shapes -------------------------------------------------------------------------------------
def _shape_mask(family: str, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Inside-test of one shape in its local frame.

    Args:
        family: one of :data:`SHAPE_FAMILIES` (or ``bar`` for clutter).
        u, v: H×W float64 local coordinates (rotated, divided by the shape's radius).
        rng: random stream for the shape's own parameters.

    Returns:
        H×W bool.
    """
    rho = np.hypot(u, v)
    phi = np.arctan2(v, u)
    if family == "ellipse":
        aspect = rng.uniform(0.55, 1.0)
        return u**2 + (v / aspect) ** 2 <= 1.0
    if family == "rectangle":
        aspect = rng.uniform(0.45, 1.0)
        return (np.abs(u) <= 0.85) & (np.abs(v) <= 0.85 * aspect)
    if family == "triangle":
        angles = np.pi / 2 + 2 * np.pi * np.arange(3) / 3
        sides = u[..., None] * np.cos(angles) + v[..., None] * np.sin(angles)
        return sides.max(axis=-1) <= 0.6
    if family == "blob":
        radius = np.ones_like(phi)
        for m in (2, 3, 4):
            radius += rng.uniform(0.0, 0.18) * np.cos(m * phi + rng.uniform(0, 2 * np.pi))
        return rho <= radius
    if family == "ring":
        inner = rng.uniform(0.45, 0.65)
        return (rho <= 1.0) & (rho >= inner)
    if family == "cross":
        arm = rng.uniform(0.25, 0.4)
        return ((np.abs(u) <= 1.0) & (np.abs(v) <= arm)) | ((np.abs(v) <= 1.0) & (np.abs(u) <= arm))
    if family == "star":
        return rho <= 0.62 + 0.38 * np.cos(5 * phi)
    if family == "bar":
        return (np.abs(u) <= 1.0) & (np.abs(v) <= rng.uniform(0.06, 0.12))
    raise ValueError(f"unknown shape family {family!r}")


def _local_frame(grid: tuple[np.ndarray, np.ndarray], centre: np.ndarray, radius: float, angle: float):
    yy, xx = grid
    dy, dx = yy - centre[0], xx - centre[1]
    c, s = np.cos(angle), np.sin(angle)
    return (dx * c + dy * s) / radius, (-dx * s + dy * c) / radius


def _texture(kind: str, u: np.ndarray, radius: float, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """H×W float64 luminance texture (added to all three channels)."""
    if kind == "smooth":
        return rng.normal(0.0, 3.0, shape)
    if kind == "stripes":
        period = rng.uniform(4.0, 7.0)
        return 14.0 * np.sin(2 * np.pi * u * radius / period + rng.uniform(0, 2 * np.pi))
    if kind == "grain":
        return rng.normal(0.0, 12.0, shape)
    if kind == "mottled":
        field = gaussian_filter(rng.normal(0.0, 1.0, shape), 1.5)
        return 15.0 * field / (field.std() + 1e-8)
    raise ValueError(f"unknown texture {kind!r}")


# -- one scene ----------------------------------------------------------------------------------
def render_scene(rng: np.random.Generator, height: int, width: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one demo image and its dense mask.

    Args:
        rng: the image's random stream (the result depends on nothing else).
        height, width: image size in pixels.
        num_classes: K (background + K−1 shape families), 2..:data:`MAX_CLASSES`.

    Returns:
        image: H×W×3 uint8 RGB; mask: H×W uint8 with values 0..K−1.
    """
    shape = (height, width)
    scale = float(min(height, width))
    grid = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    yy, xx = grid

    # background: gradient between two colours + low-frequency colour noise
    c1, c2 = rng.uniform(40, 215, size=(2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    t = (yy * np.sin(angle) + xx * np.cos(angle))
    t = (t - t.min()) / max(t.max() - t.min(), 1e-8)
    image = c1 * (1 - t[..., None]) + c2 * t[..., None]
    low = gaussian_filter(rng.normal(0.0, 1.0, (height, width, 3)), (scale / 8, scale / 8, 0))
    image += 18.0 * low / (low.std() + 1e-8)

    # clutter patches (background class)
    for _ in range(int(rng.integers(2, 7))):
        family = ("blob", "rectangle", "ellipse", "bar")[int(rng.integers(0, 4))]
        radius = scale * (rng.uniform(0.25, 0.45) if family == "bar" else rng.uniform(0.04, 0.11))
        centre = rng.uniform(0, 1, 2) * (height, width)
        u, v = _local_frame((yy, xx), centre, radius, rng.uniform(0, 2 * np.pi))
        inside = _shape_mask(family, u, v, rng)
        if rng.uniform() < 0.5:
            colour = FAMILY_COLOURS[int(rng.integers(0, num_classes - 1))] + rng.normal(0, COLOUR_SPREAD, 3)
        else:
            colour = rng.uniform(30, 225, 3)
        image[inside] = np.clip(colour, 0, 255) + rng.normal(0.0, 5.0, (int(inside.sum()), 3))

    # objects, later ones on top
    mask = np.zeros(shape, dtype=np.uint8)
    for _ in range(int(rng.integers(1, 5))):
        label = int(rng.integers(1, num_classes))
        family = SHAPE_FAMILIES[label - 1]
        radius = scale * rng.uniform(0.14, 0.3)
        centre = rng.uniform(0.1, 0.9, 2) * (height, width)
        u, v = _local_frame((yy, xx), centre, radius, rng.uniform(0, 2 * np.pi))
        inside = _shape_mask(family, u, v, rng)
        if not inside.any():
            continue
        if rng.uniform() < CAMOUFLAGE_PROBABILITY:
            cy, cx = np.clip(centre.astype(int), 0, (height - 1, width - 1))
            colour = image[cy, cx] + rng.normal(0, 12.0, 3)
        else:
            colour = FAMILY_COLOURS[label - 1] + rng.normal(0, COLOUR_SPREAD, 3)
        shading = 1.0 + 0.2 * u * np.cos(rng.uniform(0, 2 * np.pi))  # H×W, linear across the object
        fill = np.clip(colour, 0, 255) * shading[..., None]
        fill += _texture(FAMILY_TEXTURES[label - 1], u, radius, shape, rng)[..., None]
        image[inside] = fill[inside]
        mask[inside] = label

    image = gaussian_filter(image, (0.7, 0.7, 0))
    image += rng.normal(0.0, 4.0, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), mask


def ignore_band(mask: np.ndarray, width: int) -> np.ndarray:
    """Set pixels within ``width`` px (8-neighbourhood distance) of another class to 255.

    Args:
        mask: H×W uint8 labels.
        width: band half-width in pixels (0 returns the mask unchanged).

    Returns:
        H×W uint8 labels with a 2·width wide ignore band along class boundaries (as VOC's void band).
    """
    if width <= 0:
        return mask
    size = 2 * width + 1
    border = maximum_filter(mask, size=size, mode="nearest") != minimum_filter(mask, size=size, mode="nearest")
    return np.where(border, np.uint8(255), mask).astype(np.uint8)


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random stream of image ``index`` of ``split``: depends only on (seed, split, index)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), _SPLIT_CODES[split], int(index)]))


def generate_demo(
    out: str | Path,
    *,
    train: int = DEMO_DEFAULTS["train"],
    val: int = DEMO_DEFAULTS["val"],
    size: tuple[int, int] = DEMO_DEFAULTS["size"],
    classes: int = DEMO_DEFAULTS["classes"],
    seed: int = DEMO_DEFAULTS["seed"],
    ignore_border: int = DEMO_DEFAULTS["ignore_border"],
    progress: bool = True,
) -> Path:
    """Write the demo dataset (see the module docstring) to ``out`` and return ``out``.

    Args:
        out: output folder (created; existing demo files are overwritten).
        train, val: number of images per split (≥ 0, together ≥ 1).
        size: (H, W) in pixels, each ≥ 16.
        classes: K including background, 2..:data:`MAX_CLASSES`.
        seed: random seed; the same seed gives byte-identical files.
        ignore_border: half-width in px of a 255 band along mask boundaries (0 = no band).
        progress: draw a progress bar.
    """
    from PIL import Image

    out = Path(out)
    height, width = (int(x) for x in size)
    names = demo_classes(classes)
    if height < 16 or width < 16:
        raise UserError(f"--size {height} {width}: images must be at least 16×16. Choose a larger size.")
    if train < 0 or val < 0 or train + val == 0:
        raise UserError(f"--train {train} --val {val}: need at least one image and no negative counts.")
    if ignore_border < 0:
        raise UserError(f"--ignore-border {ignore_border}: must be 0 (off) or a positive width.")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder. Choose another output path.")
    out.mkdir(parents=True, exist_ok=True)
    (out / "classes.txt").write_text("".join(f"{n}\n" for n in names))
    settings = {"generator": "wsss.data.demo", "train": train, "val": val, "size": [height, width],
                "classes": classes, "seed": seed, "ignore_border": ignore_border}
    (out / "demo.json").write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    jobs = [("train", i) for i in range(train)] + [("val", i) for i in range(val)]
    for split, count in (("train", train), ("val", val)):
        if count:
            (out / split / "images").mkdir(parents=True, exist_ok=True)
            (out / split / "masks").mkdir(parents=True, exist_ok=True)
    with progress_bar("demo-data", total=len(jobs), enabled=progress) as advance:
        for split, index in jobs:
            image, mask = render_scene(image_rng(seed, split, index), height, width, classes)
            mask = ignore_band(mask, ignore_border)
            name = f"{split}_{index:04d}.png"
            Image.fromarray(image, mode="RGB").save(out / split / "images" / name)
            Image.fromarray(mask, mode="L").save(out / split / "masks" / name)
            advance(1)
    return out
