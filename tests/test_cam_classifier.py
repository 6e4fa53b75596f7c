"""CAM classifier (posterior switch, backbones, dilation) and multi-scale + flip CAM export (cam.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from wsss.cam.classifier import (CamClassifier, build_backbone, build_cam_classifier, dilate_convolutions,
                                 posterior_probs)
from wsss.cam.export import export_cams, normalize_cams
from wsss.errors import UserError


class TinyBackbone(nn.Module):
    """B×3×H×W → B×8×H/2×W/2."""

    out_channels = 8

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x))


# -- posterior switch -------------------------------------------------------------------------

def test_posterior_switch_changes_only_the_posterior():
    torch.manual_seed(0)
    backbone = TinyBackbone()
    binom = CamClassifier(backbone, 8, num_classes=4).eval()
    multi = CamClassifier(backbone, 8, num_classes=4, posterior="multinomial").eval()
    assert binom.head.weight.shape[0] == 4 and multi.head.weight.shape[0] == 5
    assert binom.head.bias is None                                   # SEAM: no bias
    with torch.no_grad():
        multi.head.weight[1:] = binom.head.weight                      # shared classes: same weights
    x = torch.randn(2, 3, 16, 20)
    with torch.no_grad():
        sb, sm = binom(x), multi(x)
    assert torch.equal(binom.features(x), multi.features(x))
    assert sb.shape == (2, 4, 8, 10) and sm.shape == (2, 5, 8, 10)
    assert torch.allclose(multi.foreground(sm), sb)                  # same scores for shared classes
    assert torch.allclose(multi.cam(x), binom.cam(x))
    pb, pm = binom.posterior(sb), multi.posterior(sm)
    assert torch.allclose(pb, torch.sigmoid(sb))                     # per-class sigmoid, no bg channel
    assert torch.allclose(pm, torch.softmax(sm, dim=1))              # softmax over bg + C channels
    assert torch.allclose(pm.sum(1), torch.ones(2, 8, 10))
    assert not torch.allclose(pm[:, 1:], pb)
    assert torch.equal(posterior_probs(sb), pb)
    with pytest.raises(UserError):
        CamClassifier(backbone, 8, 4, posterior="poisson")


def test_dropout_only_in_training():
    torch.manual_seed(0)
    net = CamClassifier(TinyBackbone(), 8, 3)
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert not torch.equal(net.train()(x), net.train()(x))
        assert torch.equal(net.eval()(x), net.eval()(x))


# -- backbones --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet50"])
def test_dilation_is_a_trous_equivalent(name):
    """Removing strides and dilating later convolutions gives the stride-32 network's output on the
    sub-sampled grid (exactly, for sizes divisible by 32), and keeps torchvision's state-dict keys."""
    torch.manual_seed(0)
    coarse = build_backbone(name, 32).eval()
    fine = build_backbone(name, 8).eval()
    fine.load_state_dict(coarse.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        yc, yf = coarse(x), fine(x)
    assert yc.shape[-2:] == (2, 2) and yf.shape[-2:] == (8, 8)
    assert yf.shape[1] == fine.out_channels
    assert torch.allclose(yf[..., ::4, ::4], yc, atol=1e-4, rtol=1e-4)


def test_output_strides_and_torchvision_keys():
    import torchvision

    for name, stride, size in [("mobilenet_v2", 16, 4), ("resnet101", 16, 4)]:
        net = build_cam_classifier(20, name, stride).eval()
        with torch.no_grad():
            assert net(torch.zeros(1, 3, 64, 64)).shape == (1, 20, size, size)
    res = build_backbone("resnet50", 8)
    missing, unexpected = res.load_state_dict(torchvision.models.resnet50(weights=None).state_dict(), strict=False)
    assert missing == [] and sorted(unexpected) == ["fc.bias", "fc.weight"]
    mob = build_backbone("mobilenet_v2", 8)
    missing, unexpected = mob.load_state_dict(torchvision.models.mobilenet_v2(weights=None).state_dict(), strict=False)
    assert missing == [] and all(k.startswith("classifier.") for k in unexpected)
    with pytest.raises(UserError):
        build_backbone("vgg16")
    with pytest.raises(UserError):
        build_backbone("resnet50", 4)
    with pytest.raises(UserError):
        dilate_convolutions(nn.Conv2d(1, 1, 3), 12)


# -- CAM export -------------------------------------------------------------------------------

def _image(h=21, w=26, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


class Pointwise(nn.Module):
    """Flip-symmetric: a 1×1 convolution (B×3×H×W → B×C×H×W)."""

    def __init__(self, c=3):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, c, 1)

    def forward(self, x):
        return self.conv(x)


class Ramp(Pointwise):
    """Not flip-symmetric: 2×2 average pooling of the 1×1 convolution plus a left-to-right ramp
    (B×3×H×W → B×C×⌈H/2⌉×⌈W/2⌉)."""

    def forward(self, x):
        s = F.avg_pool2d(self.conv(x), 2, ceil_mode=True)
        return s + torch.linspace(-3, 3, s.shape[-1])


def test_export_flip_equivariance():
    img = _image()
    tags = [1, 2, 3]
    # flip-symmetric model: equivariant even without flip passes (PIL bicubic, bilinear upsampling)
    a, _ = export_cams(Pointwise(), img[:, ::-1].copy(), tags, 3, flip=False)
    b, _ = export_cams(Pointwise(), img, tags, 3, flip=False)
    assert np.allclose(a, b[..., ::-1], atol=1e-5)
    # any model with flip passes
    a, _ = export_cams(Ramp(), img[:, ::-1].copy(), tags, 3)
    b, _ = export_cams(Ramp(), img, tags, 3)
    assert np.allclose(a, b[..., ::-1], atol=1e-5)
    a, _ = export_cams(Ramp(), img[:, ::-1].copy(), tags, 3, flip=False)
    b, _ = export_cams(Ramp(), img, tags, 3, flip=False)
    assert not np.allclose(a, b[..., ::-1], atol=1e-2)


def test_export_multiscale_matches_manual():
    img = _image()
    model = Ramp()
    h, w = img.shape[:2]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    total = torch.zeros(3, h, w)
    for scale in (0.5, 1.5):
        size = (round(w * scale), round(h * scale))
        im = np.asarray(Image.fromarray(img).resize(size, Image.BICUBIC))
        x = ((torch.tensor(im).permute(2, 0, 1).float() / 255 - mean) / std)[None]
        for flipped in (False, True):
            with torch.no_grad():
                s = model(torch.flip(x, [3]) if flipped else x)
            up = F.interpolate(s, size=(h, w), mode="bilinear", align_corners=False)[0]
            total += torch.flip(up, [2]) if flipped else up
    pos = total.clamp(min=0)
    lo, hi = pos.amin(dim=(1, 2), keepdim=True), pos.amax(dim=(1, 2), keepdim=True)
    ref = ((pos - lo - 1e-5).clamp(min=0) / (hi - lo + 1e-5))[[0, 2]]
    cams, classes = export_cams(model, img, [3, 1], 3, scales=(0.5, 1.5))
    assert classes.dtype == np.int16 and classes.tolist() == [1, 3]
    assert cams.shape == (2, h, w) and cams.dtype == np.float32
    assert np.allclose(cams, ref.numpy(), atol=1e-5)
    raw, _ = export_cams(model, img, [1, 3], 3, scales=(0.5, 1.5), normalize=False)
    assert np.allclose(raw, total[[0, 2]].numpy(), atol=1e-4)
    assert np.allclose(normalize_cams(torch.tensor(raw)).numpy(), cams, atol=1e-6)


def test_export_only_present_classes():
    img = _image(seed=2)
    full, all_classes = export_cams(Ramp(4), img, [1, 2, 3, 4], 4, scales=(1.0,))
    part, classes = export_cams(Ramp(4), img, [4, 2, 2], 4, scales=(1.0,))
    assert all_classes.tolist() == [1, 2, 3, 4] and classes.tolist() == [2, 4]
    assert np.allclose(part, full[[1, 3]])
    none, classes = export_cams(Ramp(4), img, [], 4)
    assert none.shape == (0,) + img.shape[:2] and classes.size == 0
    with pytest.raises(UserError):
        export_cams(Ramp(4), img, [5], 4)
    # a CamClassifier's cam() plugs in directly (multinomial: background channel dropped)
    net = CamClassifier(TinyBackbone(), 8, 4, posterior="multinomial").eval()
    cams, classes = export_cams(net.cam, img, [2], 4, scales=(1.0,))
    assert cams.shape == (1,) + img.shape[:2] and classes.tolist() == [2]
