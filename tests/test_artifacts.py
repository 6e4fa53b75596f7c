"""HDF5 artifacts: round trip, atomic write, resume, kind/schema checks, provenance."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from wsss.artifacts import SCHEMA_VERSION, Artifact, ArtifactWriter, decode_id, encode_id
from wsss.artifacts import parts_path
from wsss.artifacts import tmp_path as partial_path
from wsss.errors import UserError


def _write(path, ids, kind="seeds", resume=False, config=None, commit=True):
    w = ArtifactWriter(path, kind, classes=["bg", "a"], config=config or {"x": 1}, dataset={"layout": "generic", "root": "/d", "split": "train"}, resume=resume)
    for i in ids:
        w.write(i, {"label": np.full((4, 5), ord(i[-1]) % 3, np.uint8)}, {"note": i})
    if commit:
        w.commit()
    return w


def test_round_trip_and_metadata(tmp_path):
    path = tmp_path / "seeds.h5"
    _write(path, ["b", "a", "city/x%1"])
    art = Artifact(path, kind="seeds")
    assert art.ids == sorted(["a", "b", "city/x%1"])
    assert art.classes == ["bg", "a"]
    assert art.ignore_index == 255
    assert art.config == {"x": 1}
    assert art.dataset["layout"] == "generic"
    np.testing.assert_array_equal(art.read("city/x%1", "label"), np.full((4, 5), ord("1") % 3, np.uint8))
    assert art.image_attrs("a") == {"note": "a"}
    assert art.provenance()["kind"] == "seeds"
    assert not tmp_path.joinpath("seeds.h5.tmp").exists()
    # ids with '/' and '%' survive the group-name encoding
    assert decode_id(encode_id("a/b%2Fc")) == "a/b%2Fc"


def test_uncommitted_writer_leaves_no_final_file(tmp_path):
    path = tmp_path / "seeds.h5"
    w = _write(path, ["a"], commit=False)
    w.close()
    assert not path.exists() and parts_path(path).is_dir() and not partial_path(path).exists()
    with pytest.raises(UserError, match="--resume"):
        Artifact(path)


def test_user_error_inside_writer_discards_partial(tmp_path):
    path = tmp_path / "seeds.h5"
    with pytest.raises(UserError):
        with ArtifactWriter(path, "seeds", classes=["a"], config={}) as w:
            w.write("a", {"label": np.zeros((2, 2), np.uint8)})
            raise UserError("bad input")
    assert not path.exists() and not partial_path(path).exists() and not parts_path(path).exists()


def test_resume_keeps_finished_images_and_checks_config(tmp_path):
    path = tmp_path / "seeds.h5"
    w = _write(path, ["a", "b"], commit=False)
    # simulate a crash in the middle of image c: a leftover temporary part and a torn part file
    w.parts.file("c").with_suffix(".tmp").write_bytes(b"\x89HDF\r\n\x1a\n torn")
    w.parts.file("d").write_bytes(b"\x89HDF\r\n\x1a\n torn")
    w.close()
    with pytest.raises(UserError, match="another configuration"):
        ArtifactWriter(path, "seeds", classes=["bg", "a"], config={"x": 2}, resume=True)
    w2 = ArtifactWriter(path, "seeds", classes=["bg", "a"], config={"x": 1}, resume=True,
                        dataset={"layout": "generic", "root": "/d", "split": "train"})
    assert w2.done == {"a", "b"}
    w2.write("c", {"label": np.ones((4, 5), np.uint8)})
    w2.commit()
    art = Artifact(path)
    assert art.ids == ["a", "b", "c"]
    np.testing.assert_array_equal(art.read("c", "label"), 1)


def test_wrong_kind_newer_schema_and_garbage(tmp_path):
    path = tmp_path / "seeds.h5"
    _write(path, ["a"])
    with pytest.raises(UserError, match="expected 'predictions'"):
        Artifact(path, kind="predictions")
    with h5py.File(path, "a") as f:
        f.attrs["wsss_schema"] = SCHEMA_VERSION + 1
    with pytest.raises(UserError, match="newer"):
        Artifact(path)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(UserError, match="junk.h5"):
        Artifact(junk)
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = 1
    with pytest.raises(UserError, match="not a wsss artifact"):
        Artifact(plain)


def test_inputs_provenance_chain(tmp_path):
    first = tmp_path / "a.h5"
    _write(first, ["a"], config={"command": "wsss prepare-scribbles"})
    parent = Artifact(first)
    second = tmp_path / "b.h5"
    with ArtifactWriter(second, "pseudolabels", classes=["bg", "a"], config={"command": "wsss solve"}, inputs=[parent.provenance()]) as w:
        w.write("a", {"probs": np.zeros((2, 4, 5), np.float16)})
        w.commit()
    child = Artifact(second)
    assert child.inputs[0]["kind"] == "seeds"
    assert child.inputs[0]["config"]["command"] == "wsss prepare-scribbles"
    from wsss.artifacts import describe_chain

    lines = describe_chain(child.provenance())
    assert any("wsss prepare-scribbles" in line for line in lines)
    assert json.loads(h5py.File(second, "r").attrs["inputs"])[0]["path"] == str(first.resolve())


def test_reader_reopens_after_fork(tmp_path):
    """The lazy handle is re-created in a child process (h5py handles are not fork-safe)."""
    import multiprocessing as mp

    path = tmp_path / "seeds.h5"
    _write(path, ["a", "b"])
    art = Artifact(path)
    art.read("a", "label")  # open in the parent
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        sums = pool.map(_sum_label, [(art, "a"), (art, "b")])
    assert sums == [int(art.read("a", "label").sum()), int(art.read("b", "label").sum())]


def _sum_label(args):
    art, image_id = args
    return int(art.read(image_id, "label").sum())


def test_folder_and_garbage_are_named_user_errors(tmp_path):
    with pytest.raises(UserError, match="is a folder"):
        Artifact(tmp_path)
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not an hdf5 file" * 64)
    with pytest.raises(UserError, match=r"bad\.h5: not a readable HDF5 artifact \(.*signature"):
        Artifact(bad)
