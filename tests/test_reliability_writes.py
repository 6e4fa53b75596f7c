"""Crash safety of the per-image stages: SIGKILL at exact points and at random moments, then
``--resume``, compared dataset by dataset with an uninterrupted run; worker processes die with
their parent.

Deterministic kill points use the writer's test hook ``WSSS_TEST_KILL_AT=POINT:N``
(:func:`wsss.artifacts.crash_point`): the writing process sends itself SIGKILL the N-th time it
reaches POINT. The killed runs are forked children of the test process (no re-import of torch);
one end-to-end check goes through the ``wsss`` command line in a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import h5py
import numpy as np
import pytest

from wsss.artifacts import CRASH_ENV, Artifact, parts_path
from wsss.artifacts import tmp_path as join_path
from wsss.crf import CRFParams
from wsss.data.demo import generate_demo
from wsss.potts.solver import SolverConfig

#: the deterministic kill points every stage is killed at (point:N = the N-th time it is reached)
KILL_POINTS = ["part-open:2", "part-tmp:1", "part:3", "join:2", "committed:1"]
#: random-moment kills (fraction of the uninterrupted run's wall time)
KILL_FRACTIONS = [0.5]

N_IMAGES = 4


# -- helpers ------------------------------------------------------------------------------------
def run_killed(job, point: str | None = None, delay: float | None = None) -> int:
    """Run ``job()`` in a forked child; with ``point`` the child kills itself there, with ``delay``
    the parent SIGKILLs it after that many seconds. Returns the wait status."""
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 0
        try:
            if point is not None:
                os.environ[CRASH_ENV] = point
            job()
        except BaseException:  # noqa: BLE001
            code = 3
        os._exit(code)
    if delay is not None:
        time.sleep(delay)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _, status = os.waitpid(pid, 0)
    return status


def killed_by_sigkill(status: int) -> bool:
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def artifact_contents(path: Path) -> dict:
    """Everything of an artifact a reader can see, except its write time: root attributes, and
    per image group its attributes and every dataset's dtype, shape, chunks, filter and bytes."""
    out = {}
    with h5py.File(path, "r") as f:
        out["/"] = {k: _plain(v) for k, v in f.attrs.items() if k != "created"}
        for name in f:
            group = f[name]
            entry = {"attrs": {k: _plain(v) for k, v in group.attrs.items()}}
            for key, ds in group.items():
                entry[key] = (str(ds.dtype), ds.shape, ds.chunks, ds.compression, ds[()].tobytes())
            out[name] = entry
    return out


def _plain(value):
    return value.tolist() if isinstance(value, np.ndarray) else value


def assert_same_artifact(a: Path, b: Path) -> None:
    ca, cb = artifact_contents(a), artifact_contents(b)
    assert ca.keys() == cb.keys()
    for key in ca:
        assert ca[key] == cb[key], key


def file_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# -- data ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Tiny inputs of every per-image stage: a dataset of 4 images, seeds, tags, pseudo-labels,
    cams, a segmentation checkpoint and a CAM checkpoint."""
    from wsss.cam.training import CamTrainConfig, train_cams
    from wsss.stages import cam, prepare, solve
    from wsss.training import TrainConfig, train

    root = tmp_path_factory.mktemp("reliability")
    data = Path(generate_demo(root / "demo", train=N_IMAGES, val=0, size=(32, 32), classes=3, seed=0, progress=False))
    seeds = prepare.run_scribbles(data, root / "seeds.h5", config={"command": "test"})
    tags = prepare.run_tags(data, root / "tags.h5", config={"command": "test"})
    pseudo = solve.run(seeds, root / "pseudo.h5", solver=SolverConfig(init="uniform", steps=3, cg_max_iter=2),
                       config={"command": "test"})
    seg_run = train(TrainConfig(out=str(root / "segrun"), seeds=str(seeds), epochs=1, backbone="mobilenet_v2",
                                width_mult=0.25, head_channels=8, batch_size=4, crop_size=32, progress=False))
    cam_run = train_cams(CamTrainConfig(out=str(root / "camrun"), tags=str(tags), backbone="mobilenet_v2",
                                        width_mult=0.25, output_stride=8, epochs=1, batch_size=4, resize_long_min=32,
                                        resize_long_max=32, crop_size=32, progress=False, device="cpu"))
    cams = cam.run_export(cam_run, root / "cams.h5", scales=(1.0,), flip=False)
    return {"root": root, "data": data, "seeds": Path(seeds), "tags": Path(tags), "pseudo": Path(pseudo),
            "seg_run": Path(seg_run), "cam_run": Path(cam_run), "cams": Path(cams)}


def stage_jobs(world):
    """name -> function(out, resume) running that stage on the tiny inputs."""
    from wsss.stages import cam, crf, predict, prepare, solve, superpixels

    w = world
    return {
        "prepare-scribbles": lambda out, resume: prepare.run_scribbles(w["data"], out, resume=resume, config={"c": 1}),
        "prepare-tags": lambda out, resume: prepare.run_tags(w["data"], out, resume=resume, config={"c": 1}),
        "superpixels": lambda out, resume: superpixels.run(w["data"], out, n_segments=20, resume=resume),
        "solve": lambda out, resume: solve.run(w["seeds"], out, solver=SolverConfig(init="uniform", steps=3, cg_max_iter=2),
                                               resume=resume),
        "crf": lambda out, resume: crf.run(w["pseudo"], out, params=CRFParams(iterations=2), resume=resume),
        "predict": lambda out, resume: predict.run(predict.PredictConfig(checkpoint=str(w["seg_run"]), out=str(out),
                                                                         split="train", device="cpu", resume=resume)),
        "cam export": lambda out, resume: cam.run_export(w["cam_run"], out, scales=(1.0,), flip=False, resume=resume),
        "cam seeds": lambda out, resume: cam.run_seeds(w["cams"], out, rule="threshold", resume=resume),
    }


STAGES = ["prepare-scribbles", "prepare-tags", "superpixels", "solve", "crf", "predict", "cam export", "cam seeds"]


# -- kill tests -----------------------------------------------------------------------------------
@pytest.mark.parametrize("stage", STAGES)
def test_kill_then_resume_is_bit_identical(world, tmp_path, stage):
    """SIGKILL at every kill point and at a random moment; ``--resume`` completes the artifact to
    the uninterrupted run's, dataset by dataset; a kill never leaves a file at the final path
    that is not complete, and never an unreadable partial image."""
    job = stage_jobs(world)[stage]
    out = tmp_path / "out.h5"  # every run writes the same path: the recorded configurations are equal
    reference = tmp_path / "reference.h5"
    start = time.monotonic()
    job(out, False)
    duration = time.monotonic() - start
    out.rename(reference)
    outcomes = []
    for point in KILL_POINTS + [f"time:{f}" for f in KILL_FRACTIONS]:
        out.unlink(missing_ok=True)
        if point.startswith("time:"):
            status = run_killed(lambda: job(out, False), delay=float(point[5:]) * duration)
        else:
            status = run_killed(lambda: job(out, False), point=point)
            assert killed_by_sigkill(status), f"{stage}: the writer did not reach {point}"
        if out.exists():  # only ever a complete artifact at the final path
            Artifact(out)
        parts = parts_path(out)
        if parts.exists():  # every part left behind opens (a torn one is only ever a .tmp)
            for p in parts.glob("*.h5"):
                with h5py.File(p, "r") as f:
                    assert f.attrs["wsss_part"]
        job(out, True)
        assert_same_artifact(out, reference)
        assert not parts.exists() and not join_path(out).exists()
        outcomes.append((point, "killed" if killed_by_sigkill(status) else "finished", "identical"))
    print(f"\n{stage}: " + ", ".join(f"{p} {k} -> {r}" for p, k, r in outcomes))


def test_kill_during_rewrite_keeps_the_previous_artifact(world, tmp_path):
    """A run over an existing artifact that is killed mid-join leaves the old file byte-identical."""
    from wsss.stages import superpixels

    out = tmp_path / "sp.h5"
    superpixels.run(world["data"], out, n_segments=12)
    before = file_hash(out)
    for point in ("part:2", "join:3", "joined:1"):
        status = run_killed(lambda: superpixels.run(world["data"], out, n_segments=30), point=point)
        assert killed_by_sigkill(status)
        assert file_hash(out) == before
    superpixels.run(world["data"], out, n_segments=30, resume=True)
    reference = superpixels.run(world["data"], tmp_path / "ref.h5", n_segments=30)
    assert_same_artifact(out, reference)


def _marked_processes(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_cli_kill_with_workers_then_resume(world, tmp_path):
    """``wsss solve -j 2`` (a subprocess) killed (SIGKILL) after its 2nd image: no worker outlives
    it, and ``wsss solve --resume`` gives the uninterrupted run's artifact."""
    marker = f"WSSS_RELIABILITY_MARK={uuid.uuid4().hex}"
    key, value = marker.split("=")
    exe = [sys.executable, "-m", "wsss_cli.main"]
    common = ["solve", str(world["seeds"]), "--init", "uniform", "--steps", "3", "--cg-max-iter", "2"]
    out = tmp_path / "pseudo.h5"
    env = {**os.environ, "OMP_NUM_THREADS": "1", key: value, CRASH_ENV: "part:2"}
    proc = subprocess.run(exe + common + ["-o", str(out), "-j", "2"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    deadline = time.monotonic() + 5
    while _marked_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _marked_processes(marker) == [], "worker processes outlived their killed parent"
    assert not out.exists() and parts_path(out).is_dir()
    from typer.testing import CliRunner

    from wsss.stages import solve
    from wsss_cli.main import app

    resumed = CliRunner().invoke(app, common + ["-o", str(out), "--resume"])
    assert resumed.exit_code == 0, resumed.output

    reference = solve.run(world["seeds"], tmp_path / "reference.h5",
                          solver=SolverConfig(init="uniform", steps=3, cg_max_iter=2))
    a, b = artifact_contents(out), artifact_contents(reference)
    for c in (a, b):  # the recorded configurations differ (command line, paths): everything else is equal
        c["/"].pop("config")
    assert a == b


# -- one writer per output --------------------------------------------------------------------------
def _one_error_line(result) -> str:
    text = result.output.strip()
    assert result.exit_code == 2, text
    assert "Traceback" not in text and len(text.splitlines()) == 1, text
    return text


def test_second_writer_refuses_and_first_result_is_intact(world, tmp_path):
    from typer.testing import CliRunner

    from wsss.locks import lock_path
    from wsss.stages import superpixels
    from wsss_cli.main import app

    out = tmp_path / "sp.h5"
    real = superpixels.slic_segments
    runner = CliRunner()
    assert runner.invoke(app, ["superpixels", "--help"]).exit_code == 0  # builds the command line app now

    def slow_first_writer():
        def slow(*args, **kwargs):
            time.sleep(1.0)
            return real(*args, **kwargs)

        superpixels.slic_segments = slow  # in the forked child only
        superpixels.run(world["data"], out, n_segments=20)

    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            slow_first_writer()
        except BaseException:  # noqa: BLE001
            code = 3
        os._exit(code)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (lock_path(out).exists() and lock_path(out).read_text().strip()):
        time.sleep(0.05)
    for extra in ([], ["--resume"]):
        second = runner.invoke(app, ["superpixels", str(world["data"]), str(out), "--n-segments", "20", *extra])
        line = _one_error_line(second)
        assert f"another wsss process is writing it (pid {pid} on " in line and "command:" in line
    assert os.waitpid(pid, os.WNOHANG) == (0, 0), "the first writer ended before the second tried"
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert not lock_path(out).exists()
    reference = superpixels.run(world["data"], tmp_path / "reference.h5", n_segments=20)
    assert_same_artifact(out, reference)


def test_lock_of_a_killed_writer_is_free(tmp_path):
    from wsss.locks import OutputLock, lock_path

    out = tmp_path / "x.h5"

    def hold_and_die():
        OutputLock(out).acquire()
        os.kill(os.getpid(), signal.SIGKILL)

    assert killed_by_sigkill(run_killed(hold_and_die))
    assert lock_path(out).exists()  # stale file, no lock
    with OutputLock(out) as lock:
        assert lock.held and str(os.getpid()) in lock_path(out).read_text()
        from wsss.errors import UserError

        with pytest.raises(UserError, match=f"pid {os.getpid()} on"):
            OutputLock(out).acquire()  # another open file description: refused, also in-process
    assert not lock_path(out).exists()


# -- outputs never damage inputs --------------------------------------------------------------------
def _tree_state(root: Path) -> dict:
    return {str(p.relative_to(root)): (file_hash(p) if p.is_file() and not p.is_symlink() else "link" if p.is_symlink() else "dir")
            for p in sorted(root.rglob("*"))}


def test_output_that_is_an_input_exits_2_and_changes_nothing(world, tmp_path):
    from typer.testing import CliRunner

    from wsss_cli.main import app

    w = world
    images, masks = w["data"] / "train" / "images", w["data"] / "train" / "masks"
    link = w["root"] / "seeds-link.h5"
    if not link.exists():
        link.symlink_to(w["seeds"])
    hard = w["root"] / "pseudo-hardlink.h5"
    if not hard.exists():
        os.link(w["pseudo"], hard)
    cases = [
        (["solve", w["seeds"], "-o", w["seeds"], "--init", "uniform"], "is an input"),
        (["solve", w["seeds"], "-o", link, "--init", "uniform"], "is an input"),
        (["crf", w["pseudo"], "-o", w["pseudo"]], "is an input"),
        (["crf", w["pseudo"], "-o", hard], "is an input"),
        (["eval", w["seeds"], "-o", w["seeds"]], "is an input"),
        (["predict", w["seg_run"], "-o", w["seg_run"] / "last.pt"], "is an input"),
        (["predict", w["seg_run"], "-o", w["seg_run"] / "config.json"], "is a file of the input"),
        (["cam", "export", w["cam_run"], "-o", w["tags"]], "is an input"),
        (["cam", "seeds", w["cams"], "-o", w["cams"]], "is an input"),
        (["show", w["seeds"], "-o", images], "image or mask folder"),
        (["show", w["seeds"], "-o", masks / "overlays"], "image or mask folder"),
        (["superpixels", w["data"], images / "sp.h5"], "image or mask folder"),
        (["prepare-scribbles", w["data"], masks / "seeds.h5"], "image or mask folder"),
        (["prepare-tags", w["data"], w["data"] / "classes.txt"], "is a file of the dataset"),
        (["train", "-o", images / "run", "--seeds", w["seeds"], "--epochs", "1"], "image or mask folder"),
        (["train", "-o", w["seeds"], "--seeds", w["seeds"], "--epochs", "1"], "is an input"),
        (["cam", "train", "-o", masks, "--tags", w["tags"], "--epochs", "1"], "image or mask folder"),
    ]
    before = _tree_state(w["root"])
    runner = CliRunner()
    for args, reason in cases:
        result = runner.invoke(app, [str(a) for a in args])
        line = _one_error_line(result)
        assert reason in line, (args, line)
    assert _tree_state(w["root"]) == before


# -- resume refuses changed inputs ------------------------------------------------------------------
def test_resume_refuses_to_mix_old_and_new_inputs(world, tmp_path):
    import shutil

    from wsss.errors import UserError
    from wsss.stages import prepare, solve

    data = Path(shutil.copytree(world["data"], tmp_path / "demo"))
    seeds = prepare.run_scribbles(data, tmp_path / "seeds.h5", config={"c": 1})
    out = tmp_path / "pseudo.h5"
    options = dict(solver=SolverConfig(init="uniform", steps=3, cg_max_iter=2), data=data)

    def interrupted():
        assert killed_by_sigkill(run_killed(lambda: solve.run(seeds, out, **options), point="part:2"))

    interrupted()
    prepare.run_scribbles(data, seeds, seed=1, config={"c": 1})  # other seeds under the same path
    with pytest.raises(UserError, match=r"the inputs changed since the interrupted run started \(.*seeds\.h5 changed \("):
        solve.run(seeds, out, resume=True, **options)
    assert parts_path(out).is_dir() and not out.exists()  # the refusal keeps the partial output

    interrupted()
    image = data / "train" / "images" / "train_0003.png"
    st = image.stat()
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # an image replaced in place
    with pytest.raises(UserError, match=r"dataset .*demo \[train\] changed \(sha256\)"):
        solve.run(seeds, out, resume=True, **options)

    interrupted()  # unchanged inputs: resume completes it
    solve.run(seeds, out, resume=True, **options)
    reference = solve.run(seeds, tmp_path / "reference.h5", **options)
    a, b = artifact_contents(out), artifact_contents(reference)
    for c in (a, b):
        c["/"].pop("config")  # records the output path
    assert a == b
