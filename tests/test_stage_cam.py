"""``wsss cam train | export | seeds`` and ``wsss eval`` on cams (cam.md): the CAM task on the shared
training loop (terms, groups, resume, DDP), export, seed rules, threshold sweep, --weights, bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from wsss.artifacts import Artifact, ArtifactWriter
from wsss.cam.losses import feature_similarity_loss, fsl_gate, fsl_image, gap_loss, isl_loss
from wsss.cam.training import CamTask, CamTrainConfig, _step_seed, grid_valid, train_cams
from wsss.data.demo import generate_demo
from wsss.parallel import DistributedContext
from wsss.stages.prepare import run_tags
from wsss.training import load_checkpoint
from wsss_cli.main import app

TINY = dict(backbone="mobilenet_v2", width_mult=0.25, output_stride=8, epochs=2, batch_size=3, lr=0.05,
            resize_long_min=40, resize_long_max=56, crop_size=48, progress=False, log_every=1, device="cpu")



@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("camdemo")
    data = generate_demo(root / "demo", train=6, val=2, size=(40, 48), classes=4, seed=0)
    tags = run_tags(data, root / "tags.h5", split="train", config={"command": "test"})
    return Path(data), Path(tags)


@pytest.fixture(scope="module")
def trained(demo, tmp_path_factory):
    _, tags = demo
    out = tmp_path_factory.mktemp("camrun") / "run"
    seen: list[dict] = []
    train_cams(CamTrainConfig(out=str(out), tags=str(tags), **TINY), on_step=seen.append)
    return out, seen


def test_train_writes_a_cam_run(trained):
    run, seen = trained
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == "cam" and config["model"]["num_classes"] == 3 and config["model"]["posterior"] == "binomial"
    assert config["loss"]["isl"]["weight"] == 0.2 and config["loss"]["fsl"]["gate"] == "r"
    assert config["inputs"][0]["kind"] == "tags"
    assert set(seen[0]["terms"]) == {"gap", "isl", "fsl"} and all(np.isfinite(r["loss"]) for r in seen)
    assert [r["step"] for r in seen] == [1, 2, 3, 4]        # 6 images / batch 3, 2 epochs
    state = load_checkpoint(run)
    assert state["task"] == "cam" and state["epoch"] == 2
    assert state["model"]["head.weight"].shape[:2] == (3, 80)  # mobilenet ×0.25: 320·0.25 channels


def test_resume_is_bit_exact(demo, tmp_path):
    _, tags = demo
    base = dict(tags=str(tags), **TINY)
    full = train_cams(CamTrainConfig(out=str(tmp_path / "full"), **base))
    part = tmp_path / "part"
    train_cams(CamTrainConfig(out=str(part), stop_after_epoch=1, **base))
    train_cams(CamTrainConfig(out=str(part), resume=True, **base))
    a, b = load_checkpoint(full), load_checkpoint(part)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    la = [json.loads(x)["loss"] for x in (full / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x)["loss"] for x in (part / "metrics.jsonl").read_text().splitlines()]
    assert la == lb
    # a segmentation run directory is not a CAM run
    from wsss.errors import UserError

    with pytest.raises(UserError, match="other options|not 'cam'"):
        train_cams(CamTrainConfig(out=str(part), resume=True, **{**base, "lr": 0.5}))


def _task_and_batch(demo, **options):
    _, tags = demo
    cfg = CamTrainConfig(out="unused", tags=str(tags), **{**TINY, **options})
    task = CamTask(cfg)
    task.setup(DistributedContext())
    samples = [task.trainset()[(0, i)] for i in range(3)]
    batch = {k: torch.stack([s[k] for s in samples]) for k in samples[0]}
    torch.manual_seed(0)
    model = task.build_model().eval()   # eval: no dropout, so both computations see the same scores
    return task, cfg, model, batch


@pytest.mark.filterwarnings("ignore:mobilenet_v2")
@pytest.mark.parametrize("posterior", ["binomial", "multinomial"])
def test_batch_terms_are_the_spec_losses_times_images(demo, posterior):
    """gap = (1 − λ) L_ce, isl = λ L_is^N (draws from the (seed, rank, step) generator), fsl = β L_fs
    on the padded-cell mask; each a per-image mean × B (the loop divides by the images)."""
    task, cfg, model, batch = _task_and_batch(demo, posterior=posterior, fsl_weight=0.7, isl_scale=0.5)
    terms = task.batch_terms(model, batch, torch.device("cpu"), epoch=0, step=5, use_amp=False)
    with torch.no_grad():
        s = model(batch["image"])
    y = batch["targets"]
    lam = 0.2 if posterior == "binomial" else 0.6
    g = torch.Generator().manual_seed(_step_seed(cfg.seed, 0, 5))
    gate = fsl_gate(s, y, "r" if posterior == "binomial" else "a", posterior)
    assert gate.shape[1] == 4                                       # bg + 3 classes either way
    expected = {
        "gap": (1 - lam) * gap_loss(s, y, posterior) * 3,
        "isl": 0.5 * lam * isl_loss(s, y, 10, posterior, g) * 3,
        "fsl": 0.7 * feature_similarity_loss(gate, fsl_image(batch["image"], s.shape[-2:]),
                                             valid=grid_valid(batch["valid"], s.shape[-2:])) * 3,
    }
    for name, value in expected.items():
        torch.testing.assert_close(terms[name].detach(), value, rtol=1e-5, atol=1e-6)
    assert s.shape[1] == (3 if posterior == "binomial" else 4)
    # another step draws other cells; the same step the same ones
    again = task.batch_terms(model, batch, torch.device("cpu"), epoch=0, step=5, use_amp=False)
    other = task.batch_terms(model, batch, torch.device("cpu"), epoch=0, step=6, use_amp=False)
    assert torch.equal(again["isl"], terms["isl"]) and not torch.equal(other["isl"], terms["isl"])


@pytest.mark.filterwarnings("ignore:mobilenet_v2")
def test_gap_baseline_and_param_groups(demo):
    task, cfg, model, batch = _task_and_batch(demo, isl=False, fsl=False)
    terms = task.batch_terms(model, batch, torch.device("cpu"), 0, 0, False)
    assert set(terms) == {"gap"}
    with torch.no_grad():
        torch.testing.assert_close(terms["gap"].detach(), gap_loss(model(batch["image"]), batch["targets"]) * 3)
    groups = task.param_groups(model)
    # pretrained weights ×1 (wd), pretrained biases / norms ×2 (no wd), new weights ×10 (wd); the head has no bias
    assert [(g["lr"] / cfg.lr, g["weight_decay"]) for g in groups] == [(1.0, 5e-4), (2.0, 0.0), (10.0, 5e-4)]
    assert groups[2]["params"] == [model.head.weight]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    sample = task.trainset()[(0, 0)]
    assert sample["image"].shape == (3, 48, 48) and sample["valid"].dtype == torch.bool
    assert (sample["image"][:, ~sample["valid"]] == 0).all()
    assert torch.equal(sample["image"], task.trainset()[(0, 0)]["image"])   # (seed, epoch, index) keyed


def test_export_seeds_eval_and_train_on_seeds(trained, demo, tmp_path):
    from wsss.cam.seeds import affinity_seeds, boxes_to_seeds, threshold_seeds
    from wsss.cam.threshold_sweep import sweep_thresholds
    from wsss.data import open_recorded_dataset
    from wsss.stages import cam as stage
    from wsss.stages import evaluate

    run, _ = trained
    data, tags_path = demo
    one = stage.run_export(run, tmp_path / "cams.h5", scales=(1.0, 1.5), workers=1)
    two = stage.run_export(run, tmp_path / "cams2.h5", scales=(1.0, 1.5), workers=2)
    art, art2, tags = Artifact(one, "cams"), Artifact(two, "cams"), Artifact(tags_path, "tags")
    ds = open_recorded_dataset(art.dataset)
    assert art.ids == tags.ids and art.config["posterior"] == "binomial" and art.config["export_map"] == "cam"
    for i in art.ids:
        cams, classes = art.read(i, "cams"), art.read(i, "classes")
        assert cams.dtype == np.float16 and classes.dtype == np.int16
        assert cams.shape == (len(classes), *ds.load_image(i).shape[:2])
        assert classes.tolist() == sorted(set(tags.read(i, "tags").tolist()))
        assert 0 <= cams.min() and cams.max() <= 1
        assert np.array_equal(cams, art2.read(i, "cams"))          # workers do not change the result
    # seeds: each rule is the per-image function of wsss.cam.seeds
    i0 = art.ids[0]
    cams0, cls0 = art.read(i0, "cams").astype(np.float32), art.read(i0, "classes")
    for rule, ref in [
        ("threshold", threshold_seeds(cams0, cls0)),
        ("boxes", boxes_to_seeds(cams0, cls0, tags.read(i0, "boxes"))),
        ("affinity", affinity_seeds(cams0, cls0, ds.load_image(i0))),
    ]:
        path = stage.run_seeds(one, tmp_path / f"seeds-{rule}.h5", rule=rule)
        seeds = Artifact(path, "seeds")
        assert seeds.classes == ds.classes and np.array_equal(seeds.read(i0, "label"), ref), rule
    # eval: the sweep equals the direct computation, and J at 0.25 is the label of cam_label
    report = evaluate.run(one, out=tmp_path / "m.json")
    items = [(art.read(i, "cams").astype(np.float32), art.read(i, "classes"), ds.load_mask(i)) for i in art.ids]
    ref = sweep_thresholds(items, ds.num_classes)
    sweep = report["cam"]["sweep"]
    assert np.allclose(sweep["j"], ref.j, equal_nan=True) and sweep["best_j"] == pytest.approx(ref.best_j)
    assert sweep["best_threshold"] == ref.best_threshold
    assert report["miou"] == pytest.approx(float(ref.j[25]))
    assert report["f"] is not None
    # the CAM seeds are ordinary seeds: wsss train takes them
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--out", str(tmp_path / "seg"), "--seeds", str(tmp_path / "seeds-affinity.h5"),
                              "--epochs", "1", "--batch-size", "3", "--crop-size", "32", "--backbone", "mobilenet_v2",
                              "--width-mult", "0.25", "--head-channels", "8", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["eval", str(one), "--out", str(tmp_path / "m2.json")])
    assert res.exit_code == 0 and "best t (sweep)" in res.output, res.output


def _torchvision_mobilenet(path: Path, width: float = 0.25) -> dict:
    import torchvision

    torch.manual_seed(123)
    state = torchvision.models.mobilenet_v2(weights=None, width_mult=width).state_dict()
    torch.save(state, path)
    return state


def test_weights_from_a_local_state_dict(demo, tmp_path):
    """--weights PATH for cam train and train: the backbone starts from the file (lr tiny: the
    convolution kernels are still the file's after one epoch)."""
    data, tags = demo
    state = _torchvision_mobilenet(tmp_path / "mnv2.pth")
    runner = CliRunner()
    common = ["--epochs", "1", "--batch-size", "3", "--crop-size", "32", "--backbone", "mobilenet_v2", "--width-mult", "0.25",
              "--lr", "1e-12", "--weights", str(tmp_path / "mnv2.pth"), "--device", "cpu"]
    res = runner.invoke(app, ["cam", "train", "--out", str(tmp_path / "cam"), "--tags", str(tags),
                              "--resize-long", "32", "40", "--no-fsl", *common])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["train", "--out", str(tmp_path / "seg"), "--loss", "full", "--data", str(data),
                              "--head-channels", "8", *common])
    assert res.exit_code == 0, res.output
    key = "features.5.conv.1.0.weight"
    cam = load_checkpoint(tmp_path / "cam")["model"]
    seg = load_checkpoint(tmp_path / "seg")["model"]
    cam_key = [k for k in cam if k.endswith("conv.1.0.weight") and k.startswith("backbone.net.body.1.")][0]
    seg_key = [k for k in seg if k.endswith("conv.1.0.weight") and k.startswith("backbone.body.1.")][0]
    torch.testing.assert_close(cam[cam_key], state[key], atol=1e-6, rtol=0)
    torch.testing.assert_close(seg[seg_key], state[key], atol=1e-6, rtol=0)
    bad = runner.invoke(app, ["cam", "train", "--out", str(tmp_path / "x"), "--tags", str(tags), "--backbone", "resnet50",
                              "--weights", str(tmp_path / "mnv2.pth")])
    assert bad.exit_code == 2 and "not a torchvision resnet50 state dict" in bad.output
    assert not (tmp_path / "x" / "last.pt").exists()


def _copy_artifact(src: Path, dst: Path, kind: str, edit=None, classes=None) -> Path:
    art = Artifact(src, kind)
    with ArtifactWriter(dst, kind, classes=classes or art.classes, config=art.config, inputs=art.inputs,
                        dataset=art.dataset) as w:
        for i in art.ids:
            arrays = {n: art.read(i, n) for n in art.names(i)}
            if edit is not None:
                arrays = edit(i, arrays)
            w.write(i, arrays)
        w.commit()
    return dst


def test_bad_input_is_one_line_exit_2_and_nothing_written(trained, demo, tmp_path):
    from wsss.stages import cam as stage

    run, _ = trained
    data, tags = demo
    runner = CliRunner()
    cams = stage.run_export(run, tmp_path / "cams.h5", scales=(1.0,), flip=False)

    def invoke(args, output, match):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, res.output
        assert match in res.output and "Traceback" not in res.output, res.output
        assert len(res.output.strip().splitlines()) <= 3       # one line (wrapped by the console at most)
        assert not Path(output).exists() and not Path(str(output) + ".tmp").exists() and not Path(str(output) + ".parts").exists()
        assert not (Path(output) / "config.json").exists()

    # tags whose classes differ from the dataset's
    wrong = _copy_artifact(tags, tmp_path / "wrong-classes.h5", "tags",
                           classes=["background", "ellipse", "rectangle", "triangle", "blob"])
    invoke(["cam", "train", "--out", str(tmp_path / "r1"), "--tags", str(wrong), "--data", str(data)],
           tmp_path / "r1", "differ from those of the dataset")
    # an image with no tags
    first = Artifact(tags, "tags").ids[0]
    empty = _copy_artifact(tags, tmp_path / "empty.h5", "tags",
                           edit=lambda i, a: {**a, "tags": np.zeros(0, np.int16)} if i == first else a)
    invoke(["cam", "train", "--out", str(tmp_path / "r2"), "--tags", str(empty)], tmp_path / "r2", "has no tag")
    invoke(["cam", "export", str(run), "--out", str(tmp_path / "c2.h5"), "--tags", str(empty)], tmp_path / "c2.h5", "has no tag")

    # CAMs for a class the image does not have
    def add_class(i, a):
        if i != first:
            return a
        missing = [c for c in (1, 2, 3) if c not in a["classes"].tolist()][0]
        return {"cams": np.concatenate([a["cams"], a["cams"][:1]]), "classes": np.append(a["classes"], missing).astype(np.int16)}

    extra = _copy_artifact(cams, tmp_path / "extra.h5", "cams", edit=add_class)
    invoke(["cam", "seeds", str(extra), "--out", str(tmp_path / "s1.h5"), "--tags", str(tags), "--rule", "threshold"],
           tmp_path / "s1.h5", "it has no tag for")
    # a cams artifact from another dataset
    other = generate_demo(tmp_path / "other", train=2, val=1, size=(40, 48), classes=3, seed=5)
    invoke(["cam", "seeds", str(cams), "--out", str(tmp_path / "s2.h5"), "--data", str(other), "--rule", "threshold"],
           tmp_path / "s2.h5", "another dataset")
    invoke(["eval", str(cams), "--data", str(other), "--out", str(tmp_path / "e.json")], tmp_path / "e.json", "differ")
    invoke(["cam", "train", "--out", str(tmp_path / "r3"), "--tags", str(tags), "--posterior", "poisson"],
           tmp_path / "r3", "--posterior")


SCRIPT = textwrap.dedent(
    """
    import os, sys, warnings
    import torch
    warnings.simplefilter("ignore")
    from wsss.cam.training import CamTrainConfig, train_cams

    out, tags, dump = sys.argv[1:4]
    rank = int(os.environ["RANK"])

    def save(epoch, model):
        torch.save(model.state_dict(), os.path.join(dump, f"rank{rank}.pt"))

    train_cams(CamTrainConfig(out=out, tags=tags, backbone="mobilenet_v2", width_mult=0.25, epochs=1, batch_size=1,
                              resize_long_min=32, resize_long_max=40, crop_size=32, progress=False, log_every=1,
                              device="cpu"), on_epoch_end=save)
    """
)


def test_torchrun_two_cpu_ranks(demo, tmp_path):
    exe = Path(sys.executable).with_name("torchrun")
    torchrun = str(exe) if exe.exists() else shutil.which("torchrun")
    if not torchrun:
        pytest.skip("torchrun not found")
    _, tags = demo
    script = tmp_path / "ddp_cam.py"
    script.write_text(SCRIPT)
    dump = tmp_path / "dump"
    dump.mkdir()
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", str(script), str(out), str(tags), str(dump)],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    w0, w1 = torch.load(dump / "rank0.pt"), torch.load(dump / "rank1.pt")
    for key in w0:
        if "running" not in key and "num_batches" not in key:
            assert torch.equal(w0[key], w1[key]), key
    steps = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"step"' in x]
    assert [r["step"] for r in steps if r["kind"] == "step"] == [1, 2, 3]   # 6 images / (2 ranks × 1)
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
