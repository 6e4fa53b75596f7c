"""The installed package layout (pyproject.toml): the top-level folder ``stages/`` is installed as
``wsss.stages``, no generic top-level name is installed, and every sub-package in the tree is listed
in the explicit package list (a forgotten one would be missing from ``pip install .``)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _setuptools_config() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["setuptools"]


def _packages_in_tree() -> set[str]:
    """Dotted names of the folders with an ``__init__.py`` under wsss/, wsss_cli/ and stages/, the
    latter named as installed (``wsss.stages...``)."""
    names = set()
    for top, installed_as in (("wsss", "wsss"), ("wsss_cli", "wsss_cli"), ("stages", "wsss.stages")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            names.add(".".join((installed_as, *rel)))
    return names


def test_stages_folder_is_installed_as_wsss_stages():
    config = _setuptools_config()
    assert config["package-dir"] == {"wsss.stages": "stages"}
    assert (ROOT / "stages" / "__init__.py").is_file()
    assert not (ROOT / "wsss" / "stages").exists(), "the stages live in the top-level stages/ only"


def test_every_package_is_listed_and_no_generic_top_level_name():
    packages = set(_setuptools_config()["packages"])
    assert packages == _packages_in_tree()
    assert {name.split(".")[0] for name in packages} == {"wsss", "wsss_cli"}


def test_wsss_stages_imports_from_the_stages_folder():
    import wsss.stages.crf

    path = Path(wsss.stages.crf.__file__).resolve()
    # editable install: <repo>/stages/crf.py; regular install: site-packages/wsss/stages/crf.py
    assert path.parent.name == "stages" and path.name == "crf.py"
    assert path.parent == ROOT / "stages" or path.parent.parent.name == "wsss"
