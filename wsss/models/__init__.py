"""Segmentation networks: DeepLabV3+ on EfficientNet-Lite0 (default; ImageNet weights offline) and
torchvision ResNet-50/101 and MobileNetV2 backbones.

``build_model(ModelConfig(num_classes=K, backbone=...), weights="packaged" | "imagenet" | "none" | PATH)``
returns a :class:`DeepLabV3Plus` mapping ``B×3×H×W`` RGB 0–255 images to ``B×K×H×W`` logits at
input size. :class:`Backbone` is the feature extractor every head uses (stride 4 / 8 / ``os`` levels).
"""

from wsss.models.backbones import (BACKBONES, DEFAULT_BACKBONE, DEFAULT_WEIGHTS, Backbone, load_backbone_weights,
                                   torchvision_model)
from wsss.models.deeplabv3plus import DeepLabV3Plus, ModelConfig, build_model, empty_model
from wsss.models.efficientnet_lite import EfficientNetLite0

__all__ = [
    "BACKBONES",
    "DEFAULT_BACKBONE",
    "DEFAULT_WEIGHTS",
    "Backbone",
    "DeepLabV3Plus",
    "EfficientNetLite0",
    "ModelConfig",
    "build_model",
    "empty_model",
    "load_backbone_weights",
    "torchvision_model",
]
