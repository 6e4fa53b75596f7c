"""DistributedDataParallel on CPU: ``torchrun --nproc_per_node 2`` (gloo), one run directory,
identical weights on both ranks; 2 ranks × batch 1 train as 1 process × batch 2."""

from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from wsss.training import load_checkpoint
from wsss.training.toy import make_toy_data

SCRIPT = textwrap.dedent(
    """
    import os, sys, warnings
    import torch
    warnings.simplefilter("ignore")
    from wsss.training import TrainConfig, train

    out, seeds, dump = sys.argv[1:4]
    rank = int(os.environ["RANK"])

    def save(epoch, model):
        torch.save(model.state_dict(), os.path.join(dump, f"rank{rank}.pt"))

    train(TrainConfig(out=out, seeds=seeds, loss="pce", epochs=1, backbone="mobilenet_v2", width_mult=0.25,
                      head_channels=8, batch_size=1, crop_size=32, lr=0.01, progress=False, log_every=1,
                      device="cpu"), on_epoch_end=save)
    """
)


def _torchrun() -> str:
    exe = Path(sys.executable).with_name("torchrun")
    if exe.exists():
        return str(exe)
    found = shutil.which("torchrun")
    if not found:
        pytest.skip("torchrun not found")
    return found


def test_torchrun_two_cpu_ranks(tmp_path):
    root, seeds = make_toy_data(tmp_path / "toy", n_train=4, n_val=1, size=40)
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    dump = tmp_path / "dump"
    dump.mkdir()
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [_torchrun(), "--standalone", "--nproc_per_node", "2", str(script), str(out), str(seeds), str(dump)],
        env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    w0 = torch.load(dump / "rank0.pt")
    w1 = torch.load(dump / "rank1.pt")
    for key in w0:
        if "running" in key or "num_batches" in key:
            continue  # batch-norm statistics are per rank (no SyncBatchNorm on CPU)
        assert torch.equal(w0[key], w1[key]), key
    state = load_checkpoint(out)
    for key, value in state["model"].items():
        assert torch.equal(value, w0[key]), key
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in lines if r["kind"] == "step"]
    assert [r["step"] for r in steps] == [1, 2]  # 4 images / (2 ranks × batch 1), logged once
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "config.json", "last.pt", "metrics.jsonl"]


EQUIVALENCE_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, warnings
    import torch
    warnings.simplefilter("ignore")
    from wsss.training import TrainConfig, run_task
    from wsss.training.segmentation import SegmentationTask

    out, seeds, dump, batch_size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    rank = int(os.environ.get("RANK", "0"))


    def without_batch_statistics(model):
        # BatchNorm -> GroupNorm(1 group), Dropout -> Identity: the model's output for an image then
        # depends on that image only, so the batch split cannot change the gradient
        for name, module in list(model.named_modules()):
            for child_name, child in list(module.named_children()):
                if isinstance(child, torch.nn.BatchNorm2d):
                    setattr(module, child_name, torch.nn.GroupNorm(1, child.num_features))
                elif isinstance(child, torch.nn.Dropout):
                    setattr(module, child_name, torch.nn.Identity())
        return model


    class NoBatchNormTask(SegmentationTask):
        def build_model(self):
            return without_batch_statistics(super().build_model())

        def empty_model(self):
            return without_batch_statistics(super().empty_model())


    steps = []
    cfg = TrainConfig(out=out, seeds=seeds, loss="gridcrf", epochs=2, backbone="mobilenet_v2", width_mult=0.25,
                      head_channels=8, batch_size=batch_size, crop_size=32, lr=0.01, progress=False, log_every=1,
                      device="cpu")
    run_task(NoBatchNormTask(cfg), cfg, on_step=steps.append,
             on_epoch_end=lambda epoch, model: torch.save(model.state_dict(), os.path.join(dump, f"rank{rank}-epoch{epoch}.pt")))
    if rank == 0:
        with open(os.path.join(dump, "steps.json"), "w") as fh:
            json.dump([{"loss": r["loss"], "terms": r["terms"], "lr": r["lr"]} for r in steps], fh)
    """
)


def test_two_ranks_of_batch_one_equal_one_process_of_batch_two(tmp_path, monkeypatch):
    """DDP's split of a batch changes nothing: on a model without batch statistics (batch norm → group
    norm, no dropout), 2 ranks × batch 1 train the same weights and log the same losses as 1 process ×
    batch 2 — the loss of each step is the global batch's sums over the global ``Z``, whatever the split."""
    # 24 px images, 32 px crops: every crop is padded, by an amount that differs between images, so the
    # ranks' valid-pixel counts differ and only the global Z makes the two runs agree
    _, seeds = make_toy_data(tmp_path / "toy", n_train=4, n_val=1, size=24)
    script = tmp_path / "equivalence.py"
    script.write_text(EQUIVALENCE_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    dumps = {"one": tmp_path / "one", "two": tmp_path / "two"}
    for d in dumps.values():
        d.mkdir()
    # 1 process × batch 2 in this process, 2 ranks × batch 1 under torchrun
    monkeypatch.setattr(sys, "argv", [str(script), str(tmp_path / "run1"), str(seeds), str(dumps["one"]), "2"])
    runpy.run_path(str(script), run_name="__main__")
    proc = subprocess.run([_torchrun(), "--standalone", "--nproc_per_node", "2", str(script), str(tmp_path / "run2"),
                           str(seeds), str(dumps["two"]), "1"], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for epoch in (1, 2):
        one = torch.load(dumps["one"] / f"rank0-epoch{epoch}.pt")
        two = torch.load(dumps["two"] / f"rank0-epoch{epoch}.pt")
        assert set(one) == set(two)
        for key in one:
            torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-6, msg=key)
    first, last = (torch.load(dumps["one"] / f"rank0-epoch{e}.pt") for e in (1, 2))
    assert sum(not torch.equal(first[k], last[k]) for k in first) > len(first) // 2  # the weights do move
    steps_one = json.loads((dumps["one"] / "steps.json").read_text())
    steps_two = json.loads((dumps["two"] / "steps.json").read_text())
    assert len(steps_one) == len(steps_two) == 4  # 2 epochs × 4 images / 2 images per step
    for a, b in zip(steps_one, steps_two):
        assert b["lr"] == a["lr"] and set(a["terms"]) == set(b["terms"]) == {"pce", "crf"}
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)


URSS_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, warnings
    import torch
    warnings.simplefilter("ignore")
    from wsss.models import empty_model
    from wsss.training import TrainConfig, run_task
    from wsss.training.urss import URSSTask

    out, seeds, superpixels, dump, batch_size = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    rank = int(os.environ.get("RANK", "0"))


    def without_batch_statistics(model):
        # BatchNorm -> GroupNorm(1 group), dropout -> Identity: each image's output depends on that image only
        for name, module in list(model.named_modules()):
            for child_name, child in list(module.named_children()):
                if isinstance(child, torch.nn.BatchNorm2d):
                    setattr(module, child_name, torch.nn.GroupNorm(1, child.num_features))
                elif isinstance(child, (torch.nn.Dropout, torch.nn.Dropout2d)):
                    setattr(module, child_name, torch.nn.Identity())
        return model


    class NoBatchNormTask(URSSTask):
        def build_model(self):
            if self.init_state is None:
                return without_batch_statistics(super().build_model())
            model = without_batch_statistics(empty_model(self.model_config))
            model.load_state_dict(self.init_state)
            return model

        def empty_model(self):
            return without_batch_statistics(super().empty_model())


    common = dict(seeds=seeds, superpixels=superpixels, loss="urss", backbone="mobilenet_v2", width_mult=0.25,
                  head_channels=8, batch_size=batch_size, crop_size=32, lr=0.01, progress=False, log_every=1,
                  device="cpu", epochs=1)
    for phase in (1, 2):
        steps = []
        extra = {} if phase == 1 else {"init_from": out + "-phase1", "loss_options": {"phase": 2}}
        cfg = TrainConfig(out=f"{out}-phase{phase}", **common, **extra)
        run_task(NoBatchNormTask(cfg), cfg, on_step=steps.append,
                 on_epoch_end=lambda epoch, model: torch.save(model.state_dict(), os.path.join(dump, f"rank{rank}-phase{phase}.pt")))
        if rank == 0:
            with open(os.path.join(dump, f"steps{phase}.json"), "w") as fh:
                json.dump([{"loss": r["loss"], "terms": r["terms"]} for r in steps], fh)
    """
)


def test_urss_phases_under_torchrun_equal_one_process(tmp_path, monkeypatch):
    """--loss urss phase 1 and phase 2 (second forward, eigenspace term) under torchrun: both ranks hold the
    same weights, and 2 ranks × batch 1 train what 1 process × batch 2 trains (model without batch
    statistics), the entropy and eigenspace means taken over the global batch."""
    from wsss.stages import superpixels

    root, seeds = make_toy_data(tmp_path / "toy", n_train=4, n_val=1, size=24)
    sp = superpixels.run(root, tmp_path / "sp.h5", split="train", n_segments=12)
    script = tmp_path / "urss_ddp.py"
    script.write_text(URSS_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    dumps = {"one": tmp_path / "one", "two": tmp_path / "two"}
    for d in dumps.values():
        d.mkdir()
    monkeypatch.setattr(sys, "argv", [str(script), str(tmp_path / "run1"), str(seeds), str(sp), str(dumps["one"]), "2"])
    runpy.run_path(str(script), run_name="__main__")
    proc = subprocess.run([_torchrun(), "--standalone", "--nproc_per_node", "2", str(script), str(tmp_path / "run2"),
                           str(seeds), str(sp), str(dumps["two"]), "1"], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for phase in (1, 2):
        one = torch.load(dumps["one"] / f"rank0-phase{phase}.pt")
        two, two_b = (torch.load(dumps["two"] / f"rank{r}-phase{phase}.pt") for r in (0, 1))
        assert set(one) == set(two) == set(two_b)
        for key in one:
            assert torch.equal(two[key], two_b[key]), key
            torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-6, msg=key)
        assert json.loads((tmp_path / f"run2-phase{phase}" / "config.json").read_text())["world_size"] == 2
        steps_one = json.loads((dumps["one"] / f"steps{phase}.json").read_text())
        steps_two = json.loads((dumps["two"] / f"steps{phase}.json").read_text())
        terms = {"pce", "entropy"} | ({"ss"} if phase == 2 else set())
        assert len(steps_one) == len(steps_two) == 2
        for a, b in zip(steps_one, steps_two):
            assert set(a["terms"]) == set(b["terms"]) == terms
            assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
    first, second = (torch.load(dumps["two"] / f"rank0-phase{p}.pt") for p in (1, 2))
    assert sum(not torch.equal(first[k], second[k]) for k in first) > len(first) // 2  # phase 2 trains on
