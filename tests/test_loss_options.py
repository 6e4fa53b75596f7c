"""One source per default and per option list: each loss declares its options once
(:attr:`wsss.losses.registry.TrainingLoss.OPTIONS`); ``make_loss`` and ``wsss train`` derive from the
declarations; the defaults of ``wsss train`` / ``wsss cam train`` are those of their config dataclasses."""

from __future__ import annotations

import dataclasses

import pytest
import typer

from wsss.cam.training import CamTrainConfig
from wsss.errors import UserError
from wsss.losses.registry import LOSSES, make_loss
from wsss.training import TrainConfig
from wsss_cli.main import app
from wsss_cli.train import LOSS_FLAG_HELP, _param, loss_flags, loss_options

#: a valid non-default value of every loss flag (keyword: the ``train`` parameter)
SAMPLE = {"lam": 0.25, "eta": 0.5, "relaxation": "bilinear", "ce": "reverse", "neighbourhood": "nn8", "bandwidth": 3.0,
          "solver_steps": 3, "solver_lr": 0.5, "solver_optimizer": "adam", "solver_option": ["momentum=0.5"],
          "crf_option": ["sigma_rgb=10"], "hard": True, "urss_phase": 2, "omega1": 2.0, "omega2": 10.0, "gamma": 0.5,
          "urss_softmax": "rows", "urss_transform": "flip", "boundary_width": 2, "walk": "paper",
          "spml_annotation": "points", "spml_weights": "paper", "w_img": 0.2, "w_ann": 0.7, "w_occ": 0.4, "w_aff": 0.3,
          "kappa_img": 10.0, "kappa_ann": 5.0, "kappa_occ": 9.0, "kappa_aff": 7.0, "embedding_dim": 16,
          "kmeans_grid": 4, "kmeans_iterations": 3, "memory_batches": 1, "class_weights": "median-frequency"}
#: where each sample value shows in the loss's resolved options (``loss.options()``)
RESOLVED = {"solver_option": ("momentum", 0.5), "crf_option": ("sigma_rgb", 10)}


def _command(*path: str):
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return command


def _at(record: dict, key: tuple[str, ...]):
    for k in key:
        record = record[k]
    return record


def test_cli_loss_flags_are_the_declared_ones():
    declared = set(loss_flags())
    offered = {opt for p in _command("train").params for opt in p.opts if p.name in {_param(f) for f in declared}}
    assert offered == declared == set(LOSS_FLAG_HELP)
    assert set(SAMPLE) == {_param(f) for f in declared}


@pytest.mark.parametrize("name", list(LOSSES))
def test_each_declared_option_reaches_the_loss_and_no_other_flag_applies(name):
    declared = {o.flag: o for o in LOSSES[name].OPTIONS}
    for flag in loss_flags():
        param = _param(flag)
        if flag not in declared:
            with pytest.raises(UserError, match=f"{flag}: does not apply to --loss {name}"):
                loss_options(name, **{param: SAMPLE[param]})
            continue
        option = declared[flag]
        resolved = make_loss(name, loss_options(name, **{param: SAMPLE[param]})).options()
        if option.kind == "pairs":
            key, value = RESOLVED[param]
            prefix = option.key[1:] if name in ("densecrf", "ncut", "kernelcut") else option.key
            assert _at(resolved, prefix + (key,)) == value, flag
        else:
            expected = SAMPLE[param]
            if name in ("densecrf", "ncut", "kernelcut") and option.key == ("lam",):
                expected = float(expected)
            assert _at(resolved, option.key) == expected, flag
    with pytest.raises(UserError, match="do not apply"):
        make_loss(name, {"no_such_option": 1})


@pytest.mark.parametrize("name", list(LOSSES))
def test_declared_defaults_are_what_the_loss_uses(name):
    resolved = make_loss(name, loss_options(name)).options()
    for option in LOSSES[name].OPTIONS:
        if option.kind != "pairs" and option.default is not None:
            assert _at(resolved, option.key) == option.default, option.flag


def test_loss_options_are_recorded_as_before():
    """The ``loss_options`` a run records (and ``--resume`` compares) keep their form."""
    assert loss_options("pce") == {} and loss_options("full") == {}
    assert loss_options("pseudo") == {"hard": False}
    assert loss_options("gridcrf", bandwidth=3.0) == {"bandwidth": 3.0}
    assert loss_options("densecrf") == {"dense": {}}
    assert loss_options("ncut", lam=2.0, crf_option=["sigma_rgb=10"]) == {"lam": 2.0, "dense": {"sigma_rgb": 10}}
    assert loss_options("collision") == {"solver": {}, "hard": False}
    assert loss_options("collision", lam=3.0, solver_option=["lam=1", "momentum=0.5"], hard=True) == {
        "solver": {"lam": 3.0, "momentum": 0.5}, "hard": True}
    with pytest.raises(UserError, match="unknown loss"):
        loss_options("nope")


@pytest.mark.parametrize("path,config", [(("train",), TrainConfig(out="")),
                                         (("cam", "train"), CamTrainConfig(out="", tags=""))])
def test_cli_defaults_are_the_config_defaults(path, config):
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    checked = 0
    for param in _command(*path).params:
        if param.name in fields and not param.required:
            default = fields[param.name]
            assert param.default == default or (param.default in ([], ()) and default is None), param.name
            checked += 1
        elif param.name == "resize_long":
            assert tuple(param.default) == (config.resize_long_min, config.resize_long_max)
            checked += 1
    assert checked >= 25
