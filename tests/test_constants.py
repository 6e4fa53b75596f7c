"""One home for the shared constants (wsss/constants.py): the ignore value and the ImageNet
statistics are defined there only, and the 0–255 statistics are the [0, 1] ones × 255."""

from __future__ import annotations

import re
from pathlib import Path

from wsss import constants as C

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [p for top in ("wsss", "stages", "wsss_cli", "experiments", "benchmarks") for p in (ROOT / top).rglob("*.py")]


def test_statistics_and_units():
    assert C.IGNORE_INDEX == 255 and C.PIXEL_MAX == 255
    assert C.IMAGENET_MEAN == (0.485, 0.456, 0.406) and C.IMAGENET_STD == (0.229, 0.224, 0.225)
    for unit, scaled in ((C.IMAGENET_MEAN, C.IMAGENET_MEAN_255), (C.IMAGENET_STD, C.IMAGENET_STD_255)):
        assert all(abs(s - 255 * u) < 1e-12 for u, s in zip(unit, scaled))


def test_no_second_definition():
    definition = re.compile(r"^\s*[A-Za-z_]\w*\s*(?::\s*int\s*)?=\s*255\s*(#.*)?$", re.M)
    literal = re.compile(r"0\.485|0\.229")
    offenders = [str(p.relative_to(ROOT)) for p in SOURCES if p.name != "constants.py"
                 and (definition.search(p.read_text()) or literal.search(p.read_text()))]
    assert not offenders, f"define the ignore value / ImageNet statistics in wsss/constants.py only: {offenders}"

