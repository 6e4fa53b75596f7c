"""Segmentation networks: DeepLabV3+ on torchvision ResNet-50/101 and MobileNetV2 backbones.

``build_model(ModelConfig(num_classes=K, backbone=...), weights=None | "imagenet" | PATH)`` returns a
:class:`DeepLabV3Plus` mapping ``B×3×H×W`` RGB 0–255 images to ``B×K×H×W`` logits at input size.
"""

from wsss.models.backbones import BACKBONES, Backbone, load_backbone_weights, torchvision_model
from wsss.models.deeplabv3plus import DeepLabV3Plus, ModelConfig, build_model

__all__ = [
    "BACKBONES",
    "Backbone",
    "DeepLabV3Plus",
    "ModelConfig",
    "build_model",
    "load_backbone_weights",
    "torchvision_model",
]
