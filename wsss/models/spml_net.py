"""The SPML embedding network (Ke et al. 2021; docs/methods.md §10), on any backbone of
:mod:`wsss.models.backbones`.

``image B×3×H×W`` (float RGB 0–255, ImageNet-normalised inside) → backbone at output stride 8
(``high``, dilated as the SPML code's DeepLab-v2) → embedding head: the **sum** of four 3×3 atrous
convolutions (rates 6 / 12 / 18 / 24, ``C_high → d``, with bias, no batch norm nor ReLU) → bilinear
upsampling (``align_corners=True``) to stride 4 (the grid of the backbone's ``low`` features,
``⌈H/4⌉×⌈W/4⌉``) → unit normalisation along the channels (the SPML code normalises wherever the
embedding is used; the network returns it normalised, which is the same).

The initial classifier, trained jointly with the embedding on **detached** unit embeddings (so its
gradient never reaches the embedding), is the SPML code's: 3×3 conv ``d → 2d`` (no bias) + BN + ReLU +
Dropout(``dropout``: 0.75 for the initial classifier) + 1×1 conv ``2d → K``, at stride 4.

:meth:`SPMLNet.forward` returns ``{"embedding": B×d×h×w unit float, "logits": B×K×h×w float}``
(``h×w`` the stride-4 grid); :meth:`SPMLNet.class_logits` the logits upsampled to the input size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from wsss.models.backbones import DEFAULT_BACKBONE, Backbone
from wsss.models.deeplabv3plus import head_parameters, register_input_normalization

#: embedding dimension d (SPML code and paper, VOC: 64; DensePose: 32)
EMBEDDING_DIM = 64
#: atrous rates of the four summed 3×3 convolutions of the embedding head (SPML code, DeepLab-v2 ASPP)
ATROUS_RATES = (6, 12, 18, 24)
#: output stride of the backbone (SPML code: DeepLab-v2 ResNet-101 at stride 8)
OUTPUT_STRIDE = 8
#: dropout of the initial classifier trained jointly with the embedding (SPML code)
INITIAL_DROPOUT = 0.75
#: the ``head`` of an SPML model configuration
HEAD = "spml"


@dataclass(frozen=True)
class SPMLModelConfig:
    """What rebuilds an :class:`SPMLNet` (stored in checkpoints as ``model_config``).

    Attributes:
        num_classes: K (including background).
        backbone: a name of :data:`wsss.models.BACKBONES`.
        output_stride: of the backbone (8, the SPML code).
        width_mult: MobileNetV2 width multiplier (1.0 for the other backbones).
        embedding_dim: d (64).
        dropout: of the classifier (0.75, the initial classifier).
        head: always ``"spml"`` (tells an SPML run's model apart from the segmentation networks).
    """

    num_classes: int
    backbone: str = DEFAULT_BACKBONE
    output_stride: int = OUTPUT_STRIDE
    width_mult: float = 1.0
    embedding_dim: int = EMBEDDING_DIM
    dropout: float = INITIAL_DROPOUT
    head: str = HEAD

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class EmbeddingHead(nn.Module):
    """Sum of 3×3 atrous convolutions (with bias) ``B×C×h×w → B×d×h×w``; no normalisation."""

    def __init__(self, cin: int, dim: int, rates: tuple[int, ...] = ATROUS_RATES):
        super().__init__()
        self.branches = nn.ModuleList(nn.Conv2d(cin, dim, 3, padding=r, dilation=r, bias=True) for r in rates)

    def forward(self, x: Tensor) -> Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


class SPMLClassifier(nn.Module):
    """The SPML classifier on unit embeddings: ``B×d×h×w → B×K×h×w`` logits (module docstring)."""

    def __init__(self, dim: int, num_classes: int, dropout: float = INITIAL_DROPOUT):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(dim, 2 * dim, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Conv2d(2 * dim, num_classes, 1),
        )

    def forward(self, embedding: Tensor) -> Tensor:
        return self.layers(embedding)


class SPMLNet(nn.Module):
    """The SPML network (module docstring). ``backbone``: an initialised :class:`Backbone` at
    ``config.output_stride`` (default: random initialisation)."""

    def __init__(self, config: SPMLModelConfig, backbone: Backbone | None = None):
        super().__init__()
        self.config = config
        self.backbone = backbone if backbone is not None else Backbone(config.backbone, config.output_stride, config.width_mult)
        self.embed = EmbeddingHead(self.backbone.high_channels, config.embedding_dim)
        self.classifier = SPMLClassifier(config.embedding_dim, config.num_classes, config.dropout)
        register_input_normalization(self)

    def head_parameters(self) -> list[nn.Parameter]:
        """Embedding head and classifier (the SPML code's ×10 learning-rate group)."""
        return head_parameters(self)

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())

    def embedding(self, image: Tensor) -> Tensor:
        """image ``B×3×H×W`` float RGB 0–255 → unit embedding ``B×d×⌈H/4⌉×⌈W/4⌉`` (float; gradient flows)."""
        low, high = self.backbone((image - self.mean) / self.std)
        e = F.interpolate(self.embed(high), size=low.shape[-2:], mode="bilinear", align_corners=True)
        return F.normalize(e, dim=1)

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        """image ``B×3×H×W`` float RGB 0–255 → ``{"embedding": B×d×h×w unit, "logits": B×K×h×w}`` at
        stride 4; the logits are the classifier's on the **detached** embedding."""
        e = self.embedding(image)
        return {"embedding": e, "logits": self.classifier(e.detach())}

    def class_logits(self, image: Tensor) -> Tensor:
        """The classifier's logits upsampled bilinearly (``align_corners=True``) to the input size:
        ``B×K×H×W`` float (validation, CE against full-size seeds)."""
        logits = self.forward(image)["logits"]
        return F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=True)


__all__ = ["ATROUS_RATES", "EMBEDDING_DIM", "EmbeddingHead", "HEAD", "INITIAL_DROPOUT", "OUTPUT_STRIDE",
           "SPMLClassifier", "SPMLModelConfig", "SPMLNet"]
