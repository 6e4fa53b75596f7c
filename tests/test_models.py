"""DeepLabV3+ models: shapes, strides, upsampling convention, backbone weight loading."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

from wsss.errors import UserError
from wsss.models import DeepLabV3Plus, ModelConfig, build_model, load_backbone_weights



@pytest.mark.parametrize("backbone,os_,width", [("mobilenet_v2", 16, 0.25), ("mobilenet_v2", 8, 0.25),
                                               ("resnet50", 16, 1.0), ("resnet50", 8, 1.0)])
def test_shapes_and_output_stride(backbone, os_, width):
    torch.manual_seed(0)
    model = DeepLabV3Plus(ModelConfig(num_classes=5, backbone=backbone, output_stride=os_, width_mult=width, head_channels=16)).eval()
    x = torch.rand(1, 3, 64, 80) * 255
    low, high = model.backbone((x - model.mean) / model.std)
    assert low.shape[-2:] == (16, 20)
    assert high.shape[-2:] == (64 // os_, 80 // os_)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, 5, 64, 80) and y.dtype == torch.float32 and torch.isfinite(y).all()


def test_logits_upsampled_bilinear_align_corners():
    torch.manual_seed(0)
    model = DeepLabV3Plus(ModelConfig(num_classes=3, backbone="mobilenet_v2", width_mult=0.25, head_channels=16)).eval()
    seen = {}
    model.classifier.register_forward_hook(lambda m, i, o: seen.setdefault("low", o))
    x = torch.rand(2, 3, 40, 56) * 255
    with torch.no_grad():
        y = model(x)
    expected = F.interpolate(seen["low"], size=(40, 56), mode="bilinear", align_corners=True)
    assert seen["low"].shape[-2:] == (10, 14)
    torch.testing.assert_close(y, expected)


def test_trains_with_batch_of_one():
    """A per-device batch of 1 trains: the image-pooling branch (a 1×1 map) has no batch norm, which
    cannot normalise a single value per channel."""
    torch.manual_seed(0)
    model = DeepLabV3Plus(ModelConfig(num_classes=2, backbone="mobilenet_v2", width_mult=0.25, head_channels=8)).train()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.aspp.pool.modules())
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        torch.nn.BatchNorm2d(8).train()(torch.rand(1, 8, 1, 1))  # what such a branch would do
    logits = model(torch.rand(1, 3, 32, 32) * 255)
    assert logits.shape == (1, 2, 32, 32) and torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.randint(0, 2, (1, 32, 32))).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.aspp.pool[1].weight.grad.abs().sum() > 0  # the pooling branch is trained too


def test_weights_from_state_dict_file(tmp_path):
    torch.manual_seed(1)
    reference = torchvision.models.mobilenet_v2(weights=None)
    path = tmp_path / "mnv2.pth"
    torch.save(reference.state_dict(), path)
    backbone = load_backbone_weights("mobilenet_v2", path)
    ref_state = reference.state_dict()
    own = backbone.state_dict()
    # stem = features[0:4], body = features[4:18]
    for key, value in own.items():
        part, index, rest = key.split(".", 2)
        feature = int(index) + (0 if part == "stem" else 4)
        assert torch.equal(value, ref_state[f"features.{feature}.{rest}"]), key
    model = build_model(ModelConfig(num_classes=3, backbone="mobilenet_v2"), weights=str(path))
    assert torch.equal(model.backbone.stem[0][0].weight, reference.features[0][0].weight)


def test_weights_mismatch_is_a_user_error(tmp_path):
    state = torchvision.models.mobilenet_v2(weights=None).state_dict()
    path = tmp_path / "bad.pth"
    broken = dict(state)
    broken.pop("features.0.0.weight")
    broken["extra.weight"] = torch.zeros(1)
    torch.save(broken, path)
    with pytest.raises(UserError, match="missing keys.*unexpected keys"):
        load_backbone_weights("mobilenet_v2", path)
    torch.save(state, path)
    with pytest.raises(UserError, match="shape mismatch"):
        load_backbone_weights("mobilenet_v2", path, width_mult=0.5)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable"):
        load_backbone_weights("mobilenet_v2", tmp_path / "junk.pth")
    with pytest.raises(UserError, match="not found"):
        load_backbone_weights("mobilenet_v2", tmp_path / "missing.pth")


def test_random_init_warns_and_bad_options():
    with pytest.warns(UserWarning, match="random initialisation"):
        build_model(ModelConfig(num_classes=2, backbone="mobilenet_v2", width_mult=0.25, head_channels=8))
    with pytest.raises(UserError, match="output-stride"):
        DeepLabV3Plus(ModelConfig(num_classes=2, output_stride=32))
    with pytest.raises(UserError, match="unknown backbone"):
        DeepLabV3Plus(ModelConfig(num_classes=2, backbone="vgg"))
