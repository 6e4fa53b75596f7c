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


def _warmup_closed_form(lr: float, t: int, total: int, power: float, warmup: int, start: float) -> float:
    """The SPML code's ``lr_poly``: during the warm-up the smaller of the linear ramp and the poly decay."""
    poly = lr * (1.0 - t / total) ** power if t < total else 0.0
    if t < warmup:
        alpha = t / warmup
        return min(lr * (start * (1 - alpha) + alpha), poly)
    return poly


@pytest.mark.parametrize("total,warmup,start", [(12, 5, 0.1), (6, 6, 0.25), (4, 10, 0.1)])
def test_warmup_is_the_closed_form_per_group(total, warmup, start):
    opt, params = _optimizer()
    sched = PolyLR(opt, total_steps=total, power=0.9, warmup_steps=warmup, warmup_start=start)
    lrs = _train_steps(opt, sched, params, total + 2)
    for t, per_group in enumerate(lrs):
        expected = [_warmup_closed_form(base, t, total, 0.9, warmup, start) for base in (0.01, 0.25)]
        assert per_group == pytest.approx(expected, rel=1e-12, abs=0.0), t
    assert lrs[0] == pytest.approx([0.01 * start, 0.25 * start], rel=1e-12)
    # the ramp at first, the poly decay of the whole run (from step 0) from the end of the warm-up on or where
    # it is lower than the ramp
    ramp = 0.01 * (start + (1 - start) / warmup)
    assert ramp < _closed_form(0.01, 1, total, 0.9) and lrs[1][0] == pytest.approx(ramp, rel=1e-12)
    assert lrs[min(warmup, total) - 1][0] == pytest.approx(_closed_form(0.01, min(warmup, total) - 1, total, 0.9), rel=1e-12)
    # no warm-up: exactly the plain poly schedule
    opt, params = _optimizer()
    plain = _train_steps(opt, PolyLR(opt, total_steps=total, power=0.9, warmup_steps=0), params, total)
    assert plain == [[_closed_form(b, t, total, 0.9) for b in (0.01, 0.25)] for t in range(total)]


def test_warmup_resume_mid_warmup_continues_exactly():
    total, cut = 10, 2
    opt, params = _optimizer()
    uninterrupted = _train_steps(opt, PolyLR(opt, total, 0.9, warmup_steps=5), params, total)
    opt, params = _optimizer()
    sched = PolyLR(opt, total, 0.9, warmup_steps=5)
    first = _train_steps(opt, sched, params, cut)
    saved = sched.state_dict()
    assert saved["warmup_steps"] == 5 and saved["warmup_start"] == 0.1
    opt2, _ = _optimizer()
    again = PolyLR(opt2, total, 0.9)  # built without the warm-up: the saved state brings it back
    opt2.load_state_dict(opt.state_dict())  # after the schedule, as the training loop does
    again.load_state_dict(saved)
    rest = _train_steps(opt2, again, params, total - cut)
    assert first + rest == uninterrupted


def test_training_run_warms_up_and_resumes_across_the_warmup(toy, tmp_path):
    _, seeds = toy
    base = dict(seeds=str(seeds), epochs=3, backbone="mobilenet_v2", width_mult=0.25, head_channels=8, batch_size=2,
                crop_size=32, lr=0.01, progress=False, log_every=1, device="cpu", lr_warmup_steps=3, lr_warmup_start=0.2)
    total = 6  # 3 epochs × 2 steps; the interruption after epoch 1 falls inside the warm-up
    full = train(TrainConfig(out=str(tmp_path / "full"), **base))
    part = tmp_path / "part"
    train(TrainConfig(out=str(part), stop_after_epoch=1, **base))
    assert load_checkpoint(part)["scheduler"]["warmup_steps"] == 3
    train(TrainConfig(out=str(part), resume=True, **base))
    for run in (full, part):
        steps = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        lrs = [r["lr"] for r in steps if r["kind"] == "step"]
        assert lrs == pytest.approx([_warmup_closed_form(0.01, t, total, 0.9, 3, 0.2) for t in range(total)], rel=1e-12)
    a, b = load_checkpoint(full), load_checkpoint(part)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
