"""Reliability suite, bad input: every class of bad input is refused through the command line with
exit code 2, one line ``error: ...`` naming the file or option, no traceback, the inputs unchanged
(sha256 of every file) and no output that looks complete.

Classes covered (see the test names): numeric options out of range or not finite (every float option
of every command with NaN and inf; the ranges of solve, train, crf, eval, prepare-*, show, cam,
demo-data), allocations that cannot fit (``--radius``, ``--width``, ``--crop-size``, ``--scales``,
``--scale``, ``--size``), seeds without any labelled pixel (prepare, solve, train), NaN scores
(eval, show, solve) and NaN results (refused before writing), a mask whose image is missing, duplicate
class names (dataset, artifact), a dataset path that is a file, a damaged .h5 (signature, truncated,
corrupt chunk, garbage ``classes`` attribute), output folders that do not exist or cannot be written,
an output path that is a folder, and a failed ``train`` start (no run directory left behind).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from wsss.artifacts import Artifact, ArtifactWriter, parts_path
from wsss.artifacts import tmp_path as partial_tmp
from wsss.data import open_dataset
from wsss_cli.main import app

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


# -- helpers --------------------------------------------------------------------------------------

def checksums(*roots: Path) -> dict[str, str]:
    """sha256 of every file under the given files / folders."""
    out = {}
    for root in roots:
        root = Path(root)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def refused(args, *needles: str, inputs=(), outputs=()) -> str:
    """Run ``wsss ARGS``; assert the contract of a refused bad input; returns the error line."""
    before = checksums(*inputs)
    result = runner.invoke(app, [str(a) for a in args])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert checksums(*inputs) == before, "an input file changed"
    for out in outputs:
        out = Path(out)
        assert not out.exists() or (out.is_dir() and not any(out.iterdir())), f"{out} was written"
        for partial in (partial_tmp(out), parts_path(out)):
            assert not partial.exists(), f"{partial} left behind"
    return lines[0]


def ok(args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def write_artifact(path: Path, kind: str, dataset, arrays_of, classes=None) -> Path:
    with ArtifactWriter(path, kind, classes=classes or dataset.classes, config={"test": True},
                        dataset=dataset.describe()) as writer:
        for image_id in dataset.ids:
            writer.write(image_id, arrays_of(image_id))
        writer.commit()
    return path


@pytest.fixture(autouse=True, scope="module")
def _one_command_tree():
    """Build the click command tree once for the module (typer rebuilds it on every invoke, ~0.1 s)."""
    import typer.main
    import typer.testing

    saved = getattr(typer.testing, "_get_command", None)
    if saved is None:
        yield
        return
    tree = typer.main.get_command(app)
    typer.testing._get_command = lambda a: tree if a is app else saved(a)
    yield
    typer.testing._get_command = saved


# -- fixtures: a copy of the tiny demo data and a few artifacts on it ------------------------------

@pytest.fixture(scope="module")
def env(demo_root, tmp_path_factory):
    base = tmp_path_factory.mktemp("bad_input")
    data = base / "data"
    shutil.copytree(demo_root, data)
    train = open_dataset(data, split="train")
    k = train.num_classes
    seeds = base / "seeds.h5"
    ok(["prepare-blocks", data, seeds, "--block-size", "16"])

    def soft(image_id):
        mask = train.load_mask(image_id)
        onehot = np.stack([(mask == c) for c in range(k)]).astype(np.float32) * 0.9 + 0.1 / k
        return {"scores": onehot.astype(np.float16), "label": onehot.argmax(0).astype(np.uint8)}

    pred = write_artifact(base / "pred.h5", "predictions", train, soft)

    def nan_soft(image_id):
        arrays = soft(image_id)
        if image_id == train.ids[-1]:
            arrays["scores"][0, 0, 0] = np.nan
        return arrays

    nanpred = write_artifact(base / "nanpred.h5", "predictions", train, nan_soft)
    empty = write_artifact(base / "empty_seeds.h5", "seeds", train,
                           lambda i: {"label": np.full(train.load_mask(i).shape, 255, np.uint8)})

    def cams(image_id, bad=False):
        c = np.full((1,) + train.load_mask(image_id).shape, 0.5, np.float16)
        if bad:
            c[0, 1, 1] = np.inf
        return {"cams": c, "classes": np.array([1], np.int16)}

    nancams = write_artifact(base / "nancams.h5", "cams", train, lambda i: cams(i, i == train.ids[0]))
    goodcams = write_artifact(base / "cams.h5", "cams", train, cams)
    return {"base": base, "data": data, "train": train, "seeds": seeds, "pred": pred, "nanpred": nanpred,
            "empty": empty, "nancams": nancams, "cams": goodcams}


@pytest.fixture(scope="module")
def run_dir(env):
    """A tiny trained segmentation run (one step) for predict."""
    out = env["base"] / "run"
    ok(["train", "--out", out, "--seeds", env["seeds"], "--epochs", "1", "--batch-size", "8", "--crop-size", "32",
        "--backbone", "mobilenet_v2", "--width-mult", "0.25", "--head-channels", "8", "--device", "cpu",
        "--log-every", "0"])
    return out


def inputs_of(env):
    return (env["data"], env["seeds"], env["pred"])


# -- 6. numeric options: ranges, finiteness, allocations ---------------------------------------------

def _float_options():
    import typer

    cases = []

    def walk(cmd, prefix):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, prefix + [name])
            return
        required = []
        for p in cmd.params:
            if p.required:
                required += (p.opts[:1] if p.opts and p.opts[0].startswith("-") else []) + ["x"]
        for p in cmd.params:
            annotation = str(p.type_descriptor.annotation)
            if "float" in annotation and p.opts and not p.hidden:
                n = 2 if "tuple" in annotation else 1
                cases.append((prefix, required, p.opts[0], n))

    walk(typer.main.get_command(app), [])
    return cases


FLOAT_OPTIONS = _float_options()


def test_every_float_option_of_every_command_refuses_nan_and_inf(tmp_path):
    assert len(FLOAT_OPTIONS) > 50  # solve, train, crf, eval, cam, prepare-*, show, superpixels, ...
    for prefix, required, flag, n in FLOAT_OPTIONS:
        for bad in ("nan", "inf"):
            refused(prefix + required + [flag] + [bad] * n, flag)


@pytest.mark.parametrize("args, needle", [
    (["--bandwidth", "0"], "bandwidth 0"),
    (["--cg-max-iter", "-1"], "cg_max_iter -1"),
    (["--lambda", "-1"], "lam (λ) -1"),
    (["--eta", "-0.5"], "eta -0.5"),
    (["--steps", "-1"], "steps -1"),
    (["--lr", "0"], "lr 0"),
    (["--neighbourhood", "dn", "--relaxation", "bilinear", "--dn-sigma-xy", "0"], "dn_sigma_xy 0"),
])
def test_solve_option_ranges(env, args, needle):
    out = env["base"] / "pl.h5"
    refused(["solve", env["seeds"], "-p", env["pred"], "-o", out] + args, needle, inputs=inputs_of(env), outputs=[out])


@pytest.mark.parametrize("args, needle", [
    (["--head-channels", "0"], "--head-channels 0"),
    (["--lr", "0"], "--lr 0"),
    (["--momentum", "1"], "--momentum 1"),
    (["--epochs", "0"], "--epochs 0"),
    (["--seed", "-1"], "--seed -1"),
    (["--epochs", "2", "--warmup-epochs", "3"], "--warmup-epochs 3"),
    (["--scale-min", "2", "--scale-max", "1"], "--scale-max 1"),
    (["--width-mult", "0"], "--width-mult 0"),
    (["--loss", "gridcrf", "--bandwidth", "0"], "--bandwidth 0"),
    (["--loss", "collision", "--solver-steps", "-1"], "steps -1"),
    (["--loss", "densecrf", "--crf-option", "sigma_rgb=0"], "--crf-option sigma_rgb 0"),
    (["--loss", "densecrf", "--lambda", "-1"], "--lambda -1"),
    (["--crop-size", "100000"], "needs at least"),  # 12 × 100000² crops: terabytes
    # found at the first batch, after the run directory was created: it is removed again
    (["--scale-min", "100000", "--scale-max", "100000", "--backbone", "mobilenet_v2", "--width-mult", "0.25",
      "--head-channels", "8"],
     "--scale-max 100000"),
])
def test_train_option_ranges_leave_no_run_directory(env, args, needle):
    out = env["base"] / "bad_run"
    refused(["train", "--out", out, "--seeds", env["seeds"], "--device", "cpu"] + args, needle,
            inputs=inputs_of(env), outputs=[out])


@pytest.mark.parametrize("args, needle", [
    (["--dropout", "1"], "--dropout 1"),
    (["--isl-samples", "0"], "--isl-samples 0"),
    (["--isl-weight", "1.5"], "--isl-weight 1.5"),
    (["--fsl-sigma", "0"], "--fsl-sigma 0"),
    (["--resize-long", "8", "4"], "--resize-long MAX 4"),
    (["--resize-long", "448", "10000000"], "needs at least"),
])
def test_cam_train_option_ranges(env, args, needle):
    out = env["base"] / "bad_cam_run"
    refused(["cam", "train", "--out", out, "--tags", env["base"] / "no_tags.h5", "--device", "cpu"] + args, needle,
            outputs=[out])


@pytest.mark.parametrize("args, needle", [
    (["--gauss-sxy", "0"], "gauss_sxy 0"),
    (["--crf-eps", "1"], "eps 1"),
    (["--crf-iterations", "-1"], "iterations -1"),
    (["--bi-compat", "-2"], "bi_compat -2"),
])
def test_crf_option_ranges(env, args, needle):
    out = env["base"] / "crf.h5"
    refused(["crf", env["pred"], "-o", out] + args, needle, inputs=inputs_of(env), outputs=[out])


def test_other_option_ranges(env):
    base, data, pred = env["base"], env["data"], env["pred"]
    out = base / "x.h5"
    refused(["eval", pred, "--cam-threshold", "2", "-o", base / "m.json"], "--cam-threshold 2",
            inputs=inputs_of(env), outputs=[base / "m.json"])
    refused(["cam", "seeds", env["cams"], "-o", out, "--rule", "threshold", "--min-score", "2"], "--min-score 2",
            outputs=[out])
    refused(["cam", "seeds", env["cams"], "-o", out, "--alpha-low", "0"], "--alpha-low 0", outputs=[out])
    refused(["prepare-blocks", data, out, "--keep", "1.5"], "--keep 1.5", inputs=[data], outputs=[out])
    refused(["prepare-blocks", data, out, "--block-size", "0"], "--block-size 0", inputs=[data], outputs=[out])
    refused(["prepare-blocks", data, out, "--seed", "-3"], "--seed -3", inputs=[data], outputs=[out])
    refused(["prepare-points", data, out, "--radius", "-1"], "--radius -1", inputs=[data], outputs=[out])
    refused(["prepare-scribbles", data, out, "--width", "0"], "--width 0", inputs=[data], outputs=[out])
    refused(["prepare-scribbles", data, out, "--drop-rate", "2"], "--drop-rate 2", inputs=[data], outputs=[out])
    refused(["demo-data", base / "demo2", "--seed", "-1"], "--seed -1", outputs=[base / "demo2"])
    refused(["show", pred, "-o", base / "png", "--alpha", "2"], "--alpha", outputs=[base / "png"])
    refused(["superpixels", data, out, "--n-segments", "0"], "--n-segments", outputs=[out])


def test_allocations_that_cannot_fit_are_refused_with_the_figure(env, run_dir):
    base, data = env["base"], env["data"]
    out = base / "big.h5"
    line = refused(["prepare-points", data, out, "--radius", "100000"], "--radius 100000", "needs at least",
                   inputs=[data], outputs=[out])
    assert "TiB" in line or "GiB" in line
    refused(["prepare-scribbles", data, out, "--width", "1000000"], "--width 1000000", "needs at least",
            inputs=[data], outputs=[out])
    refused(["predict", run_dir, "-o", out, "--scales", "1,10000", "--device", "cpu"], "--scales", "scale 10000",
            "needs at least", inputs=[data, run_dir], outputs=[out])
    refused(["show", env["pred"], "-o", base / "big_png", "--scale", "1000000"], "--scale 1000000", "needs at least",
            inputs=inputs_of(env))
    refused(["demo-data", base / "huge", "--size", "1000000", "1000000"], "--size", "needs at least")


def test_huge_erosion_is_skipped_not_allocated(env):
    # a disk wider than every object fits nowhere: the erosion is skipped (as documented), no allocation
    out = env["base"] / "eroded.h5"
    ok(["prepare-scribbles", env["data"], out, "--erode", "100000"])
    plain = env["base"] / "plain.h5"
    ok(["prepare-scribbles", env["data"], plain])
    a, b = Artifact(out), Artifact(plain)
    assert all(np.array_equal(a.read(i, "label"), b.read(i, "label")) for i in a.ids)


# -- 7. no NaN, no "no seed at all" --------------------------------------------------------------------

def test_prepare_without_any_labelled_pixel_is_refused(env, tmp_path):
    out = env["base"] / "keep0.h5"
    refused(["prepare-blocks", env["data"], out, "--keep", "0"], "--keep 0", "no pixel", inputs=[env["data"]],
            outputs=[out])
    refused(["prepare-scribbles", env["data"], out, "--drop-rate", "1", "--drop-background"], "--drop-rate 1", "no pixel",
            inputs=[env["data"]], outputs=[out])
    # found only after the work (every seed PNG empty): still refused, nothing written
    pngs = tmp_path / "pngs"
    pngs.mkdir()
    from PIL import Image

    for image_id in env["train"].ids:
        Image.fromarray(np.full(env["train"].load_mask(image_id).shape, 255, np.uint8)).save(pngs / f"{image_id}.png")
    result = runner.invoke(app, ["prepare-scribbles", str(env["data"]), str(out), "--png", str(pngs), "--skip-bad"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert not out.exists() and not partial_tmp(out).exists() and not parts_path(out).exists()


def test_cam_seeds_without_any_seed_pixel_are_refused(env):
    out = env["base"] / "cam_seeds.h5"
    result = runner.invoke(app, ["cam", "seeds", str(env["cams"]), "-o", str(out), "--rule", "threshold",
                                 "--min-score", "0.9"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "no seed pixel in any of the 8 images" in result.output
    assert not out.exists() and not partial_tmp(out).exists() and not parts_path(out).exists()
    ok(["cam", "seeds", env["cams"], "-o", out, "--rule", "threshold"])  # CAMs 0.5 beat bg (1 - 0.5)^6


def test_solve_with_empty_seeds(env):
    out = env["base"] / "pl_empty.h5"
    refused(["solve", env["empty"], "-p", env["pred"], "-o", out], "empty_seeds.h5", "no", "--allow-empty",
            inputs=inputs_of(env) + (env["empty"],), outputs=[out])
    refused(["solve", env["empty"], "--init", "uniform", "-o", out], "has no labelled pixel", "uniform",
            inputs=inputs_of(env) + (env["empty"],), outputs=[out])
    # explicitly allowed with predictions: the solver only regularizes them
    ok(["solve", env["empty"], "-p", env["pred"], "-o", out, "--allow-empty", "--steps", "2", "--cg-max-iter", "2"])
    assert Artifact(out, "pseudolabels").ids == env["train"].ids


def test_train_with_empty_seeds_is_refused_without_run_directory(env):
    out = env["base"] / "run_empty"
    refused(["train", "--out", out, "--seeds", env["empty"], "--epochs", "1", "--device", "cpu"],
            "empty_seeds.h5", "nothing to train on", inputs=(env["empty"], env["data"]), outputs=[out])


def test_nan_scores_are_refused_by_eval_show_solve_crf(env):
    base, nan = env["base"], env["nanpred"]
    bad_id = env["train"].ids[-1]
    inputs = inputs_of(env) + (nan,)
    refused(["eval", nan, "-o", base / "nan.json"], "nanpred.h5", bad_id, "NaN", inputs=inputs, outputs=[base / "nan.json"])
    refused(["show", nan, "-o", base / "nan_png", "--ids", bad_id], "nanpred.h5", bad_id, "NaN", inputs=inputs)
    refused(["show", env["nancams"], "-o", base / "nan_png", "--ids", env["train"].ids[0]], "nancams.h5", "NaN",
            inputs=inputs)
    refused(["solve", env["seeds"], "-p", nan, "-o", base / "nan_pl.h5"], "nanpred.h5", "NaN", inputs=inputs,
            outputs=[base / "nan_pl.h5"])
    refused(["crf", nan, "-o", base / "nan_crf.h5"], "nanpred.h5", "NaN", inputs=inputs, outputs=[base / "nan_crf.h5"])


def test_nan_results_are_refused_before_writing(env, monkeypatch):
    import wsss.stages.solve as solve_stage
    from wsss.errors import UserError

    def broken(image, seeds, probs, k, config, device="cpu"):
        return np.full((k,) + seeds.shape, np.nan, np.float32)

    monkeypatch.setattr(solve_stage, "solve_image", broken)
    out = env["base"] / "nan_result.h5"
    with pytest.raises(UserError, match="would hold .* NaN/inf values"):
        solve_stage.run(env["seeds"], out, predictions=env["pred"])
    assert not out.exists() and not partial_tmp(out).exists() and not parts_path(out).exists()


def test_a_mask_without_its_image_is_an_error(env, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(env["data"], data)
    victim = sorted((data / "train" / "images").iterdir())[2]
    victim.unlink()
    out = tmp_path / "s.h5"
    refused(["prepare-blocks", data, out], "masks have no image", victim.stem, inputs=[data], outputs=[out])


def test_duplicate_class_names_are_refused(env, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(env["data"], data)
    classes = next(data.rglob("classes.txt"))
    names = classes.read_text().split()
    classes.write_text("\n".join([names[0], names[1], names[1]] + names[3:]) + "\n")
    out = tmp_path / "s.h5"
    refused(["prepare-blocks", data, out], "classes.txt", f"'{names[1]}' is used twice", inputs=[data], outputs=[out])
    dup = tmp_path / "dup.h5"
    with ArtifactWriter(dup, "seeds", classes=["a", "b", "a"], config={}) as w:
        w.write("i", {"label": np.zeros((4, 4), np.uint8)})
        w.commit()
    refused(["info", dup], "dup.h5", "'a' appears twice", inputs=[dup])


# -- 8. corrupt HDF5 and filesystem errors -------------------------------------------------------------

def test_dataset_path_that_is_a_file(env, tmp_path):
    out = tmp_path / "s.h5"
    refused(["prepare-blocks", env["seeds"], out], "seeds.h5", "is a file", inputs=[env["seeds"]], outputs=[out])
    refused(["solve", env["seeds"], "-p", env["pred"], "--data", env["pred"], "-o", out], "pred.h5", "is a file",
            inputs=inputs_of(env), outputs=[out])


def _corrupt_chunk(path: Path) -> None:
    with h5py.File(path, "r") as f:
        name = sorted(f.keys())[-1]
        info = f[name]["scores"].id.get_chunk_info(0)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(b"\xff" * info.size)


def test_damaged_h5_files_are_one_line(env, tmp_path):
    variants = {}
    flipped = tmp_path / "flipped.h5"
    raw = bytearray(env["pred"].read_bytes())
    raw[0:8] = bytes(b ^ 0xFF for b in raw[0:8])  # the HDF5 signature
    flipped.write_bytes(bytes(raw))
    variants["flipped"] = flipped
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(env["pred"].read_bytes()[: len(raw) // 2])
    variants["truncated"] = truncated
    chunk = tmp_path / "chunk.h5"
    shutil.copy(env["pred"], chunk)
    _corrupt_chunk(chunk)
    variants["chunk"] = chunk
    for name, path in variants.items():
        out = tmp_path / f"{name}.json"
        refused(["eval", path, "-o", out], path.name, inputs=[path], outputs=[out])
        out = tmp_path / f"{name}_crf.h5"
        refused(["crf", path, "-o", out], path.name, inputs=[path], outputs=[out])
    refused(["show", chunk, "-o", tmp_path / "png", "--ids", env["train"].ids[-1]], "chunk.h5", "unreadable",
            inputs=[chunk])


def test_garbage_classes_attribute(env, tmp_path):
    bad = tmp_path / "garbage.h5"
    shutil.copy(env["seeds"], bad)
    with h5py.File(bad, "a") as f:
        f.attrs["classes"] = "{not json"
    refused(["info", bad], "garbage.h5", "'classes' attribute", inputs=[bad])
    out = tmp_path / "pl.h5"
    refused(["solve", bad, "-p", env["pred"], "-o", out], "garbage.h5", "'classes' attribute", inputs=[bad], outputs=[out])


def test_output_folders_that_cannot_be_written(env, tmp_path):
    seeds, pred = env["seeds"], env["pred"]
    inputs = inputs_of(env)
    missing = tmp_path / "no" / "such" / "pl.h5"
    refused(["solve", seeds, "-p", pred, "-o", missing], "does not exist", inputs=inputs, outputs=[missing])
    under_file = tmp_path / "afile"
    under_file.write_text("x")
    refused(["solve", seeds, "-p", pred, "-o", under_file / "pl.h5"], "afile", "is a file", inputs=inputs)
    refused(["eval", pred, "-o", under_file / "m.json"], "afile", inputs=inputs)
    refused(["show", pred, "-o", under_file / "png"], "afile", inputs=inputs)
    refused(["train", "--out", under_file / "run", "--seeds", seeds, "--device", "cpu"], "afile", inputs=inputs)
    refused(["train", "--out", under_file, "--seeds", seeds, "--device", "cpu"], "afile", "is a file", inputs=inputs)
    if os.geteuid() != 0:  # root writes anywhere: permission bits cannot be tested as root
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            refused(["solve", seeds, "-p", pred, "-o", locked / "pl.h5"], "locked", "cannot write", inputs=inputs)
        finally:
            locked.chmod(0o700)


def test_output_path_that_is_a_folder_is_found_before_the_work(env, tmp_path, monkeypatch):
    import wsss.stages.solve as solve_stage

    calls = []
    monkeypatch.setattr(solve_stage, "solve_image", lambda *a, **k: calls.append(1))
    folder = tmp_path / "outdir"
    folder.mkdir()
    refused(["solve", env["seeds"], "-p", env["pred"], "-o", folder], "outdir", "is a folder", inputs=inputs_of(env))
    refused(["eval", env["pred"], "-o", folder], "outdir", "is a folder", inputs=inputs_of(env))
    assert calls == [] and not any(folder.iterdir())


def test_failed_train_start_leaves_no_run_directory_and_the_rerun_works(env):
    out = env["base"] / "run_retry"
    refused(["train", "--out", out, "--seeds", env["seeds"], "--epochs", "1", "--batch-size", "8", "--crop-size", "32",
             "--backbone", "mobilenet_v2", "--width-mult", "0.25", "--head-channels", "8", "--device", "cpu",
             "--weights", env["base"] / "missing.pt"],
            "missing.pt", inputs=inputs_of(env), outputs=[out])
    assert not out.exists()
    ok(["train", "--out", out, "--seeds", env["seeds"], "--epochs", "1", "--batch-size", "8", "--crop-size", "32",
        "--backbone", "mobilenet_v2", "--width-mult", "0.25", "--head-channels", "8", "--device", "cpu",
        "--log-every", "0"])
    assert (out / "last.pt").exists()


# -- the real command line: one line on stderr, no traceback -------------------------------------------

@pytest.mark.parametrize("case", ["bandwidth", "chunk", "usage"])
def test_subprocess_stderr_is_one_line(env, tmp_path, case):
    if case == "bandwidth":
        args = ["solve", env["seeds"], "-p", env["pred"], "-o", tmp_path / "pl.h5", "--bandwidth", "0"]
    elif case == "chunk":
        path = tmp_path / "chunk.h5"
        shutil.copy(env["pred"], path)
        _corrupt_chunk(path)
        args = ["eval", path, "-o", tmp_path / "m.json"]
    else:
        args = ["demo-data", tmp_path / "d", "--train", "-1"]
    env_vars = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "wsss_cli.main", *map(str, args)], capture_output=True, text=True,
                          env=env_vars, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
