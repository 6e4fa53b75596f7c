"""Feature-induced segments of SPML (Ke et al., ICLR 2021, "Universal Weakly Supervised Segmentation by
Pixel-to-Segment Contrastive Learning", §3 and its released code; docs/methods.md §10).

Per image, spherical k-means clusters the vectors ``v_i = normalize([ê_i ; y_i − 0.5 ; x_i − 0.5])``
(``ê_i`` the unit pixel embedding, ``y_i, x_i`` the row / column scaled to [0, 1]) starting from a regular
G×G grid of clusters, then :func:`segments` splits the clusters by low-level region and by seed label so
that every segment is pure in both; :func:`segment_prototypes` gives each segment its unit mean.

All functions are batched tensor code (B images at once, no loop over pixels), the same on CPU and
CUDA. Pixels outside the validity mask (padding, void) take no part: their cluster / segment id is -1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from wsss.constants import IGNORE_INDEX

#: Grid side G of the initial clusters (G×G clusters; 6 on VOC in the SPML code, 12 on DensePose).
DEFAULT_GRID = 6
#: k-means iterations (one M-step then one E-step each; the SPML code).
DEFAULT_ITERATIONS = 10


def _coordinates(h: int, w: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Row and column of every pixel scaled to [0, 1] (``r / (h − 1)``; 0 for a single row), as
    ``h×w`` tensors of ``dtype``."""
    ys = torch.linspace(0.0, 1.0, h, device=device, dtype=dtype) if h > 1 else torch.zeros(1, device=device, dtype=dtype)
    xs = torch.linspace(0.0, 1.0, w, device=device, dtype=dtype) if w > 1 else torch.zeros(1, device=device, dtype=dtype)
    return ys[:, None].expand(h, w), xs[None, :].expand(h, w)


def kmeans_features(embedding: Tensor) -> Tensor:
    """The clustering vectors ``v = normalize([ê; y − 0.5; x − 0.5])``.

    embedding: ``B×d×H×W`` float (raw or unit; each pixel's vector is unit-normalised here).
    Returns ``B×(d+2)×H×W`` of the same dtype, unit along dim 1; differentiable.
    """
    b, _, h, w = embedding.shape
    unit = F.normalize(embedding, dim=1)
    ys, xs = _coordinates(h, w, embedding.device, embedding.dtype)
    position = torch.stack((ys - 0.5, xs - 0.5))[None].expand(b, 2, h, w)
    return F.normalize(torch.cat((unit, position), dim=1), dim=1)


def grid_labels(h: int, w: int, grid: int, device: torch.device | str = "cpu") -> Tensor:
    """The initial clusters: pixel (r, c) is in cell ``⌊r·G/h⌋·G + ⌊c·G/w⌋`` of a regular G×G grid.

    Returns ``h×w`` int64 in ``[0, G²)``. With G larger than h or w some cells hold no pixel; they stay
    empty clusters.
    """
    if grid < 1:
        raise ValueError(f"the k-means grid side must be at least 1, got {grid}")
    rows = torch.arange(h, device=device) * grid // h
    cols = torch.arange(w, device=device) * grid // w
    return rows[:, None] * grid + cols[None, :]


@dataclass(frozen=True)
class KMeansResult:
    """Result of :func:`spherical_kmeans`.

    - ``labels``: ``B×H×W`` int64 cluster of each pixel in ``[0, G²)``, -1 outside the validity mask.
    - ``prototypes``: ``B×G²×D`` unit means of the final clusters (zero rows for empty clusters), detached.
    - ``counts``: ``B×G²`` int64 pixels per final cluster.
    """

    labels: Tensor
    prototypes: Tensor
    counts: Tensor


def _cluster_means(v: Tensor, labels: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """M-step. v: ``B×N×D``; labels: ``B×N`` int64 (-1 = excluded). Returns the unit sums ``B×k×D``
    (zero for an empty cluster) and the counts ``B×k`` int64."""
    b, _, d = v.shape
    inside = labels >= 0
    index = labels.clamp(min=0)
    sums = v.new_zeros(b, k, d).scatter_add_(1, index[..., None].expand(-1, -1, d), v * inside[..., None])
    counts = torch.zeros(b, k, dtype=torch.int64, device=v.device).scatter_add_(1, index, inside.long())
    return F.normalize(sums, dim=2), counts


def spherical_kmeans(
    features: Tensor,
    valid: Tensor | None = None,
    grid: int = DEFAULT_GRID,
    iterations: int = DEFAULT_ITERATIONS,
) -> KMeansResult:
    """Spherical k-means per image, from the G×G grid (:func:`grid_labels`).

    Each of the ``iterations`` steps is an M-step ``μ_s = normalize(Σ_{i∈s} v_i)`` over the valid pixels
    followed by an E-step ``z_i = argmax_s μ_sᵀ v_i`` over the non-empty clusters (ties: the lowest
    cluster id). The assignment is discrete, so no gradient flows through it.

    features: ``B×D×H×W`` float, unit along dim 1 (e.g. :func:`kmeans_features`).
    valid: ``B×H×W`` bool, or None for all pixels; invalid pixels are left out of every mean and get -1.
    Returns a :class:`KMeansResult`.
    """
    if iterations < 0:
        raise ValueError(f"the number of k-means iterations must be at least 0, got {iterations}")
    b, d, h, w = features.shape
    k = grid * grid
    with torch.no_grad():
        v = features.detach().flatten(2).transpose(1, 2)  # B×N×D
        labels = grid_labels(h, w, grid, features.device).flatten()[None].expand(b, -1).clone()
        if valid is not None:
            if valid.shape != (b, h, w):
                raise ValueError(f"valid mask of shape {tuple(valid.shape)} for features of shape {tuple(features.shape)}")
            inside = valid.reshape(b, -1).bool()
            labels[~inside] = -1
        else:
            inside = torch.ones(b, h * w, dtype=torch.bool, device=features.device)
        for _ in range(iterations):
            prototypes, counts = _cluster_means(v, labels, k)
            similarity = torch.bmm(v, prototypes.transpose(1, 2))  # B×N×k
            similarity = similarity.masked_fill((counts == 0)[:, None, :], float("-inf"))
            labels = torch.where(inside, similarity.argmax(dim=2), torch.full_like(labels, -1))
        prototypes, counts = _cluster_means(v, labels, k)
    return KMeansResult(labels=labels.reshape(b, h, w), prototypes=prototypes, counts=counts)


@dataclass(frozen=True)
class Segments:
    """Segments of a batch (:func:`segments`), numbered across the batch in the order of
    (image, cluster, region, label).

    - ``ids``: ``B×H×W`` int64 segment of each pixel in ``[0, S)``, -1 for excluded pixels.
    - ``image``, ``cluster``, ``region``, ``label``: ``S`` int64, each segment's image index, k-means
      cluster, low-level region and seed label (:data:`~wsss.constants.IGNORE_INDEX` = unlabelled).
    - ``counts``: ``S`` int64 pixels per segment.
    """

    ids: Tensor
    image: Tensor
    cluster: Tensor
    region: Tensor
    label: Tensor
    counts: Tensor

    @property
    def count(self) -> int:
        """The number of segments S."""
        return int(self.image.numel())

    @property
    def labelled(self) -> Tensor:
        """``S`` bool: the segments with a seed label."""
        return self.label != IGNORE_INDEX


def segments(cluster: Tensor, superpixel: Tensor, seed_label: Tensor) -> Segments:
    """Split each image's clusters by low-level region and seed label: one segment per distinct
    (cluster, region, label) of an image, so each segment is pure in region and in label. The unlabelled
    value :data:`~wsss.constants.IGNORE_INDEX` is a label of its own.

    cluster: ``B×H×W`` int64 (:attr:`KMeansResult.labels`; -1 = excluded pixel).
    superpixel: ``B×H×W`` integer region ids (≥ 0), e.g. SLIC superpixels.
    seed_label: ``B×H×W`` integer seed labels (class ids, 255 unlabelled).
    Returns :class:`Segments`.
    """
    if not (cluster.shape == superpixel.shape == seed_label.shape) or cluster.dim() != 3:
        raise ValueError(
            f"cluster {tuple(cluster.shape)}, superpixel {tuple(superpixel.shape)} and seed label "
            f"{tuple(seed_label.shape)} maps must share one B×H×W shape"
        )
    b = cluster.shape[0]
    image = torch.arange(b, device=cluster.device)[:, None, None].expand_as(cluster)
    keys = torch.stack((image, cluster.long(), superpixel.long(), seed_label.long()), dim=-1).reshape(-1, 4)
    inside = keys[:, 1] >= 0
    unique, inverse, counts = torch.unique(keys[inside], dim=0, return_inverse=True, return_counts=True)
    ids = torch.full((keys.shape[0],), -1, dtype=torch.int64, device=cluster.device)
    ids[inside] = inverse
    return Segments(
        ids=ids.reshape(cluster.shape),
        image=unique[:, 0],
        cluster=unique[:, 1],
        region=unique[:, 2],
        label=unique[:, 3],
        counts=counts,
    )


def segment_prototypes(features: Tensor, segs: Segments) -> Tensor:
    """Unit prototypes ``μ_s = normalize(Σ_{i∈s} f̂_i)`` of the segments, ``f̂_i`` the unit-normalised
    pixel feature (pass the embedding for ``ê``-prototypes, :func:`kmeans_features` for the
    location-augmented ones of the low-level term). Differentiable with respect to ``features`` (batch
    prototypes carry gradient; detach them before storing them in a memory bank).

    features: ``B×D×H×W`` float; segs: :class:`Segments` of the same B×H×W.
    Returns ``S×D`` of the features' dtype.
    """
    b, d, h, w = features.shape
    if segs.ids.shape != (b, h, w):
        raise ValueError(f"segments of shape {tuple(segs.ids.shape)} for features of shape {tuple(features.shape)}")
    unit = F.normalize(features, dim=1).permute(0, 2, 3, 1).reshape(-1, d)
    ids = segs.ids.reshape(-1)
    inside = ids >= 0
    sums = unit.new_zeros(segs.count, d).index_add(0, ids[inside], unit[inside])
    return F.normalize(sums, dim=1)
