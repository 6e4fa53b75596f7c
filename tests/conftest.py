"""Shared fixtures.

- ``demo_root``: a tiny demo dataset (generic layout), made once per test session with
  :func:`wsss.data.demo.generate_demo`: 8 train + 4 val images of 64×64, 4 classes
  (background, ellipse, rectangle, triangle), seed 0. Read-only: copy it before modifying.
- ``demo_train`` / ``demo_val``: the opened train / val splits (:class:`wsss.data.base.Dataset`).
- every test runs with one torch thread (see ``_one_torch_thread``).
"""

from __future__ import annotations

import pytest



@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One torch thread for the whole suite: the tests use tiny tensors, and on a 2-core machine
    (CI) spinning OpenMP threads cost far more CPU time than they save."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


DEMO_TINY = {"train": 8, "val": 4, "size": (64, 64), "classes": 4, "seed": 0}


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """Path of the session's tiny demo dataset (see the module docstring)."""
    from wsss.data.demo import generate_demo

    return generate_demo(tmp_path_factory.mktemp("demo") / "demo", progress=False, **DEMO_TINY)


@pytest.fixture(scope="session")
def demo_train(demo_root):
    from wsss.data import open_dataset

    return open_dataset(demo_root, split="train")


@pytest.fixture(scope="session")
def demo_val(demo_root):
    from wsss.data import open_dataset

    return open_dataset(demo_root, split="val")
