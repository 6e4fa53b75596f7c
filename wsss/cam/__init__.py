"""Class activation maps from image tags (cam.md): classifier, GAP / ISL / FSL losses, multi-scale
export, CAM → seeds, background-threshold sweep.

The training loop and the ``wsss cam`` commands live elsewhere (``wsss.training``, ``wsss_cli``);
this package holds the maths, importable without them.
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
