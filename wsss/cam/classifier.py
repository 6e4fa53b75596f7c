"""Multi-label classification network whose last layer gives class scores per feature-grid cell.

Method: docs/methods.md §6.1 and §6.4. The head is a 1×1
convolution on top of any backbone that maps a ``B×3×H×W`` image batch to a ``B×C_f×h×w``
feature map; its output ``s`` (``B×K×h×w``) are the class scores ``s_c(i, j)`` whose
max-normalized form is the CAM.

Channel layout (used by every function of :mod:`wsss.cam`):

- ``posterior="binomial"`` (default, the paper's proposal): ``K = C`` foreground channels, channel
  ``c`` holds label value ``c + 1`` (class 0 = background, docs/methods.md §1). Posterior
  ``b_c = sigmoid(s_c)`` per channel.
- ``posterior="multinomial"`` (original ISL/FSL, kept for comparison): ``K = C + 1``, channel 0 is
  background and channel ``c`` holds label value ``c``. Posterior ``a = softmax_k(s)`` over all
  ``C + 1`` channels.

Foreground class ``c`` therefore always has the same head weights in both layouts (row ``c`` of a
binomial head = row ``c + 1`` of a multinomial one); only the extra background row and the posterior
differ.

Backbones: :func:`build_backbone` makes torchvision ResNet-50/101 (layer3/layer4 dilated for output
stride 8 or 16 via ``replace_stride_with_dilation``) and MobileNetV2 (its stride-2 convolutions
after the requested stride replaced by dilation), always with ``weights=None``. Module names follow
torchvision's models, so ``backbone.load_state_dict(torchvision_state_dict, strict=False)`` loads
every ImageNet weight except the discarded classification layer (``fc`` / ``classifier``).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from wsss.errors import UserError

POSTERIORS = ("binomial", "multinomial")
BACKBONES = ("resnet50", "resnet101", "mobilenet_v2")
OUTPUT_STRIDES = (8, 16, 32)

#: SEAM's last layer: Dropout2d(0.5) then a bias-free 1×1 convolution (docs/methods.md §6.4).
DEFAULT_DROPOUT = 0.5


def check_posterior(posterior: str) -> str:
    """Return ``posterior`` if it is one of :data:`POSTERIORS`, else raise :class:`UserError`."""
    if posterior not in POSTERIORS:
        raise UserError(f"option --posterior: unknown posterior {posterior!r}. Use one of {', '.join(POSTERIORS)}.")
    return posterior


def num_channels(num_classes: int, posterior: str = "binomial") -> int:
    """Number of score channels ``K`` for ``C = num_classes`` foreground classes."""
    return num_classes + (1 if check_posterior(posterior) == "multinomial" else 0)


def foreground_scores(scores: Tensor, posterior: str = "binomial") -> Tensor:
    """The ``C`` foreground channels of ``scores``.

    ``scores``: ``B×K×h×w`` float (any float dtype). Returns ``B×C×h×w`` (a view): ``scores`` itself
    for the binomial layout, ``scores[:, 1:]`` for the multinomial one.
    """
    return scores[:, 1:] if check_posterior(posterior) == "multinomial" else scores


def posterior_probs(scores: Tensor, posterior: str = "binomial") -> Tensor:
    """Pixel-wise posterior of the scores.

    ``scores``: ``B×K×h×w`` float. Returns ``B×K×h×w`` of the same dtype: ``sigmoid(s)`` per channel
    (binomial, eq. 14) or ``softmax`` over the ``K = C + 1`` channels, background included
    (multinomial, eq. 5).
    """
    if check_posterior(posterior) == "multinomial":
        return torch.softmax(scores, dim=1)
    return torch.sigmoid(scores)


class CamClassifier(nn.Module):
    """Backbone + (Dropout2d) + 1×1 convolution giving class scores on the feature grid.

    Args:
        backbone: module mapping ``B×3×H×W`` float images to a ``B×C_f×h×w`` feature map.
        in_channels: ``C_f``.
        num_classes: ``C`` foreground classes (VOC: 20).
        posterior: ``"binomial"`` (default, no background channel) or ``"multinomial"`` (adds
            background channel 0).
        dropout: Dropout2d probability before the head (default 0.5, SEAM's; 0 disables).
        bias: whether the 1×1 convolution has a bias (default False, SEAM's).

    The head weight is Xavier-uniform initialised (toolkit choice, as SEAM's new layer); the
    backbone is left as given. ``forward`` returns the raw scores ``B×K×h×w``.
    """

    def __init__(self, backbone: nn.Module, in_channels: int, num_classes: int, posterior: str = "binomial",
                 dropout: float = DEFAULT_DROPOUT, bias: bool = False):
        super().__init__()
        if num_classes < 1:
            raise UserError(f"option --num-classes: need at least one foreground class, got {num_classes}. Check the dataset's class list.")
        self.posterior_kind = check_posterior(posterior)
        self.num_classes = int(num_classes)
        self.backbone = backbone
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Conv2d(in_channels, num_channels(num_classes, posterior), kernel_size=1, bias=bias)
        nn.init.xavier_uniform_(self.head.weight)
        if bias:
            nn.init.zeros_(self.head.bias)

    @property
    def has_background(self) -> bool:
        """True for the multinomial layout (channel 0 = background)."""
        return self.posterior_kind == "multinomial"

    def features(self, x: Tensor) -> Tensor:
        """Backbone features: ``B×3×H×W`` → ``B×C_f×h×w``."""
        return self.backbone(x)

    def scores_from_features(self, feats: Tensor) -> Tensor:
        """Head on given features: ``B×C_f×h×w`` → scores ``B×K×h×w``."""
        return self.head(self.dropout(feats))

    def forward(self, x: Tensor) -> Tensor:
        """Scores ``s``: ``B×3×H×W`` float → ``B×K×h×w`` float."""
        return self.scores_from_features(self.features(x))

    def foreground(self, scores: Tensor) -> Tensor:
        """Foreground channels of ``scores``: ``B×K×h×w`` → ``B×C×h×w``."""
        return foreground_scores(scores, self.posterior_kind)

    def posterior(self, scores: Tensor) -> Tensor:
        """Posterior of ``scores`` (``B×K×h×w`` → ``B×K×h×w``): sigmoid or softmax, see module doc."""
        return posterior_probs(scores, self.posterior_kind)

    def cam(self, x: Tensor) -> Tensor:
        """Foreground scores for CAM export: ``B×3×H×W`` → ``B×C×h×w``."""
        return self.foreground(self(x))


# -- backbones -------------------------------------------------------------------------------

class ResNetFeatures(nn.Sequential):
    """torchvision ResNet without its pooling and ``fc``: ``B×3×H×W`` → ``B×2048×H/os×W/os``.

    Children keep torchvision's names (``conv1`` … ``layer4``) so its state dicts load with
    ``strict=False``.
    """

    out_channels = 2048


class MobileNetV2Features(nn.Module):
    """torchvision MobileNetV2 ``features``: ``B×3×H×W`` → ``B×1280×H/os×W/os``.

    Kept under the attribute ``features`` so torchvision's state dict keys match.
    """

    out_channels = 1280

    def __init__(self, features: nn.Module):
        super().__init__()
        self.features = features

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


def _check_stride(output_stride: int) -> None:
    if output_stride not in OUTPUT_STRIDES:
        raise UserError(f"option --output-stride: {output_stride} is not supported. Use one of {', '.join(map(str, OUTPUT_STRIDES))}.")


def dilate_convolutions(module: nn.Module, output_stride: int) -> nn.Module:
    """Replace the stride-2 convolutions that would take the stride past ``output_stride`` by
    dilation (in place; returns ``module``).

    Walks ``module.modules()`` in registration order, which must be the execution order (true
    for torchvision's MobileNetV2 ``features``). A removed stride-2 convolution keeps the current
    dilation; every later convolution with a kernel larger than 1 gets the doubled dilation and
    a padding that keeps the spatial size ("same" for odd kernels), as DeepLab does.
    """
    _check_stride(output_stride)
    stride, dilation = 1, 1
    for m in module.modules():
        if not isinstance(m, nn.Conv2d):
            continue
        k = m.kernel_size[0]
        s = m.stride[0]
        this_dilation = dilation
        if s > 1:
            if stride * s > output_stride:
                m.stride = (1, 1)
                dilation *= s
            else:
                stride *= s
        if k > 1:
            m.dilation = (this_dilation, this_dilation)
            m.padding = (this_dilation * (k - 1) // 2, this_dilation * (k - 1) // 2)
    return module


def build_backbone(name: str = "resnet50", output_stride: int = 8) -> nn.Module:
    """A torchvision backbone without weights (``weights=None``) at the given output stride.

    ``name``: ``"resnet50"`` / ``"resnet101"`` (stride 8: layer3 and layer4 dilated; 16: layer4;
    32: none, via ``replace_stride_with_dilation``) or ``"mobilenet_v2"``. Default stride 8: the
    CAM grid of docs/methods.md §6 (56×56 for a 448 crop). The returned module has ``out_channels``.
    """
    import torchvision

    _check_stride(output_stride)
    if name in ("resnet50", "resnet101"):
        dilate = {8: [False, True, True], 16: [False, False, True], 32: [False, False, False]}[output_stride]
        net = getattr(torchvision.models, name)(weights=None, replace_stride_with_dilation=dilate)
        names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
        return ResNetFeatures(OrderedDict((n, getattr(net, n)) for n in names))
    if name == "mobilenet_v2":
        net = torchvision.models.mobilenet_v2(weights=None)
        return MobileNetV2Features(dilate_convolutions(net.features, output_stride))
    raise UserError(f"option --backbone: unknown backbone {name!r}. Use one of {', '.join(BACKBONES)}.")


def build_cam_classifier(num_classes: int, backbone: str = "resnet50", output_stride: int = 8,
                         posterior: str = "binomial", dropout: float = DEFAULT_DROPOUT,
                         bias: bool = False) -> CamClassifier:
    """:class:`CamClassifier` on :func:`build_backbone` (no pretrained weights are loaded here)."""
    net = build_backbone(backbone, output_stride)
    return CamClassifier(net, net.out_channels, num_classes, posterior=posterior, dropout=dropout, bias=bias)
