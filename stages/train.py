"""Stage ``train``: images + seeds (or dense masks, or pseudo-labels) → a run directory with checkpoints.

``run(TrainConfig(...)) -> RUN`` (the run directory; its ``last.pt`` feeds ``wsss predict``). The work
is in :mod:`wsss.training`; options, defaults and their sources are documented on
:class:`wsss.training.segmentation.TrainConfig` and :mod:`wsss.losses.registry`.
"""

from __future__ import annotations

from pathlib import Path

from wsss.training.segmentation import TrainConfig, train

__all__ = ["TrainConfig", "run"]


def run(config: TrainConfig) -> Path:
    """Train; returns the run directory."""
    return train(config)
