"""Backbones for DeepLabV3+: torchvision ResNet-50 / ResNet-101 and MobileNetV2 with dilation.

Every backbone is built from the torchvision constructor with ``weights=None`` and returns two
feature maps for an input ``B×3×H×W`` (ImageNet-normalized float):

- ``low``: stride-4 features for the decoder (ResNet ``layer1``: 256 channels; MobileNetV2 after
  ``features[3]``: ``24·width`` channels);
- ``high``: stride-``output_stride`` features for ASPP (ResNet ``layer4``: 2048 channels;
  MobileNetV2 after ``features[17]``: ``320·width`` channels; the final 1280-channel 1×1 conv and
  the classifier are dropped, as DeepLabV3+ implementations on MobileNetV2 do).

Output stride 16 or 8: ResNets use torchvision's ``replace_stride_with_dilation``; MobileNetV2
sets the stride of the last down-sampling block(s) to 1 and dilates the 3×3 depthwise convolutions
from there on (rate 2 after the first removed stride, 4 after the second).

ImageNet weights (:func:`load_backbone_weights`) are a torchvision state dict of the *whole*
classification model (``resnet50-*.pth``, ``mobilenet_v2-*.pth``); they are loaded into the
full torchvision model with a strict key and shape check before its head is dropped.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from wsss.errors import UserError

#: backbone name -> torchvision constructor name
BACKBONES = {
    "resnet50": "resnet50",
    "resnet101": "resnet101",
    "mobilenet_v2": "mobilenet_v2",
}

#: torchvision weight enum used by ``--weights imagenet`` (needs the network once; cached by torch.hub)
IMAGENET_WEIGHTS = {
    "resnet50": "ResNet50_Weights.IMAGENET1K_V1",
    "resnet101": "ResNet101_Weights.IMAGENET1K_V1",
    "mobilenet_v2": "MobileNet_V2_Weights.IMAGENET1K_V1",
}


def _check_name(name: str) -> None:
    if name not in BACKBONES:
        raise UserError(f"--backbone {name}: unknown backbone. Choose one of: {', '.join(BACKBONES)}.")


def _check_stride(output_stride: int) -> None:
    if output_stride not in (8, 16):
        raise UserError(f"--output-stride {output_stride}: must be 8 or 16.")


def torchvision_model(name: str, output_stride: int = 16, width_mult: float = 1.0) -> nn.Module:
    """The full torchvision classification model (random init), dilated for ``output_stride``."""
    import torchvision  # here, not at import: the command line reads model defaults without it

    _check_name(name)
    _check_stride(output_stride)
    if name.startswith("resnet"):
        if width_mult != 1.0:
            raise UserError(f"--width-mult {width_mult}: only MobileNetV2 supports a width multiplier. Use 1.0 with {name}.")
        dilate = [False, output_stride == 8, True]
        return getattr(torchvision.models, name)(weights=None, replace_stride_with_dilation=dilate)
    if width_mult <= 0:
        raise UserError(f"--width-mult {width_mult}: must be positive.")
    model = torchvision.models.mobilenet_v2(weights=None, width_mult=width_mult)
    _dilate_mobilenet(model.features, output_stride)
    return model


def _dilate_mobilenet(features: nn.Sequential, output_stride: int) -> None:
    """Remove the strides of blocks 14 (→ OS 16) and 7 (→ OS 8) and dilate the depthwise 3×3 convs after them."""
    # strided blocks of MobileNetV2's features: 0 (2), 2 (4), 4 (8), 7 (16), 14 (32)
    starts = [14] if output_stride == 16 else [7, 14]
    rate = 1
    for start in starts:
        rate *= 2
        end = 14 if start == 7 else len(features)
        for block in list(features)[start:end]:
            for module in block.modules():
                if isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3):
                    module.stride = (1, 1)
                    module.dilation = (rate, rate)
                    module.padding = (rate, rate)


class Backbone(nn.Module):
    """Feature extractor returning ``(low, high)`` (see the module docstring).

    Attributes:
        low_channels: channels of the stride-4 features.
        high_channels: channels of the stride-``output_stride`` features.
    """

    def __init__(self, name: str, output_stride: int = 16, width_mult: float = 1.0, model: nn.Module | None = None):
        super().__init__()
        model = model if model is not None else torchvision_model(name, output_stride, width_mult)
        self.name = name
        if name.startswith("resnet"):
            self.stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool, model.layer1)
            self.body = nn.Sequential(model.layer2, model.layer3, model.layer4)
            self.low_channels = model.layer1[-1].conv3.out_channels
            self.high_channels = model.layer4[-1].conv3.out_channels
        else:
            feats = model.features
            self.stem = nn.Sequential(*list(feats)[:4])
            self.body = nn.Sequential(*list(feats)[4:18])
            self.low_channels = feats[3].out_channels
            self.high_channels = feats[17].out_channels

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: ``B×3×H×W`` float (normalized). Returns ``(low B×C_l×H/4×W/4, high B×C_h×H/os×W/os)``."""
        low = self.stem(x)
        return low, self.body(low)


def load_state_dict_file(path: Path) -> dict[str, Tensor]:
    """Read a torchvision state-dict file (``torch.save(model.state_dict())``), CPU tensors."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: weights file not found. Pass a torchvision state-dict file or 'imagenet'.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is a bad file
        raise UserError(f"{path}: not a readable PyTorch state dict ({exc}). Save it with torch.save(model.state_dict(), PATH).") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: does not hold a state dict of tensors. Save it with torch.save(model.state_dict(), PATH).")
    return state


def load_backbone_weights(name: str, weights: str | Path | None, output_stride: int = 16, width_mult: float = 1.0) -> Backbone:
    """Build a backbone and initialise it.

    Args:
        name: ``resnet50``, ``resnet101`` or ``mobilenet_v2``.
        weights: ``None`` (random init, with a warning), ``"imagenet"`` (torchvision weights API:
            downloads once into the torch hub cache; the only path that needs a network), or the
            path of a torchvision state dict of the full classification model of this architecture
            (strict: every key and shape must match, else :class:`UserError`).
        output_stride: 16 or 8.
        width_mult: MobileNetV2 width multiplier (ImageNet weights exist for 1.0 only).
    """
    model = torchvision_model(name, output_stride, width_mult)
    if weights is None:
        warnings.warn(f"{name}: no --weights given, the backbone starts from random initialisation "
                      "(pass a torchvision state dict or 'imagenet' for ImageNet pre-training).", stacklevel=2)
    else:
        if str(weights) == "imagenet":
            import torchvision

            enum = torchvision.models.get_weight(IMAGENET_WEIGHTS[name])
            state = enum.get_state_dict(progress=False)
            source = f"torchvision {IMAGENET_WEIGHTS[name]}"
        else:
            state = load_state_dict_file(Path(weights))
            source = str(weights)
        _load_strict(model, state, source, name)
    return Backbone(name, output_stride, width_mult, model=model)


def _load_strict(model: nn.Module, state: dict[str, Tensor], source: str, name: str) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} shape mismatches (e.g. {k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)})")
        raise UserError(
            f"{source}: not a torchvision {name} state dict: {'; '.join(parts)}. "
            f"Pass the weights of torchvision.models.{name} (width 1.0) or choose the matching --backbone."
        )
    model.load_state_dict(state, strict=True)
