"""The command-line shell: help, version, info, and the one-line exit-2 error contract."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from wsss import __version__
from wsss.artifacts import Artifact, ArtifactWriter
from wsss_cli.main import COMMAND_MODULES, app, register_commands

runner = CliRunner()


def test_help_lists_every_registered_stage():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in COMMAND_MODULES:
        importlib.import_module(f"wsss_cli.{name}")  # a listed module that vanished fails here
        shown = {"evaluate": "eval", "demo_data": "demo-data", "prepare": "prepare-scribbles",
                 "spml_labels": "spml-labels", "spml_relabel": "spml-relabel"}.get(name, name)
        assert shown in result.output, f"{shown} missing from wsss --help"


def test_a_missing_command_module_fails_loudly():
    with pytest.raises(ModuleNotFoundError, match="wsss_cli.no_such_command"):
        register_commands(typer.Typer(), ["info", "no_such_command"])


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_info_describes_kind_config_and_provenance(tmp_path):
    parent = tmp_path / "seeds.h5"
    with ArtifactWriter(parent, "seeds", classes=["bg", "cat"], config={"command": "wsss prepare-scribbles X"}) as w:
        w.write("img1", {"label": np.zeros((3, 3), np.uint8)})
        w.commit()
    child = tmp_path / "pl.h5"
    with ArtifactWriter(child, "pseudolabels", classes=["bg", "cat"], config={"command": "wsss solve Y", "lam": 6.0},
                        inputs=[Artifact(parent).provenance()]) as w:
        w.write("img1", {"probs": np.zeros((2, 3, 3), np.float16)})
        w.commit()
    result = runner.invoke(app, ["info", str(child)])
    assert result.exit_code == 0, result.output
    for expected in ("pseudolabels", "bg, cat", '"lam": 6.0', "wsss prepare-scribbles X", "wsss solve Y"):
        assert expected in result.output


def test_bad_input_is_one_line_exit_2_without_traceback(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_text("garbage")
    result = runner.invoke(app, ["info", str(junk)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "junk.h5" in lines[0] and "error" in lines[0]
    assert "Traceback" not in result.output


def test_help_keeps_bracketed_default_sources():
    """Option help quotes its source as "[Zhang & Boykov 2025: 60]"; rich markup would swallow the brackets."""
    result = runner.invoke(app, ["train", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "[Zhang & Boykov 2025: 60]" in result.output


def _leaf_commands(group, prefix=()):
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):  # a group (typer may vendor its own click)
            yield from _leaf_commands(cmd, prefix + (name,))
        else:
            yield prefix + (name,), cmd


def test_every_option_and_argument_is_explained():
    import typer.main

    missing = []
    for path, cmd in _leaf_commands(typer.main.get_command(app)):
        if not (cmd.help or "").strip():
            missing.append(" ".join(path) + ": command help")
        for param in cmd.params:
            if param.name == "help" or getattr(param, "hidden", False):
                continue
            if not (getattr(param, "help", None) or "").strip():
                missing.append(f"{' '.join(path)} {param.name}")
    assert not missing, f"options without help: {missing}"


def test_command_line_starts_without_torchvision():
    """The commands read their defaults from the config dataclasses at import; that must not pull in
    torchvision (models are built only when a command runs)."""
    import subprocess
    import sys

    code = "import sys, wsss_cli.main; print('torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"
