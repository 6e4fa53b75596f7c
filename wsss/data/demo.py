"""The built-in procedural demo dataset: cluttered scenes of textured shapes with dense masks.

``generate_demo(out, ...)`` writes, in the generic layout::

    OUT/classes.txt                 background + one class per shape family
    OUT/demo.json                   the generator settings (for provenance)
    OUT/train/images/train_0000.png   H×W RGB
    OUT/train/masks/train_0000.png    H×W grey, class indices (255 = ignore band, when enabled)
    OUT/val/images/val_0000.png ...

What a scene holds (all sizes relative to ``s = min(H, W)``; constants are module attributes):

- **Background** (class 0): a linear gradient between two *desaturated* colours (grey level
  U(50, 200) plus a small per-channel tint, :data:`BACKGROUND_TINT`), low-frequency colour noise,
  and 3–7 clutter patches (small blobs, boxes, long thin bars). A clutter patch is a "confuser"
  with probability :data:`CONFUSER_PROBABILITY`: coloured like an object class, so colour alone
  does not decide the class (shape, size and context do); otherwise it is another grey. Clutter
  makes colour edges that are not object boundaries, also right next to objects.
- **Objects**: 1–4 per image, classes drawn uniformly, radius 0.15–0.32 s, random centre (may
  cross the border), rotation and aspect; later objects occlude earlier ones and the clutter, so
  objects touch. Class ``c`` has a shape family (ellipse, rectangle, triangle, blob, ring, cross,
  star; in that order) whose outline wobbles randomly (:data:`OUTLINE_WOBBLE`), so the outline is
  not predictable from the shape prior; thin parts (ring, cross, star) are narrow. Each family has
  a saturated mean colour (:data:`FAMILY_COLOURS`, hues far apart) with a small per-object spread
  (:data:`COLOUR_SPREAD`), a linear shading and a texture (smooth, stripes, grain, mottled), so
  class identity is learnable from random initialisation in minutes.
- **Rims**: near its outline every object's colour fades smoothly towards a random grey
  (strength :data:`RIM_STRENGTH`, width :data:`RIM_WIDTH` of the radius). The rim has no colour
  edge towards the interior but (mostly) one towards the background, and its colours are never
  under an interior scribble: a network trained on scribbles alone places the outline poorly,
  while edge-aware regularizers (CRF / Potts, self-labeling) carry the interior label out to the
  colour edge. This is the demo's stand-in for the appearance variation of real objects.
- About one object in twenty is "camouflaged" (:data:`CAMOUFLAGE_PROBABILITY`: coloured like the
  background under it), so some boundaries have no colour edge.
- A light blur (σ = 0.7 px) softens edges, and pixel noise (σ = 4) is added.

So colour edges mostly, but not always, coincide with object boundaries: scribbles + partial
cross-entropy learn the class colours but place boundaries poorly (rims) and mistake confusers for
objects, edge-aware regularizers move boundaries to the colour edges, and full masks still do
better on confusers and camouflaged objects. Measured on the defaults (one seed, CPU budget of
``examples/compare-losses.sh``): docs/demo-results.md.

Every image has its own random stream seeded by ``(seed, split, index)``: the same seed gives
byte-identical files, and ``--train 8`` makes the first 8 images of ``--train 64``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.ndimage import distance_transform_edt, gaussian_filter, maximum_filter, minimum_filter

from wsss.errors import UserError
from wsss.validation import check_allocation, check_number
from wsss.progress import progress_bar

#: shape family of object classes 1, 2, ... (class 0 is background)
SHAPE_FAMILIES = ("ellipse", "rectangle", "triangle", "blob", "ring", "cross", "star")
#: mean RGB colour of each family: saturated hues, far apart from each other and from the
#: desaturated background, so that class identity is learnable from random init in minutes.
FAMILY_COLOURS = np.array(
    [[200, 60, 50], [50, 90, 200], [60, 170, 70], [225, 190, 50], [150, 70, 185], [225, 100, 175], [60, 190, 200]],
    dtype=np.float64,
)
#: texture of each family
FAMILY_TEXTURES = ("smooth", "stripes", "grain", "mottled", "smooth", "stripes", "grain")
#: per-object, per-channel std of the colour around its family's mean (small: hues stay apart)
COLOUR_SPREAD = 15.0
#: std of the tint of the (grey) background colours, per channel (small: background stays desaturated)
BACKGROUND_TINT = 14.0
#: probability that a clutter patch is coloured like an object class (a "confuser": the colour
#: says object, the shape and size say background)
CONFUSER_PROBABILITY = 0.4
#: probability that an object is coloured like the background under its centre (no colour edge)
CAMOUFLAGE_PROBABILITY = 0.05
#: relative amplitude of the random low-frequency wobble of every object outline
OUTLINE_WOBBLE = 0.12
#: range of the strength of an object's rim: near its outline the colour fades towards a grey
#: (the rim colour at the outline is ``s·grey + (1 − s)·colour``)
RIM_STRENGTH = (0.4, 0.8)
#: range of the rim's width (e-folding distance from the outline) relative to the object radius
RIM_WIDTH = (0.12, 0.25)
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
def _wobble(u: np.ndarray, v: np.ndarray, amplitude: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Radially perturb a local frame so that a shape's outline wobbles.

    The local radius is divided by ``1 + amplitude · Σ_m a_m cos(m φ + φ_m)`` (harmonics 3–6,
    random weights summing to 1), which moves the outline in and out by up to ``amplitude`` of the
    radius. u, v: H×W float64 local coordinates; returns the perturbed pair.
    """
    if amplitude <= 0:
        return u, v
    phi = np.arctan2(v, u)
    weights = rng.uniform(0.0, 1.0, 4)
    weights /= weights.sum()
    wobble = sum(w * np.cos(m * phi + rng.uniform(0, 2 * np.pi)) for w, m in zip(weights, (3, 4, 5, 6)))
    factor = 1.0 + amplitude * wobble
    return u / factor, v / factor


def _grey(rng: np.random.Generator) -> np.ndarray:
    """A desaturated background colour: grey level U(50, 200) plus a per-channel tint N(0, BACKGROUND_TINT)."""
    return rng.uniform(50, 200) + rng.normal(0.0, BACKGROUND_TINT, 3)


def render_scene(rng: np.random.Generator, height: int, width: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one demo image and its dense mask (see the module docstring for what a scene holds).

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

    # background: gradient between two desaturated colours + low-frequency colour noise
    c1, c2 = _grey(rng), _grey(rng)
    angle = rng.uniform(0, 2 * np.pi)
    t = (yy * np.sin(angle) + xx * np.cos(angle))
    t = (t - t.min()) / max(t.max() - t.min(), 1e-8)
    image = c1 * (1 - t[..., None]) + c2 * t[..., None]
    low = gaussian_filter(rng.normal(0.0, 1.0, (height, width, 3)), (scale / 8, scale / 8, 0))
    image += 12.0 * low / (low.std() + 1e-8)

    # clutter patches (background class): confusers coloured like an object class, or other greys
    for _ in range(int(rng.integers(3, 8))):
        family = ("blob", "rectangle", "ellipse", "bar")[int(rng.integers(0, 4))]
        radius = scale * (rng.uniform(0.25, 0.45) if family == "bar" else rng.uniform(0.04, 0.10))
        centre = rng.uniform(0, 1, 2) * (height, width)
        u, v = _local_frame((yy, xx), centre, radius, rng.uniform(0, 2 * np.pi))
        inside = _shape_mask(family, u, v, rng)
        if rng.uniform() < CONFUSER_PROBABILITY:
            colour = FAMILY_COLOURS[int(rng.integers(0, num_classes - 1))] + rng.normal(0, COLOUR_SPREAD, 3)
        else:
            colour = _grey(rng)
        image[inside] = np.clip(colour, 0, 255) + rng.normal(0.0, 5.0, (int(inside.sum()), 3))

    # objects, later ones on top (they may touch and occlude each other and the clutter)
    mask = np.zeros(shape, dtype=np.uint8)
    for _ in range(int(rng.integers(1, 5))):
        label = int(rng.integers(1, num_classes))
        family = SHAPE_FAMILIES[label - 1]
        radius = scale * rng.uniform(0.15, 0.32)
        centre = rng.uniform(0.1, 0.9, 2) * (height, width)
        u, v = _local_frame((yy, xx), centre, radius, rng.uniform(0, 2 * np.pi))
        inside = _shape_mask(family, *_wobble(u, v, OUTLINE_WOBBLE, rng), rng)
        if not inside.any():
            continue
        if rng.uniform() < CAMOUFLAGE_PROBABILITY:
            cy, cx = np.clip(centre.astype(int), 0, (height - 1, width - 1))
            colour = image[cy, cx] + rng.normal(0, 12.0, 3)
        else:
            colour = FAMILY_COLOURS[label - 1] + rng.normal(0, COLOUR_SPREAD, 3)
        shading = 1.0 + 0.15 * u * np.cos(rng.uniform(0, 2 * np.pi))  # H×W, linear across the object
        fill = np.clip(colour, 0, 255) * shading[..., None]
        fill += _texture(FAMILY_TEXTURES[label - 1], u, radius, shape, rng)[..., None]
        # rim: fades towards a grey near the outline (smoothly, so no colour edge inside the object)
        rim = np.exp(-distance_transform_edt(inside) / (rng.uniform(*RIM_WIDTH) * radius))
        fill += (rng.uniform(*RIM_STRENGTH) * rim)[..., None] * (_grey(rng) - fill)
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
    check_number("--seed", seed, 0, None, integer=True)
    check_allocation(float(height) * width * (3 + 1 + 8), f"--size {height} {width}: one image with its mask",
                     "Choose a smaller --size.")
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
