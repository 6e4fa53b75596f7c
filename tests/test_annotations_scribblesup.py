"""ScribbleSup XML import and seed PNGs (wsss.annotations.scribblesup)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.draw import line

from wsss.annotations import read_scribblesup_xml, render_scribbles
from wsss.annotations.scribblesup import load_seed_png
from wsss.errors import UserError

CLASSES = ["background", "aeroplane", "tvmonitor", "pottedplant"]


def write_xml(path, polygons, header=True):
    """ScribbleSup's format: <annotation> with <polygon><tag/><point><X/><Y/></point>...</polygon>."""
    parts = ["<annotation>"]
    if header:
        parts += ["<filename>img.jpg</filename>", "<folder>VOC2012</folder>"]
    for tag, points in polygons:
        parts.append("<polygon>")
        parts.append(f"<tag>{tag}</tag>")
        parts += [f"<point><X>{x}</X><Y>{y}</Y></point>" for x, y in points]
        parts.append("</polygon>")
    parts.append("</annotation>")
    path.write_text("\n".join(parts))
    return path


def reference(polygons, classes, shape, width=3):
    """Independent rasterization: skimage.draw.line per segment, binary dilation by a w×w square."""
    out = np.full(shape, 255, np.uint8)
    for tag, points in polygons:
        centre = np.zeros(shape, bool)
        pts = [(int(round(float(y))), int(round(float(x)))) for x, y in points]
        if len(pts) == 1:
            centre[pts[0]] = True
        for (r0, c0), (r1, c1) in zip(pts[:-1], pts[1:]):
            rr, cc = line(r0, c0, r1, c1)
            centre[rr, cc] = True
        stroke = ndimage.binary_dilation(centre, structure=np.ones((width, width), bool))
        out[stroke] = [c.lower() for c in classes].index(tag.lower().replace("/", ""))
    return out


def test_hand_made_case_imports_to_expected_pixels(tmp_path):
    polys = [
        ("aeroplane", [(2, 5), (10, 5), (10, 12)]),  # horizontal then vertical
        ("Background", [(6, 0), (6, 9)]),  # crosses the first; later overwrites
    ]
    path = write_xml(tmp_path / "a.xml", polys)
    scribbles = read_scribblesup_xml(path, CLASSES, (16, 14))
    label = render_scribbles(scribbles, (16, 14), 3)
    expected = np.full((16, 14), 255, np.uint8)
    expected[4:7, 1:12] = 1  # y 5 ± 1, x 2-1 .. 10+1
    expected[4:14, 9:12] = 1  # x 10 ± 1, y 5-1 .. 12+1
    expected[0:11, 5:8] = 0  # x 6 ± 1, y 0 .. 9+1 (row -1 clipped)
    assert np.array_equal(label, expected)
    assert np.array_equal(label, reference(polys, CLASSES, (16, 14)))


def test_diagonal_and_fractional_polylines_match_independent_rasterization(tmp_path):
    polys = [
        ("pottedplant", [(3, 3), (40, 25), (12.4, 44.6)]),
        ("tv/monitor", [(45, 2), (5, 30)]),
        ("background", [(20, 20)]),  # a single click
    ]
    path = write_xml(tmp_path / "b.xml", polys, header=False)
    for width in (1, 3):
        label = render_scribbles(read_scribblesup_xml(path, CLASSES, (50, 50)), (50, 50), width)
        assert np.array_equal(label, reference(polys, CLASSES, (50, 50), width))


@pytest.mark.parametrize(
    "content, reason",
    [
        ("<annotation><polygon><tag>aeroplane</tag><point><X>1</X>", "malformed XML"),
        ("<annotation><polygon><tag>zebra</tag><point><X>1</X><Y>1</Y></point></polygon></annotation>", "unknown class"),
        ("<annotation><polygon><tag>aeroplane</tag><point><X>100</X><Y>1</Y></point></polygon></annotation>", "outside"),
        ("<annotation><polygon><tag>aeroplane</tag><point><X>-1</X><Y>1</Y></point></polygon></annotation>", "outside"),
        ("<annotation></annotation>", "no <polygon>"),
        ("<annotation><polygon><tag>aeroplane</tag></polygon></annotation>", "no <point>"),
        ("<annotation><polygon><point><X>1</X><Y>1</Y></point></polygon></annotation>", "no <tag>"),
        ("<annotation><polygon><tag>aeroplane</tag><point><X>a</X><Y>1</Y></point></polygon></annotation>", "not a number"),
    ],
)
def test_bad_xml_is_a_user_error_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "bad.xml"
    path.write_text(content)
    with pytest.raises(UserError) as info:
        read_scribblesup_xml(path, CLASSES, (20, 20))
    assert str(path) in str(info.value) and reason in str(info.value)


def test_seed_png_palette_and_checks(tmp_path):
    from PIL import Image

    label = np.full((10, 12), 255, np.uint8)
    label[2:4, 3:9] = 2
    im = Image.fromarray(label, mode="P")
    im.putpalette([0, 0, 0] * 256)
    im.save(tmp_path / "p.png")
    assert np.array_equal(load_seed_png(tmp_path / "p.png", 4, (10, 12)), label)
    with pytest.raises(UserError, match="p.png"):
        load_seed_png(tmp_path / "p.png", 4, (11, 12))
    with pytest.raises(UserError, match="not classes"):
        load_seed_png(tmp_path / "p.png", 2, (10, 12))
