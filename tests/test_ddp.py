"""DistributedDataParallel on CPU: ``torchrun --nproc_per_node 2`` (gloo), one run directory,
identical weights on both ranks."""

from __future__ import annotations

import json
import os
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
