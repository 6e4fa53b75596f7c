"""SPML's cross-image nearest-neighbour relabelling of the tag pipeline (Ke et al. 2021, appendix A.4 and
the SPML code's tag script; docs/methods.md §10.6).

Given pseudo-labels of the training images (the random-walk labels of CAM seeds in round 1, a classifier's
predictions in round 2) and the SPML embedding:

1. **Memory** (:func:`image_prototypes`, :func:`labelled_prototypes`): per training image and scale of
   ``memory_scales`` (0.5, 1, 1.5; no mirror), spherical k-means of the unit embedding at stride 4 on
   ``[ê; y; x]`` from a G×G grid (**G = 12**, 144 clusters; :mod:`wsss.spml.kmeans`), each cluster a
   prototype ``μ = normalize(Σ ê)`` labelled with the **majority** pseudo-label of its pixels (labels resized
   to the embedding by nearest neighbour). Prototypes whose pixels are all unlabelled are dropped.
2. **Votes** (:func:`vote_scores`): per image, scale of ``scales`` (0.5, 1, 1.5, 2) and mirror, the same
   clustering; each cluster's prototype retrieves its **top-20** memory prototypes by cosine similarity and
   gets the fraction of them with each label; its pixels take that distribution.
3. **Class maps** (:func:`relabel_scores`): the vote maps resized to the image (bilinear, ``align_corners=True``),
   un-mirrored and averaged over the passes; each class present in the image's seed map divided by
   ``max(its spatial maximum, 0.15)``, the other classes left as they are (the code's normalisation); then
   per pixel divided by the sum over classes. DenseCRF and the arg-max follow in the stage
   (``wsss spml-relabel``).

Differences from the code (stated): clustering at stride 4 of each scaled image (the code resizes the
embedding to the scaled image first), the network on the whole scaled image (the code: 512² windows).
The memory holds ``images × scales × G²`` prototypes (d floats each).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from wsss.constants import IGNORE_INDEX
from wsss.errors import UserError
from wsss.inference import scaled_size
from wsss.spml.kmeans import DEFAULT_ITERATIONS, kmeans_features, segment_prototypes, segments, spherical_kmeans
from wsss.spml.random_walk import to_grid
from wsss.validation import check_numbers

#: ``B×3×H×W`` RGB 0–255 → unit embedding ``B×d×h×w`` (stride 4)
EmbeddingFn = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class RelabelConfig:
    """Options of the relabelling (defaults: the SPML code's tag script).

    Attributes:
        grid: k-means grid side G (12: 144 clusters per image and scale).
        iterations: k-means iterations (10).
        top_k: memory prototypes retrieved per cluster (20).
        memory_scales: image scales of the memory prototypes (0.5, 1, 1.5; no mirror).
        scales: image scales of the votes (0.5, 1, 1.5, 2), each also mirrored when ``flip``.
        flip: mirror pass at each vote scale (on).
        floor: lower bound of the per-class maximum a present class is divided by (0.15).
    """

    grid: int = 12
    iterations: int = DEFAULT_ITERATIONS
    top_k: int = 20
    memory_scales: tuple[float, ...] = (0.5, 1.0, 1.5)
    scales: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)
    flip: bool = True
    floor: float = 0.15

    def __post_init__(self) -> None:
        check_numbers([
            ("--grid", self.grid, 1, None, {"integer": True}),
            ("--kmeans-iterations", self.iterations, 0, None, {"integer": True}),
            ("--top-k", self.top_k, 1, None, {"integer": True}),
            ("--floor", self.floor, 0, 1, {"low_open": True}),
        ])
        for flag, values in (("--memory-scales", self.memory_scales), ("--scales", self.scales)):
            if not values or any(not (0 < s <= 8) for s in values):
                raise UserError(f"{flag} {','.join(f'{s:g}' for s in values)}: give one or more scales in (0, 8].")

    def to_dict(self) -> dict:
        return {**asdict(self), "memory_scales": list(self.memory_scales), "scales": list(self.scales)}


def image_prototypes(embedding: Tensor, grid: int, iterations: int) -> tuple[Tensor, Tensor]:
    """k-means clusters of one image's unit embedding and their prototypes.

    Args:
        embedding: ``1×d×h×w`` float unit embedding.
        grid, iterations: k-means grid side and iterations.

    Returns:
        ``(prototypes C×d float, cluster 1×h×w int64 in [0, C))``: the non-empty clusters, renumbered.
    """
    clusters = spherical_kmeans(kmeans_features(embedding), grid=grid, iterations=iterations).labels
    zeros = torch.zeros_like(clusters)
    segs = segments(clusters, zeros, zeros)  # one segment per non-empty cluster
    return segment_prototypes(embedding, segs), segs.ids


def majority_labels(cluster: Tensor, label: Tensor, count: int, num_classes: int) -> Tensor:
    """Each cluster's most frequent label (lowest class on ties), 255 for a cluster without labelled pixel.

    Args:
        cluster: ``N`` int64 in ``[0, count)``.
        label: ``N`` int64 classes ``0..K-1`` or 255.
        count: the number of clusters C.
        num_classes: K.

    Returns:
        ``C`` int64.
    """
    known = label != IGNORE_INDEX
    hist = torch.zeros(count * num_classes, dtype=torch.int64, device=cluster.device)
    hist.index_add_(0, cluster[known] * num_classes + label[known], torch.ones_like(cluster[known]))
    hist = hist.view(count, num_classes)
    best = hist.argmax(dim=1)
    return torch.where(hist.sum(dim=1) > 0, best, torch.full_like(best, IGNORE_INDEX))


def labelled_prototypes(embed: EmbeddingFn, image: Tensor, label: Tensor, config: RelabelConfig,
                        num_classes: int) -> tuple[Tensor, Tensor]:
    """One training image's memory prototypes (module docstring, step 1).

    Args:
        embed: the embedding network.
        image: ``1×3×H×W`` float RGB 0–255.
        label: ``H×W`` int64 pseudo-labels (classes or 255).
        config: options (``memory_scales``, ``grid``, ``iterations``).
        num_classes: K.

    Returns:
        ``(prototypes M×d float32, labels M int64)``, the clusters with a label, over all memory scales.
    """
    protos, labels = [], []
    size = tuple(image.shape[-2:])
    for scale in config.memory_scales:
        x = to_grid(image, scaled_size(size, scale)) if scale != 1 else image
        emb = F.normalize(embed(x).float(), dim=1)
        p, ids = image_prototypes(emb, config.grid, config.iterations)
        lab = F.interpolate(label[None, None].float(), size=ids.shape[-2:], mode="nearest")[0, 0].long()
        maj = majority_labels(ids.reshape(-1), lab.reshape(-1), p.shape[0], num_classes)
        keep = maj != IGNORE_INDEX
        protos.append(p[keep])
        labels.append(maj[keep])
    return torch.cat(protos), torch.cat(labels)


def vote_scores(prototypes: Tensor, memory: Tensor, memory_labels: Tensor, top_k: int, num_classes: int,
                chunk: int = 4096) -> Tensor:
    """Fraction of each prototype's ``top_k`` most similar memory prototypes with each label.

    Args:
        prototypes: ``C×d`` unit.
        memory: ``M×d`` unit.
        memory_labels: ``M`` int64 classes.
        top_k: k (at most M are used).
        num_classes: K.
        chunk: memory prototypes compared at once per cluster block (bounds the ``C×chunk`` similarities).

    Returns:
        ``C×K`` float32, rows summing to 1.
    """
    k = min(top_k, memory.shape[0])
    best_sim = best_idx = None
    for start in range(0, memory.shape[0], chunk):
        sim = prototypes @ memory[start:start + chunk].T  # C×m
        idx = torch.arange(start, start + sim.shape[1], device=sim.device).expand_as(sim)
        if best_sim is not None:
            sim, idx = torch.cat((best_sim, sim), dim=1), torch.cat((best_idx, idx), dim=1)
        best_sim, pos = sim.topk(min(k, sim.shape[1]), dim=1)
        best_idx = idx.gather(1, pos)
    votes = F.one_hot(memory_labels[best_idx], num_classes).float()  # C×k×K
    return votes.mean(dim=1)


def relabel_scores(embed: EmbeddingFn, image: Tensor, present: Tensor, memory: Tensor, memory_labels: Tensor,
                   config: RelabelConfig) -> Tensor:
    """The relabelled class distributions of one image before the CRF (module docstring, steps 2–3).

    Args:
        embed: the embedding network.
        image: ``1×3×H×W`` float RGB 0–255.
        present: ``K`` bool, the classes of the image's seed map.
        memory, memory_labels: ``M×d`` unit prototypes and their ``M`` labels.
        config: options.

    Returns:
        ``K×H×W`` float32, summing to 1 per pixel.
    """
    k = present.shape[0]
    size = tuple(image.shape[-2:])
    total, passes = None, 0
    for scale in config.scales:
        x = to_grid(image, scaled_size(size, scale)) if scale != 1 else image
        for mirrored in ((False, True) if config.flip else (False,)):
            emb = F.normalize(embed(x.flip(-1) if mirrored else x).float(), dim=1)
            p, ids = image_prototypes(emb, config.grid, config.iterations)
            votes = vote_scores(p, memory, memory_labels, config.top_k, k)  # C×K
            maps = votes[ids[0]].permute(2, 0, 1)[None]  # 1×K×h×w
            maps = to_grid(maps, size)
            maps = maps.flip(-1) if mirrored else maps
            total = maps if total is None else total + maps
            passes += 1
    mean = total[0] / passes
    peak = mean.flatten(1).amax(dim=1).clamp_min(config.floor)
    peak = torch.where(present.to(mean.device), peak, torch.ones_like(peak))
    scores = (mean / peak[:, None, None]).clamp_min(0.0)
    return scores / scores.sum(dim=0, keepdim=True).clamp_min(torch.finfo(scores.dtype).tiny)


__all__ = ["EmbeddingFn", "RelabelConfig", "image_prototypes", "labelled_prototypes", "majority_labels",
           "relabel_scores", "vote_scores"]
