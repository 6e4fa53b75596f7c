"""SPML building blocks (Ke et al., ICLR 2021, "Universal Weakly Supervised Segmentation by
Pixel-to-Segment Contrastive Learning"; docs/methods.md §10).

- :mod:`wsss.spml.kmeans` — per-image spherical k-means on ``[ê; y; x]`` from a G×G grid
  (:func:`spherical_kmeans`), segments = cluster × low-level region × seed label (:func:`segments`)
  and their unit prototypes (:func:`segment_prototypes`).

- :mod:`wsss.spml.memory` — the memory bank of the previous batches' segments (:class:`SegmentMemory`).

The contrastive loss is :mod:`wsss.losses.spml`, the network :mod:`wsss.models.spml_net`, the training
task (``wsss train --loss spml``) :mod:`wsss.training.spml`.
"""

from wsss.spml.kmeans import (
    DEFAULT_GRID,
    DEFAULT_ITERATIONS,
    KMeansResult,
    Segments,
    grid_labels,
    kmeans_features,
    segment_prototypes,
    segments,
    spherical_kmeans,
)

__all__ = [
    "DEFAULT_GRID",
    "DEFAULT_ITERATIONS",
    "KMeansResult",
    "Segments",
    "grid_labels",
    "kmeans_features",
    "segment_prototypes",
    "segments",
    "spherical_kmeans",
]
