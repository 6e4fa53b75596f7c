"""The SPML network: shapes, unit embeddings at stride 4, classifier on the detached embedding, every
backbone; :func:`wsss.training.spml.load_spml_model`."""

from __future__ import annotations

import pytest
import torch

from wsss.errors import UserError
from wsss.models.spml_net import SPMLModelConfig, SPMLNet
from wsss.training.run import RunDir
from wsss.training.spml import load_spml_model


def tiny(backbone: str = "mobilenet_v2", **kw) -> SPMLNet:
    width = 0.25 if backbone == "mobilenet_v2" else 1.0
    return SPMLNet(SPMLModelConfig(num_classes=3, backbone=backbone, width_mult=width, embedding_dim=8, **kw))


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "efficientnet_lite0", "resnet50"])
def test_outputs_unit_embedding_at_stride_4_and_logits(backbone):
    torch.manual_seed(0)
    net = tiny(backbone).eval()
    out = net(torch.rand(2, 3, 40, 56) * 255)
    assert out["embedding"].shape == (2, 8, 10, 14) and out["logits"].shape == (2, 3, 10, 14)
    assert torch.allclose(out["embedding"].norm(dim=1), torch.ones(2, 10, 14), atol=1e-5)
    assert net.class_logits(torch.rand(1, 3, 40, 56) * 255).shape == (1, 3, 40, 56)


def test_head_is_the_sum_of_four_atrous_convolutions():
    net = tiny()
    x = torch.randn(1, net.backbone.high_channels, 9, 9)
    manual = sum(torch.nn.functional.conv2d(x, c.weight, c.bias, padding=r, dilation=r)
                 for c, r in zip(net.embed.branches, (6, 12, 18, 24)))
    assert torch.allclose(net.embed(x), manual, atol=1e-5)


def test_classifier_gradient_does_not_reach_the_embedding():
    torch.manual_seed(0)
    net = tiny()
    out = net(torch.rand(2, 3, 32, 32) * 255)
    out["logits"].sum().backward()
    assert all(p.grad is None for p in net.embed.parameters())
    assert all(p.grad is None for p in net.backbone.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.classifier.parameters())


def test_load_spml_model_round_trip_and_refuses_other_runs(tmp_path):
    torch.manual_seed(0)
    net = tiny()
    run = RunDir(tmp_path / "run")
    state = {"task": "spml", "model_config": net.config.to_dict(), "model": net.state_dict(), "classes": ["bg", "a", "b"],
             "epoch": 1}
    run.save_checkpoint(state, 1)
    loaded, meta = load_spml_model(tmp_path / "run", "cpu")
    assert not loaded.training and meta["classes"] == ["bg", "a", "b"] and "model" not in meta
    image = torch.rand(1, 3, 32, 32) * 255
    net.eval()
    assert torch.equal(loaded(image)["embedding"], net(image)["embedding"])
    RunDir(tmp_path / "seg").save_checkpoint({"task": "segmentation", "model": {}}, 1)
    with pytest.raises(UserError, match="not an SPML embedding run"):
        load_spml_model(tmp_path / "seg")
