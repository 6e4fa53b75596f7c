"""Class activation maps from image tags (docs/methods.md §6): classifier, GAP / ISL / FSL losses, multi-scale
export, CAM → seeds, background-threshold sweep.

Training: :mod:`wsss.cam.training` (``CamTask`` on the toolkit's one loop, ``wsss.training.run_task``;
backbones and ``--weights`` from :mod:`wsss.models.backbones`). Stages: :mod:`wsss.stages.cam`
(``wsss cam train | export | seeds``). ``build_backbone`` / ``build_cam_classifier`` here are the
weight-free torchvision feature extractors used by the benchmarks and the maths tests; the
training stage uses :func:`wsss.cam.training.build_cam_model`.
"""

from wsss.cam.classifier import (CamClassifier, build_backbone, build_cam_classifier, foreground_scores,
                                 posterior_probs)
from wsss.cam.export import DEFAULT_SCALES, export_cams
from wsss.cam.losses import (classification_loss, feature_similarity_loss, fsl_gate, fsl_image, gap_loss,
                             isl_loss, max_normalized_cam, tags_to_targets)
from wsss.cam.seeds import affinity_seeds, boxes_to_seeds, densecrf_refine, threshold_seeds
from wsss.cam.threshold_sweep import ThresholdSweep, sweep_thresholds

__all__ = [
    "CamClassifier", "build_backbone", "build_cam_classifier", "foreground_scores", "posterior_probs",
    "DEFAULT_SCALES", "export_cams",
    "classification_loss", "feature_similarity_loss", "fsl_gate", "fsl_image", "gap_loss", "isl_loss",
    "max_normalized_cam", "tags_to_targets",
    "affinity_seeds", "boxes_to_seeds", "densecrf_refine", "threshold_seeds",
    "ThresholdSweep", "sweep_thresholds",
]
