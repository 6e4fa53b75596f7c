"""The SPML final classifier (Ke et al. 2021, "Inference and testing"; docs/methods.md §10.5): a fresh
:class:`~wsss.models.spml_net.SPMLClassifier` (dropout 0.65) on the **frozen** unit embedding of a trained
:class:`~wsss.models.spml_net.SPMLNet`, trained on the random-walk pseudo-labels.

``image B×3×H×W`` (float RGB 0–255) → the SPML network's unit embedding at stride 4, without gradient and
with its batch norms in eval mode whatever the module's mode → classifier → logits upsampled bilinearly
(``align_corners=True``) to the input size: ``B×K×H×W``, like every segmentation network of the toolkit,
so ``wsss predict`` and the training validation use it unchanged. The SPML network's own (initial)
classifier is kept, unused, so that its weights load as saved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsss.models.spml_net import SPMLClassifier, SPMLModelConfig, SPMLNet

#: dropout of the final classifier (SPML code)
FINAL_DROPOUT = 0.65
#: the ``head`` of a final classifier's model configuration
FINAL_HEAD = "spml-final"


@dataclass(frozen=True)
class SPMLFinalConfig:
    """What rebuilds a :class:`SPMLFinal` (stored in checkpoints as ``model_config``).

    Attributes:
        embedding: the configuration of the frozen SPML network.
        dropout: of the final classifier (0.65).
    """

    embedding: SPMLModelConfig
    dropout: float = FINAL_DROPOUT

    @property
    def num_classes(self) -> int:
        return self.embedding.num_classes

    @property
    def backbone(self) -> str:
        return self.embedding.backbone

    def to_dict(self) -> dict[str, Any]:
        return {"head": FINAL_HEAD, "embedding": self.embedding.to_dict(), "dropout": float(self.dropout)}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> "SPMLFinalConfig":
        return cls(embedding=SPMLModelConfig(**record["embedding"]), dropout=float(record.get("dropout", FINAL_DROPOUT)))


class SPMLFinal(nn.Module):
    """Final classifier on a frozen SPML embedding (module docstring)."""

    def __init__(self, config: SPMLFinalConfig):
        super().__init__()
        self.config = config
        self.net = SPMLNet(config.embedding)
        self.net.requires_grad_(False)
        self.net.eval()
        self.classifier = SPMLClassifier(config.embedding.embedding_dim, config.num_classes, config.dropout)

    def train(self, mode: bool = True) -> "SPMLFinal":
        super().train(mode)
        self.net.eval()  # frozen: batch-norm statistics and dropout stay as trained
        return self

    def head_parameters(self) -> list[nn.Parameter]:
        """The trained parameters: the final classifier's."""
        return list(self.classifier.parameters())

    def forward(self, image: Tensor) -> Tensor:
        """image ``B×3×H×W`` float RGB 0–255 → logits ``B×K×H×W`` float (gradient reaches the classifier only)."""
        with torch.no_grad():
            e = self.net.embedding(image)
        logits = self.classifier(e)
        return F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=True)


class SPMLInitial(nn.Module):
    """The initial classifier of an SPML run as a segmentation network: ``B×3×H×W`` RGB 0–255 →
    ``B×K×H×W`` logits (:meth:`SPMLNet.class_logits`): ``wsss predict --initial-classifier`` and the validation
    of ``wsss train --loss spml``."""

    def __init__(self, net: SPMLNet):
        super().__init__()
        self.net = net
        self.config = net.config

    def forward(self, image: Tensor) -> Tensor:
        return self.net.class_logits(image)


__all__ = ["FINAL_DROPOUT", "FINAL_HEAD", "SPMLFinal", "SPMLFinalConfig", "SPMLInitial"]
