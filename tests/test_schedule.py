"""The poly learning-rate schedule (:class:`wsss.training.schedule.PolyLR`): closed form per parameter
group, state saved and restored (alone and inside a training run's checkpoint)."""

from __future__ import annotations

import io
import json

import pytest
import torch

from wsss.training import TrainConfig, load_checkpoint, train
from wsss.training.schedule import PolyLR
from wsss.training.toy import make_toy_data


def _closed_form(lr: float, t: int, total: int, power: float) -> float:
    return lr * max(0.0, 1.0 - t / total) ** power


def _optimizer(seed: int = 0) -> tuple[torch.optim.SGD, list[torch.nn.Parameter]]:
    gen = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(3, generator=gen)), torch.nn.Parameter(torch.randn(2, generator=gen))]
    opt = torch.optim.SGD([{"params": [params[0]], "lr": 0.01}, {"params": [params[1]], "lr": 0.25}],
                          lr=0.01, momentum=0.9)
    return opt, params


def _train_steps(opt, sched, params, n: int) -> list[list[float]]:
    """``n`` SGD steps on Σ p²; the lr of every group before each step."""
    lrs = []
    for _ in range(n):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.zero_grad()
        sum((p ** 2).sum() for p in params).backward()
        opt.step()
        sched.step()
    return lrs


def test_poly_lr_is_the_closed_form_per_group():
    opt, params = _optimizer()
    total, power = 7, 0.9
    sched = PolyLR(opt, total_steps=total, power=power)
    lrs = _train_steps(opt, sched, params, total + 3)  # past T: clamped at 0
    for t, per_group in enumerate(lrs):
        expected = [_closed_form(0.01, t, total, power), _closed_form(0.25, t, total, power)]
        assert per_group == pytest.approx(expected, rel=1e-12, abs=0.0), t
    assert lrs[0] == [0.01, 0.25] and lrs[total] == [0.0, 0.0]
    assert sched.last_epoch == total + 3


def test_poly_lr_resume_continues_exactly():
    total, power, cut = 10, 0.9, 4
    opt, params = _optimizer()
    sched = PolyLR(opt, total_steps=total, power=power)
    uninterrupted = _train_steps(opt, sched, params, total)
    final = [p.detach().clone() for p in params]

    opt, params = _optimizer()
    sched = PolyLR(opt, total_steps=total, power=power)
    first = _train_steps(opt, sched, params, cut)
    buffer = io.BytesIO()
    torch.save({"params": [p.detach().clone() for p in params], "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer)
    # a fresh process: new parameters, optimizer and schedule (at step 0), then the saved state
    opt, params = _optimizer(seed=1)
    sched = PolyLR(opt, total_steps=total, power=power)
    with torch.no_grad():
        for p, saved in zip(params, state["params"]):
            p.copy_(saved)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    rest = _train_steps(opt, sched, params, total - cut)
    assert first + rest == uninterrupted  # exact, not approximate
    assert all(torch.equal(p, q) for p, q in zip(params, final))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_data(tmp_path_factory.mktemp("toy"), n_train=4, n_val=1, size=40)


def test_training_checkpoints_the_schedule_and_resume_continues_it(toy, tmp_path):
    _, seeds = toy
    base = dict(seeds=str(seeds), epochs=2, backbone="mobilenet_v2", width_mult=0.25, head_channels=8, batch_size=2,
                crop_size=32, lr=0.01, head_lr_mult=10.0, progress=False, log_every=1, device="cpu")
    total = 4  # 2 epochs × (4 images / batch 2)
    full = train(TrainConfig(out=str(tmp_path / "full"), **base))
    part = tmp_path / "part"
    train(TrainConfig(out=str(part), stop_after_epoch=1, **base))
    state = load_checkpoint(part)
    assert state["scheduler"]["last_epoch"] == state["step"] == 2
    assert state["scheduler"]["total_steps"] == total and state["scheduler"]["power"] == 0.9
    backbone, head = (g["lr"] for g in state["optimizer"]["param_groups"])
    assert (backbone, head) == pytest.approx([_closed_form(0.01, 2, total, 0.9), _closed_form(0.1, 2, total, 0.9)],
                                             rel=1e-12)
    train(TrainConfig(out=str(part), resume=True, **base))
    for run in (full, part):
        steps = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        lrs = [r["lr"] for r in steps if r["kind"] == "step"]
        assert lrs == pytest.approx([_closed_form(0.01, t, total, 0.9) for t in range(total)], rel=1e-12)
    a, b = load_checkpoint(full), load_checkpoint(part)
    assert a["scheduler"] == b["scheduler"]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


def test_resume_of_a_checkpoint_without_schedule_state(toy, tmp_path):
    """Checkpoints written before the schedule was saved: the schedule is rebuilt from the step count."""
    _, seeds = toy
    base = dict(seeds=str(seeds), epochs=2, backbone="mobilenet_v2", width_mult=0.25, head_channels=8, batch_size=2,
                crop_size=32, lr=0.01, progress=False, log_every=1, device="cpu")
    full = train(TrainConfig(out=str(tmp_path / "full"), **base))
    part = tmp_path / "part"
    train(TrainConfig(out=str(part), stop_after_epoch=1, **base))
    old = torch.load(part / "last.pt", weights_only=False)
    del old["scheduler"]
    torch.save(old, part / "last.pt")
    train(TrainConfig(out=str(part), resume=True, **base))
    a, b = load_checkpoint(full), load_checkpoint(part)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
