"""wsss.devices.resolve_device: the one ``--device`` rule of predict, solve and cam export."""

from __future__ import annotations

import pytest
import torch

from wsss.devices import resolve_device
from wsss.errors import UserError


def test_auto_and_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu", workers=4) == torch.device("cpu")
    with pytest.raises(UserError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(UserError, match="not a torch device"):
        resolve_device("gpu0")


def test_cuda_means_the_ranks_own_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto") == torch.device("cuda:1")
    assert resolve_device("cuda") == torch.device("cuda:1")
    assert resolve_device("cuda:0") == torch.device("cuda:0")  # an explicit index is kept
    with pytest.raises(UserError, match="--workers 1"):
        resolve_device("cuda", workers=2)
