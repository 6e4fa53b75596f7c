"""DeepLabV3+ (Chen et al. 2018): ASPP on stride-16/8 features + a decoder with stride-4 features.

Structure (written for this toolkit):

- input: ``B×3×H×W`` float RGB in **0–255**; the model normalizes with the ImageNet mean / std
  itself (a backbone whose weights expect another normalisation converts inside, see
  :mod:`wsss.models.backbones`), so every caller (training, losses that need the image,
  prediction) passes raw colours;
- backbone (:mod:`wsss.models.backbones`) → ``low`` (stride 4) and ``high`` (stride ``os``);
- ASPP on ``high``: a 1×1 branch, three 3×3 atrous branches (rates 6/12/18 at OS 16, 12/24/36 at
  OS 8), an image-pooling branch (1×1 conv + ReLU, no batch norm, so a per-device batch of 1 trains);
  concatenated, projected by 1×1 conv to ``head_channels``, dropout 0.1;
- decoder: ``low`` reduced to 48 channels (1×1), ASPP output upsampled to stride 4, concatenated,
  two 3×3 convs (``head_channels``), a 1×1 classifier to K logits;
- logits upsampled bilinearly to the input size with ``align_corners=True`` (docs/methods.md §1).

Batch norm + ReLU after every conv except the classifier and the pooling branch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsss.constants import IMAGENET_MEAN_255, IMAGENET_STD_255
from wsss.models.backbones import DEFAULT_BACKBONE, Backbone, load_backbone_weights


def _conv_bn_relu(cin: int, cout: int, kernel: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling. ``B×C_in×h×w`` → ``B×C_out×h×w``."""

    def __init__(self, cin: int, cout: int, rates: tuple[int, int, int]):
        super().__init__()
        self.branches = nn.ModuleList([_conv_bn_relu(cin, cout, 1)] + [_conv_bn_relu(cin, cout, 3, r) for r in rates])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1), nn.ReLU(inplace=True))
        self.project = nn.Sequential(_conv_bn_relu(5 * cout, cout, 1), nn.Dropout(0.1))

    def forward(self, x: Tensor) -> Tensor:
        outs = [b(x) for b in self.branches]
        pooled = self.pool(x).expand(-1, -1, x.shape[2], x.shape[3])
        return self.project(torch.cat(outs + [pooled], dim=1))


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model (stored in checkpoints).

    Attributes:
        num_classes: K.
        backbone: ``efficientnet_lite0`` (default: ImageNet weights offline, from its pip package),
            ``mobilenet_v2`` (paper ablations, rloss), ``resnet50`` or ``resnet101`` (paper's best).
        output_stride: 16 (default, rloss) or 8.
        width_mult: MobileNetV2 width multiplier (1.0; smaller for CPU tests; 1.0 for the others).
        head_channels: ASPP / decoder width (256, DeepLabV3+).
        low_channels: reduced low-level channels in the decoder (48, DeepLabV3+).
        head: ``deeplabv3plus`` or ``urss`` (the URSS random-walk network, :mod:`wsss.models.urss_net`).
        walk: form of the URSS random walk, ``code`` or ``paper`` (:mod:`wsss.models.random_walk`).
    """

    num_classes: int
    backbone: str = DEFAULT_BACKBONE
    output_stride: int = 16
    width_mult: float = 1.0
    head_channels: int = 256
    low_channels: int = 48
    head: str = "deeplabv3plus"
    walk: str = "code"

    def to_dict(self) -> dict:
        return asdict(self)


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ segmentation network (see the module docstring).

    ``forward(image)``: image ``B×3×H×W`` float RGB 0–255 → logits ``B×K×H×W`` float.
    """

    def __init__(self, config: ModelConfig, backbone: Backbone | None = None):
        super().__init__()
        self.config = config
        self.backbone = backbone if backbone is not None else Backbone(config.backbone, config.output_stride, config.width_mult)
        rates = (6, 12, 18) if config.output_stride == 16 else (12, 24, 36)
        c = config.head_channels
        self.aspp = ASPP(self.backbone.high_channels, c, rates)
        self.reduce = _conv_bn_relu(self.backbone.low_channels, config.low_channels, 1)
        self.fuse = nn.Sequential(
            _conv_bn_relu(c + config.low_channels, c, 3),
            _conv_bn_relu(c, c, 3),
            nn.Dropout(0.1),
        )
        self.classifier = nn.Conv2d(c, config.num_classes, 1)
        register_input_normalization(self)

    def head_parameters(self) -> list[nn.Parameter]:
        """Parameters of ASPP + decoder (trained with ``head_lr_mult``)."""
        return head_parameters(self)

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())

    def forward(self, image: Tensor) -> Tensor:
        h, w = image.shape[-2:]
        x = (image - self.mean) / self.std
        low, high = self.backbone(x)
        y = self.aspp(high)
        y = F.interpolate(y, size=low.shape[-2:], mode="bilinear", align_corners=True)
        y = self.fuse(torch.cat([y, self.reduce(low)], dim=1))
        y = self.classifier(y)
        return F.interpolate(y, size=(h, w), mode="bilinear", align_corners=True)


def register_input_normalization(model: nn.Module) -> None:
    """Register the ImageNet ``mean``/``std`` buffers (``1×3×1×1`` float32, 0–255 units, not saved) that a
    segmentation network applies to its ``B×3×H×W`` RGB 0–255 input: ``(image − mean) / std``."""
    model.register_buffer("mean", torch.tensor(IMAGENET_MEAN_255).view(1, 3, 1, 1), persistent=False)
    model.register_buffer("std", torch.tensor(IMAGENET_STD_255).view(1, 3, 1, 1), persistent=False)


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every parameter of ``model`` outside its ``backbone`` (the group trained at ``lr · head_lr_mult``)."""
    return [p for n, p in model.named_parameters() if not n.startswith("backbone.")]


def empty_model(config: ModelConfig, backbone: Backbone | None = None) -> nn.Module:
    """The network of ``config.head`` (DeepLabV3+ or the URSS network) on ``backbone`` (default: random)."""
    if config.head == "urss":
        from wsss.models.urss_net import URSSNet

        return URSSNet(config, backbone)
    return DeepLabV3Plus(config, backbone)


def build_model(config: ModelConfig, weights: str | Path | None = None) -> nn.Module:
    """A DeepLabV3+ with its backbone initialised from ``weights`` (see
    :func:`wsss.models.backbones.load_backbone_weights`: ``"packaged"``, ``"imagenet"``, ``"none"``,
    a state-dict path, or None = random with a warning)."""
    backbone = load_backbone_weights(config.backbone, weights, config.output_stride, config.width_mult)
    return empty_model(config, backbone)
