"""EfficientNet-Lite0: the packaged ImageNet weights load strictly and classify real photos, the
declared input normalisation matches the weights' batch-norm statistics, dilation is exact, and
DeepLabV3+ / the CAM classifier train on it."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F

from wsss.errors import UserError
from wsss.models import Backbone, DeepLabV3Plus, EfficientNetLite0, ModelConfig, build_model, load_backbone_weights
from wsss.constants import IMAGENET_MEAN_255 as IMAGENET_MEAN
from wsss.constants import IMAGENET_STD_255 as IMAGENET_STD
from wsss.models.backbones import imagenet_state_dict
from wsss.models.efficientnet_lite import INPUT_MEAN, INPUT_STD, SameConv2d, packaged_weights_path

ESPRESSO = 967
CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def packaged_state():
    """The packaged file's state dict with keys renamed to EfficientNetLite0's (read once)."""
    state, _ = imagenet_state_dict("efficientnet_lite0")
    return state


@pytest.fixture(scope="module")
def classifier(packaged_state):
    net = EfficientNetLite0().eval()
    net.load_state_dict(packaged_state, strict=True)
    return net


def _backbone(state, output_stride: int = 16) -> Backbone:
    """A Lite0 backbone (eval mode) with the packaged weights, without reading the file again."""
    model = EfficientNetLite0(output_stride)
    model.load_state_dict(state, strict=True)
    return Backbone("efficientnet_lite0", output_stride, model=model).eval()


def _normalised(image: np.ndarray, mean, std, size: int = 224) -> torch.Tensor:
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def test_packaged_weights_load_strictly(packaged_state):
    raw = torch.load(packaged_weights_path(), map_location="cpu", weights_only=True)
    own = EfficientNetLite0().state_dict()
    assert len(raw) == len(packaged_state) == len(own) == 296  # renaming is one-to-one
    assert set(packaged_state) == set(own)
    for key, value in own.items():
        assert packaged_state[key].shape == value.shape, key
    assert torch.equal(packaged_state["stem.0.weight"], raw["_conv_stem.weight"])
    assert torch.equal(packaged_state["blocks.15.depthwise.1.running_var"], raw["_blocks.15._bn1.running_var"])
    assert torch.equal(packaged_state["classifier.1.bias"], raw["_fc.bias"])
    # every parameter of the backbone comes from the file
    backbone = load_backbone_weights("efficientnet_lite0", "packaged")
    assert torch.equal(backbone.stem[0][0].weight, raw["_conv_stem.weight"])
    assert torch.equal(backbone.body[-1].project[0].weight, raw["_blocks.15._project_conv.weight"])


def test_a_damaged_weights_file_is_a_user_error(tmp_path, packaged_state):
    broken = dict(packaged_state)
    broken.pop("blocks.3.expand.0.weight")
    broken["blocks.3.extra"] = torch.zeros(1)
    torch.save(broken, tmp_path / "bad.pth")
    with pytest.raises(UserError, match="1 missing keys.*1 unexpected keys"):
        load_backbone_weights("efficientnet_lite0", tmp_path / "bad.pth")
    reshaped = dict(packaged_state)
    reshaped["head.0.weight"] = torch.zeros(1280, 320, 3, 3)
    torch.save(reshaped, tmp_path / "shape.pth")
    with pytest.raises(UserError, match="shape mismatches"):
        load_backbone_weights("efficientnet_lite0", tmp_path / "shape.pth")
    # a file in this module's own naming loads as well
    torch.save(packaged_state, tmp_path / "own.pth")
    load_backbone_weights("efficientnet_lite0", tmp_path / "own.pth")


def test_classifies_coffee_and_chelsea(classifier):
    with torch.no_grad():
        p_coffee = classifier(_normalised(skimage.data.coffee(), INPUT_MEAN, INPUT_STD)).softmax(1)[0]
        p_cat = classifier(_normalised(skimage.data.chelsea(), INPUT_MEAN, INPUT_STD)).softmax(1)[0]
    assert int(p_coffee.argmax()) == ESPRESSO and p_coffee[ESPRESSO] > 0.5
    assert int(p_cat.argmax()) in CATS and p_cat[list(CATS)].sum() > 0.5


def test_declared_normalisation_matches_the_batch_norm_statistics(packaged_state):
    """The stem conv's output variance on natural photos matches the stem batch norm's running
    variance under (I − 127)/128, not under the ImageNet mean / std (an input scaled 2.2× too
    much gives ~4.9× the variance)."""
    images = [skimage.data.coffee(), skimage.data.chelsea(), skimage.data.astronaut(), skimage.data.rocket()]
    weight = packaged_state["stem.0.weight"]
    running = packaged_state["stem.1.running_var"]
    keep = running > 1e-4

    def ratio(mean, std):
        out = torch.cat([F.conv2d(_normalised(im, mean, std), weight, stride=2).transpose(0, 1).reshape(32, -1)
                         for im in images], dim=1)
        return float((out.var(dim=1)[keep] / running[keep]).median())

    assert 0.5 < ratio(INPUT_MEAN, INPUT_STD) < 1.5
    assert ratio(IMAGENET_MEAN, IMAGENET_STD) > 2.5


def test_backbone_converts_the_toolkit_normalisation_exactly(classifier, packaged_state):
    """Backbones take ImageNet-normalised input; Lite0's converts it to (I − 127)/128 inside."""
    backbone = _backbone(packaged_state)
    image = torch.rand(1, 3, 32, 48) * 255
    imagenet = (image - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    lite = (image - 127) / 128
    with torch.no_grad():
        torch.testing.assert_close(backbone.renormalize(imagenet), lite, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(backbone.features(imagenet)["low"], classifier.blocks[:3](classifier.stem(lite)),
                                   atol=1e-4, rtol=1e-4)
    assert backbone.input_mean == INPUT_MEAN and backbone.input_std == INPUT_STD


@pytest.mark.parametrize("height,width", [(9, 10), (8, 8), (7, 12)])
def test_same_padding_of_strided_convs(height, width):
    """Stride 2: output ⌈H/2⌉×⌈W/2⌉, the extra padding row / column at the bottom / right."""
    torch.manual_seed(0)
    conv = SameConv2d(2, 3, 5, stride=2)
    x = torch.randn(1, 2, height, width)
    pad_h = max((-(-height // 2) - 1) * 2 + 5 - height, 0)
    pad_w = max((-(-width // 2) - 1) * 2 + 5 - width, 0)
    reference = F.conv2d(F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)), conv.weight, stride=2)
    assert reference.shape[-2:] == (-(-height // 2), -(-width // 2))
    torch.testing.assert_close(conv(x), reference)


def test_dilated_features_at_output_stride_8_and_16(classifier, packaged_state):
    """Shapes and channels of the three levels; the dilated network computes the undilated one's
    features at every second position (odd offset: TensorFlow padding centres a stride-2 output
    between two inputs), exactly up to rounding."""
    backbones = {os_: _backbone(packaged_state, os_) for os_ in (8, 16)}
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        feats = {os_: b.features(x) for os_, b in backbones.items()}
        undilated = classifier.blocks(classifier.stem(backbones[16].renormalize(x)))  # stride 32
    for os_, f in feats.items():
        assert backbones[os_].channels == {"low": 24, "mid": 40, "high": 320}
        assert backbones[os_].strides == {"low": 4, "mid": 8, "high": os_}
        assert f["low"].shape == (2, 24, 16, 24)
        assert f["mid"].shape == (2, 40, 8, 12)
        assert f["high"].shape == (2, 320, 64 // os_, 96 // os_)
        low, high = backbones[os_](x)
        assert torch.equal(low, f["low"]) and torch.equal(high, f["high"])
    torch.testing.assert_close(feats[16]["high"][..., 1::2, 1::2], undilated, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(feats[8]["high"][..., 1::2, 1::2], feats[16]["high"], atol=1e-4, rtol=1e-4)


def test_deeplab_on_lite0_trains_a_step():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the packaged weights: no random-init warning
        model = build_model(ModelConfig(num_classes=3, head_channels=16), weights="packaged").train()
    assert model.config.backbone == "efficientnet_lite0"
    image = torch.rand(2, 3, 64, 64) * 255
    target = torch.randint(0, 3, (2, 64, 64))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss = F.cross_entropy(model(image), target)
    loss.backward()
    assert torch.isfinite(loss)
    for part in (model.backbone.stem[0][0].weight, model.backbone.body[-1].project[0].weight,
                 model.classifier.weight):
        assert part.grad is not None and torch.isfinite(part.grad).all() and part.grad.abs().sum() > 0
    before = model.backbone.stem[0][0].weight.detach().clone()
    optimizer.step()
    assert not torch.equal(before, model.backbone.stem[0][0].weight)


def test_cam_classifier_on_lite0():
    from wsss.cam.training import CamModelConfig, build_cam_model

    model = build_cam_model(CamModelConfig(num_classes=4, backbone="efficientnet_lite0", output_stride=8),
                            weights="packaged").eval()
    with torch.no_grad():
        scores = model(torch.randn(1, 3, 64, 48))
    assert scores.shape == (1, 4, 8, 6) and torch.isfinite(scores).all()


def test_weights_choices():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_backbone_weights("efficientnet_lite0", "none")  # asked for: no warning
    with pytest.warns(UserWarning, match="random initialisation"):
        load_backbone_weights("mobilenet_v2", "packaged", width_mult=0.25)  # has no packaged weights
    with pytest.raises(UserError, match="width-mult"):
        DeepLabV3Plus(ModelConfig(num_classes=2, width_mult=0.5))
