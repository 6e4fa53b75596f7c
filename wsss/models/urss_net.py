"""The URSS segmentation network (Pan et al., ICCV 2021; docs/methods.md, "URSS"), as in its public code.

``image B×3×H×W`` (RGB 0–255, ImageNet-normalised inside) → backbone at output stride 8 (``high``) →
``conv5a`` (3×3 conv ``C_high``→512 + BN + ReLU) → the random walk (:class:`~wsss.models.random_walk.RandomWalk`,
code or paper form) → 3×3 conv 512→512 + BN + ReLU → Dropout2d(0.1) → 1×1 conv → K logits, upsampled
bilinearly (``align_corners=True``) to the input size. :meth:`URSSNet.forward` returns the logits;
``forward(image, with_energy=True)`` also the walk's pre-softmax energy ``E`` (``B×N×N``, ``N = h·w``
positions of the stride-8 grid, row-major) and the grid ``(h, w)``, for the eigenspace loss.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from wsss.models.backbones import Backbone
from wsss.models.deeplabv3plus import ModelConfig, _conv_bn_relu, head_parameters, register_input_normalization
from wsss.models.random_walk import RandomWalk

#: channels of the walk's features (conv5a), as in the public code
WALK_CHANNELS = 512


class URSSNet(nn.Module):
    """The URSS network (module docstring); ``config.head == "urss"``, ``config.walk`` the walk's form."""

    def __init__(self, config: ModelConfig, backbone: Backbone | None = None):
        super().__init__()
        self.config = config
        self.backbone = backbone if backbone is not None else Backbone(config.backbone, config.output_stride, config.width_mult)
        c = WALK_CHANNELS
        self.conv5a = _conv_bn_relu(self.backbone.high_channels, c, 3)
        self.walk = RandomWalk(c, form=config.walk)
        self.head = nn.Sequential(_conv_bn_relu(c, c, 3), nn.Dropout2d(0.1))
        self.classifier = nn.Conv2d(c, config.num_classes, 1)
        register_input_normalization(self)

    def head_parameters(self) -> list[nn.Parameter]:
        return head_parameters(self)

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())

    def forward(self, image: Tensor, with_energy: bool = False):
        h, w = image.shape[-2:]
        _, high = self.backbone((image - self.mean) / self.std)
        f, energy = self.walk(self.conv5a(high))
        logits = F.interpolate(self.classifier(self.head(f)), size=(h, w), mode="bilinear", align_corners=True)
        if with_energy:
            return logits, energy, (int(f.shape[2]), int(f.shape[3]))
        return logits


__all__ = ["URSSNet", "WALK_CHANNELS"]
