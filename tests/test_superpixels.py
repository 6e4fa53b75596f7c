"""Stage ``superpixels``: SLIC against skimage, boundaries, workers, resume, torchrun, CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from skimage.segmentation import find_boundaries, slic
from typer.testing import CliRunner

import wsss.stages.superpixels as stage
from wsss.artifacts import Artifact, ArtifactWriter
from wsss.artifacts import parts_path
from wsss.artifacts import tmp_path as partial_path
from wsss.errors import UserError
from wsss_cli.main import app

runner = CliRunner()
SLIC = {"n_segments": 40, "compactness": 10.0, "sigma": 1.0}


def _segments(path):
    art = Artifact(path, kind="superpixels")
    return {i: art.read(i, "segments") for i in art.ids}


def test_artifact_equals_direct_skimage_call(demo_root, demo_train, tmp_path):
    out = stage.run(demo_root, tmp_path / "sp.h5", split="train", **SLIC)
    art = Artifact(out, kind="superpixels")
    assert art.ids == demo_train.ids
    assert art.classes == demo_train.classes
    assert art.dataset["split"] == "train" and art.config["n_segments"] == 40
    for image_id in demo_train.ids[:3]:
        expected = slic(demo_train.load_image(image_id), n_segments=40, compactness=10.0, sigma=1.0,
                        start_label=0, channel_axis=-1)
        got = art.read(image_id, "segments")
        assert got.dtype == np.int32 and got.shape == (64, 64)
        np.testing.assert_array_equal(got, expected)
        assert art.image_attrs(image_id)["num_segments"] == int(expected.max()) + 1


def test_boundaries_match_skimage_thick_mode():
    rng = np.random.default_rng(0)
    segments = slic(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8), n_segments=12, start_label=0, channel_axis=-1)
    np.testing.assert_array_equal(stage.superpixel_boundaries(segments), find_boundaries(segments, mode="thick"))
    seg = np.zeros((7, 7), np.int32)
    seg[:, 4:] = 1
    wide = stage.superpixel_boundaries(seg, width=2)
    assert wide[:, 2:6].all() and not wide[:, :2].any() and not wide[:, 6:].any()
    assert not stage.superpixel_boundaries(np.zeros((3, 3), np.int32)).any()


def test_workers_do_not_change_the_result(demo_root, tmp_path):
    one = stage.run(demo_root, tmp_path / "w1.h5", **SLIC, workers=1)
    two = stage.run(demo_root, tmp_path / "w2.h5", **SLIC, workers=2)
    a, b = _segments(one), _segments(two)
    assert a.keys() == b.keys()
    for image_id in a:
        np.testing.assert_array_equal(a[image_id], b[image_id])


def test_resume_after_interruption_gives_the_same_content(demo_root, tmp_path, monkeypatch):
    reference = _segments(stage.run(demo_root, tmp_path / "ref.h5", **SLIC))
    out = tmp_path / "sp.h5"
    real = stage.slic_segments
    calls = []

    def crashing(*args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(stage, "slic_segments", crashing)
    with pytest.raises(KeyboardInterrupt):
        stage.run(demo_root, out, **SLIC)
    assert not out.exists() and parts_path(out).is_dir()

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    calls.clear()
    monkeypatch.setattr(stage, "slic_segments", counting)
    stage.run(demo_root, out, **SLIC, resume=True)
    assert len(calls) == len(reference) - 3  # the 3 finished images were kept
    resumed = _segments(out)
    assert resumed.keys() == reference.keys()
    for image_id in reference:
        np.testing.assert_array_equal(resumed[image_id], reference[image_id])
    assert not partial_path(out).exists() and not parts_path(out).exists()


def test_resume_accepts_another_command_line_and_worker_count(demo_root, tmp_path, monkeypatch):
    """The CLI records its command line (which gains --resume) and --workers; resuming ignores both."""
    out = tmp_path / "sp.h5"
    config = {"stage": "superpixels", "n_segments": 40, "command": "wsss superpixels D sp.h5", "workers": 1, "resume": False}
    real = stage.slic_segments
    calls = []

    def crashing(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(stage, "slic_segments", crashing)
    with pytest.raises(KeyboardInterrupt):
        stage.run(demo_root, out, **SLIC, config=config)
    monkeypatch.setattr(stage, "slic_segments", real)
    changed = {**config, "command": "wsss superpixels D sp.h5 --resume -j 2", "workers": 2, "resume": True}
    with pytest.raises(UserError, match="another configuration"):
        stage.run(demo_root, out, **SLIC, resume=True, config={**config, "n_segments": 41})
    stage.run(demo_root, out, **SLIC, resume=True, config=changed)
    assert Artifact(out).config["command"].endswith("--resume -j 2")


def test_cli_superpixels_and_option_errors(demo_root, tmp_path):
    out = tmp_path / "sp.h5"
    result = runner.invoke(app, ["superpixels", str(demo_root), str(out), "--split", "val", "--n-segments", "40", "-j", "1"])
    assert result.exit_code == 0, result.output
    art = Artifact(out, kind="superpixels")
    assert art.ids == [f"val_{i:04d}" for i in range(4)]
    assert art.config["workers"] == 1 and art.config["sigma"] == stage.DEFAULT_SIGMA
    with pytest.raises(UserError, match="--n-segments"):
        stage.run(demo_root, tmp_path / "bad.h5", n_segments=0)
    missing = runner.invoke(app, ["superpixels", str(demo_root), str(tmp_path / "nofolder" / "sp.h5")])
    assert missing.exit_code == 2 and "nofolder" in missing.output


def _torchrun() -> str | None:
    candidate = Path(sys.executable).with_name("torchrun")
    return str(candidate) if candidate.exists() else shutil.which("torchrun")


@pytest.mark.skipif(_torchrun() is None, reason="torchrun not installed")
def test_torchrun_two_ranks_equal_one_process(demo_root, tmp_path):
    single = stage.run(demo_root, tmp_path / "one.h5", **SLIC)
    out = tmp_path / "two.h5"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [_torchrun(), "--standalone", "--nproc_per_node", "2", "-m", "wsss_cli.main", "superpixels",
           str(demo_root), str(out), "--n-segments", "40", "--compactness", "10", "--sigma", "1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    a, b = _segments(single), _segments(out)
    assert a.keys() == b.keys()
    for image_id in a:
        np.testing.assert_array_equal(a[image_id], b[image_id])
    assert not list(tmp_path.glob("two.h5.rank*"))
