"""Network losses: sum form against brute force, self-labeling steps, every --loss trains."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wsss.losses.gridcrf import gridcrf_sum, gridcrf_term
from wsss.losses.term import reduce_terms
from wsss.losses.partial_ce import partial_ce_sum, soft_ce_sum
from wsss.losses.registry import LOSS_NAMES, LossBatch, make_loss
from wsss.models import DeepLabV3Plus, ModelConfig
from wsss.training.toy import _image



def _batch(b=2, size=32, seed=0):
    rng = np.random.default_rng(seed)
    images, masks, seeds = zip(*(_image(rng, size) for _ in range(b)))
    image = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    mask = torch.from_numpy(np.stack(masks)).long()
    seed_map = torch.from_numpy(np.stack(seeds)).long()
    valid = torch.ones(b, size, size, dtype=torch.bool)
    valid[:, :, -5:] = False  # crop padding on the right
    return image, mask, seed_map, valid


def test_partial_ce_is_a_sum_over_valid_seeds():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 6, 7)
    labels = torch.full((2, 6, 7), 255)
    labels[0, 1, 2], labels[0, 4, 6], labels[1, 0, 0] = 1, 2, 0
    valid = torch.ones(2, 6, 7, dtype=torch.bool)
    valid[0, 4, 6] = False
    logp = logits.log_softmax(1)
    expected = -(logp[0, 1, 1, 2] + logp[1, 0, 0, 0])
    torch.testing.assert_close(partial_ce_sum(logits, labels, valid), expected)
    assert partial_ce_sum(logits, torch.full((2, 6, 7), 255), valid) == 0
    dense = torch.randint(0, 3, (2, 6, 7))
    torch.testing.assert_close(partial_ce_sum(logits, dense) / dense.numel(), F.cross_entropy(logits, dense))
    probs = torch.softmax(torch.randn(2, 3, 6, 7), 1)
    torch.testing.assert_close(soft_ce_sum(logits, probs, valid), -(probs * logp).sum(1)[valid].sum())


@pytest.mark.parametrize("kind", ["nn4", "nn8"])
@pytest.mark.parametrize("relaxation", ["quadratic", "collision-divergence"])
def test_gridcrf_matches_brute_force_pairs(kind, relaxation):
    torch.manual_seed(1)
    b, k, h, w = 2, 3, 5, 6
    probs = torch.softmax(torch.randn(b, k, h, w, dtype=torch.float64), 1)
    image = torch.rand(b, 3, h, w, dtype=torch.float64) * 60
    valid = torch.ones(b, h, w, dtype=torch.bool)
    valid[1, 2, 3] = False
    s = 9.0
    offsets = [(0, 1), (1, 0)] + ([(1, 1), (1, -1)] if kind == "nn8" else [])
    total, pairs = 0.0, 0
    for bi in range(b):
        for y in range(h):
            for x in range(w):
                for dy, dx in offsets:
                    qy, qx = y + dy, x + dx
                    if not (0 <= qy < h and 0 <= qx < w) or not (valid[bi, y, x] and valid[bi, qy, qx]):
                        continue
                    wt = math.exp(-float(((image[bi, :, y, x] - image[bi, :, qy, qx]) ** 2).sum()) / (2 * s * s))
                    if dy and dx:
                        wt /= math.sqrt(2)
                    a, c = probs[bi, :, y, x], probs[bi, :, qy, qx]
                    if relaxation == "quadratic":
                        p = 0.5 * float(((a - c) ** 2).sum())
                    else:
                        p = -math.log(float(a @ c) / float(a.norm() * c.norm()))
                    total += wt * p
                    pairs += 1
    got = gridcrf_sum(probs, image, valid, relaxation, kind, s)
    assert abs(float(got) - total) < 1e-9 * max(1.0, total)
    # the term's reduction: the mean over the valid pairs
    term = gridcrf_term(probs, image, valid, relaxation=relaxation, neighbourhood=kind, bandwidth=s)
    assert term.count.item() == pairs and abs(float(term.value()) - total / pairs) < 1e-9 * max(1.0, total)


def test_self_labeling_calls_solver_with_options_and_stops_gradient(monkeypatch):
    import wsss.losses.self_labeling as sl

    calls = []
    fixed = torch.softmax(torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3)), 1)

    def spy(logits, seeds, image, config, valid=None):
        calls.append(dict(logits=logits, seeds=seeds, image=image, config=config, valid=valid))
        return fixed.clone().requires_grad_(True)  # a careless solver: the loss must still detach it

    monkeypatch.setattr(sl, "solve_pseudolabels", spy)
    solver = {"relaxation": "quadratic", "ce": "collision", "neighbourhood": "nn8", "eta": 0.7, "lam": 2.5,
              "steps": 17, "lr": 0.01, "optimizer": "adam"}
    loss = make_loss("collision", {"solver": solver})
    image, _, seeds, valid = _batch()
    logits = torch.randn(2, 3, 32, 32, requires_grad=True)
    terms = loss.terms(logits, LossBatch(image, seeds, valid))
    assert len(calls) == 1
    call = calls[0]
    for key, value in solver.items():
        assert getattr(call["config"], key) == value
    assert not call["logits"].requires_grad and torch.equal(call["logits"], logits.detach())
    assert torch.equal(call["seeds"], seeds) and torch.equal(call["valid"], valid)
    y = loss.last_pseudo_labels
    assert not y.requires_grad and y.grad_fn is None
    grad = torch.autograd.grad(terms["sl"].total, logits)[0]
    # independent reference: η_net Σ_{V∖S} −ln Σ_k y^k σ^k with y a constant copy, over |V∖S|
    from wsss.losses.registry import SL_WEIGHT_PER_ETA

    assert loss.weight == pytest.approx(0.7 * SL_WEIGHT_PER_ETA)
    ref_logits = logits.detach().clone().requires_grad_(True)
    target = fixed.detach().clone()
    unl = (seeds == 255) & valid
    ref = loss.weight * (-torch.log((target * torch.softmax(ref_logits, 1)).sum(1)))[unl].sum()
    ref.backward()
    torch.testing.assert_close(grad, ref_logits.grad, rtol=1e-5, atol=1e-7 * loss.weight)
    torch.testing.assert_close(terms["sl"].total, ref.detach(), rtol=1e-5, atol=1e-5)
    assert terms["sl"].count.item() == unl.sum().item()
    assert fixed.grad is None
    # hard self-labeling: one-hot targets
    hard = make_loss("collision", {"solver": solver, "hard": True})
    hard.terms(logits, LossBatch(image, seeds, valid))
    yh = hard.last_pseudo_labels
    assert torch.equal(yh.sum(1), torch.ones(2, 32, 32)) and set(yh.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(yh.argmax(1), fixed.argmax(1))


def test_cli_solver_options_reach_the_solver_config():
    from wsss_cli.train import loss_options

    opts = loss_options("collision", lam=3.0, eta=0.5, relaxation="bilinear", ce="reverse", neighbourhood="nn8",
                        bandwidth=3.0, solver_steps=12, solver_lr=0.2, solver_optimizer="adam",
                        solver_option=["momentum=0.5", "cg_max_iter=7"], crf_option=[], hard=True)
    loss = make_loss("collision", opts)
    cfg = loss.solver
    assert (cfg.lam, cfg.eta, cfg.relaxation, cfg.ce, cfg.neighbourhood, cfg.bandwidth) == (3.0, 0.5, "bilinear", "reverse", "nn8", 3.0)
    assert (cfg.steps, cfg.lr, cfg.optimizer, cfg.momentum, cfg.cg_max_iter) == (12, 0.2, "adam", 0.5, 7) and loss.hard


def _train_steps(name, options, steps=6, seed=0):
    torch.manual_seed(seed)
    model = DeepLabV3Plus(ModelConfig(num_classes=3, backbone="mobilenet_v2", width_mult=0.25, head_channels=16))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    image, mask, seeds, valid = _batch()
    loss = make_loss(name, options)
    labels = mask if loss.target == "masks" else seeds
    probs = None
    if loss.target == "pseudolabels":
        probs = 0.8 * F.one_hot(mask, 3).permute(0, 3, 1, 2).float() + 0.2 / 3
        labels = mask
    batch = LossBatch(image, labels, valid, probs)
    history = []
    for _ in range(steps):
        terms = loss.terms(model(image), batch)
        total, _ = reduce_terms(terms)
        opt.zero_grad()
        total.backward()
        opt.step()
        history.append(float(total.detach()))
    return history, terms


CASES = [
    ("pce", {}),
    ("full", {}),
    ("gridcrf", {"neighbourhood": "nn8", "relaxation": "collision-divergence"}),
    ("densecrf", {"lam": 1e-3}),
    ("ncut", {}),
    ("kernelcut", {"lam": 1e-3}),
    ("collision", {"solver": {"steps": 20}}),
    ("collision", {"solver": {"steps": 20}, "hard": True}),
    ("pseudo", {}),
    ("pseudo", {"hard": True}),
]


@pytest.mark.parametrize("name,options", CASES, ids=[f"{n}{'-hard' if o.get('hard') else ''}" for n, o in CASES])
def test_every_loss_trains(name, options):
    history, terms = _train_steps(name, options)
    assert all(math.isfinite(v) for v in history)
    assert min(history[-2:]) < history[0], history
    expected = {"pce": {"pce"}, "full": {"ce"}, "pseudo": {"ce"}, "collision": {"pce", "sl"}}.get(name, {"pce", "crf"})
    assert set(terms) == expected
    for term in terms.values():
        assert term.total.dim() == 0 and torch.isfinite(term.total) and term.count.item() > 0


def test_registry_covers_the_cli_names():
    assert set(LOSS_NAMES) == {"pce", "full", "gridcrf", "densecrf", "ncut", "kernelcut", "collision", "pseudo", "urss", "spml"}
    from wsss.errors import UserError

    with pytest.raises(UserError, match="not an option"):
        make_loss("densecrf", {"dense": {"bogus": 1}})
    with pytest.raises(UserError, match="unknown solver option"):
        make_loss("collision", {"solver": {"bogus": 1}})


def test_training_solver_budget_defaults():
    from wsss.losses.registry import (TRAINING_CG_DTYPE, TRAINING_SOLVER_LR, TRAINING_SOLVER_STEPS,
                                      TRAINING_START_DOWNSAMPLE)

    cfg = make_loss("collision").solver
    assert (cfg.steps, cfg.lr, cfg.start_downsample, cfg.cg_dtype, cfg.optimizer, cfg.closed_form) == (
        TRAINING_SOLVER_STEPS, TRAINING_SOLVER_LR, TRAINING_START_DOWNSAMPLE, TRAINING_CG_DTYPE, "mirror", True)
    paper = make_loss("collision", {"solver": {"optimizer": "sgd"}}).solver
    assert paper.steps is None and paper.resolved().steps == 200  # the paper's budget, not the training one
    assert paper.lr is None and paper.resolved().lr == 0.075
    explicit = make_loss("collision", {"solver": {"steps": 7, "cg_dtype": "float64"}}).solver
    assert (explicit.steps, explicit.cg_dtype) == (7, "float64")
    # the previous training budget stays reachable through the options
    before = make_loss("collision", {"solver": {"steps": 20, "lr": 1.0, "start_downsample": 1}}).solver
    assert (before.steps, before.lr, before.start_downsample) == (20, 1.0, 1)
