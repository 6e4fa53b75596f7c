"""The SPML pixel-to-segment contrastive loss (Ke et al. 2021, eqs. (1)–(3) and its released code;
docs/methods.md §10).

For pixel ``i`` with unit feature ``f_i``, own segment ``z_i``, positive segments ``C⁺`` and negative
segments ``C⁻`` of a relation with concentration ``κ`` (eq. 3)::

    L_i = −ln( Σ_{s∈C⁺} exp(κ μ_sᵀ f_i) / Σ_{s∈C⁺∪C⁻} exp(κ μ_sᵀ f_i) )

where ``C⁺`` **excludes** ``z_i``; when no other positive segment exists ``C⁺ = {z_i}``, which is SegSort's
``−ln p(z_i | i)`` (eq. 2). Relations (:func:`image_similarity_term`, :func:`annotation_term`,
:func:`cooccurrence_term`, :func:`affinity_term`):

- ``img``: per image, every valid pixel against the segments of its image on the location-augmented
  vectors ``v`` and their prototypes; positives: the segments of i's low-level region; negatives: those
  of the image's other regions. Reduction: the mean over each image's pixels, then over the images.
- ``ann``: labelled valid pixels against the labelled segments of the batch and the memory bank;
  positives: the segments with i's label; negatives: the labelled segments with other labels.
  Reduction: the mean over the batch's labelled pixels.
- ``occ``: the valid pixels of images with foreground tags (the foreground classes of their seed map)
  against every segment of the batch and the memory bank; positives: the segments of images whose tags
  intersect i's image's; negatives: the others. Pixels of an image without foreground tags are skipped.
  Reduction: the mean over the counted pixels.
- ``aff`` (off by default): each unlabelled batch segment takes the label of its nearest labelled batch
  segment (largest ``μ_sᵀ μ_t``, no gradient); every valid pixel against the batch's segments,
  positives / negatives by that label. Reduction: the mean over the valid pixels.

Each relation returns a :class:`~wsss.losses.term.Term` (its weight × the sum, and the count it is averaged
over). Memory and time: every relation builds one ``N×S`` similarity matrix (``N`` its pixels, ``S`` its
segments) by blocks of rows, exponentiated once and kept for the backward (:func:`contrastive_losses`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from wsss.constants import IGNORE_INDEX
from wsss.errors import UserError
from wsss.losses import spml_defaults as D
from wsss.losses.partial_ce import partial_ce_term
from wsss.losses.base import LossOption, TrainingLoss
from wsss.losses.term import Term
from wsss.models.spml_net import EMBEDDING_DIM
from wsss.spml.kmeans import (DEFAULT_GRID, DEFAULT_ITERATIONS, Segments, kmeans_features, segment_prototypes, segments,
                              spherical_kmeans)
from wsss.spml.memory import SegmentMemory


#: the largest κ the loss accepts: with unit features and prototypes every logit lies in [−κ, κ], so each
#: exponential ``exp(κ μ_sᵀ f_i − max_t κ μ_tᵀ f_i) ≥ exp(−2κ)`` stays a normal float32 number (> 1e-35)
#: and the one-shift log-sum-exp of :func:`contrastive_losses` loses nothing to underflow
MAX_KAPPA = 40.0


#: rows of the ``N×S`` logits handled at once are chosen so that a block holds about this many entries
#: (8 MiB of float32): smaller buffers are reused by the allocator and stay nearer the cache (≈ 25 % faster
#: on the CPU than one ``N×S`` matrix)
BLOCK_ENTRIES = 1 << 21


def _row_blocks(n: int, s: int) -> list[slice]:
    """Row slices of ``[0, n)`` with about :data:`BLOCK_ENTRIES` / ``s`` rows each."""
    step = max(1, BLOCK_ENTRIES // max(s, 1))
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


def _shifted_exponentials(features: Tensor, prototypes: Tensor, own: Tensor, others: Tensor, kappa: float,
                          shift: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """One row block: ``e_is = exp(κ μ_sᵀ f_i − shift_i)`` with ``e_{i z_i} = 0`` on rows with another
    positive; ``shift_i`` the row maximum of the remaining logits unless given (a second backward recomputes
    the forward's ``e`` with its shifts). features: ``n×D``; prototypes: ``S×D``; own: ``n`` int64;
    others: ``n`` bool. Returns ``(e n×S, shift n, own logit n)``, float."""
    rows = torch.arange(features.shape[0], device=features.device)
    e = torch.mm(features, prototypes.transpose(0, 1)).mul_(kappa)  # n×S logits
    own_logit = e[rows, own]
    # rows with another positive: z_i leaves numerator and denominator (its exponential becomes 0)
    e.index_put_((rows[others], own[others]), own_logit.new_tensor(float("-inf")))
    if shift is None:
        shift = e.amax(1)  # finite: the row keeps z_i or another positive
    e.sub_(shift[:, None]).exp_()
    return e, shift, own_logit


class _GroupedContrastive(torch.autograd.Function):
    """Eq. (3) for all pixels at once (:func:`contrastive_losses`) with its own backward, by blocks of rows
    (:func:`_row_blocks`): each block's logits are exponentiated once (shifted by each row's maximum over
    its denominator) and serve both sums; the backward turns them into the gradient in place (a second
    backward, ``retain_graph``, recomputes them) instead of two masked log-sum-exps under autograd."""

    @staticmethod
    def forward(ctx, features, prototypes, own, group, group_positive, kappa):
        n = features.shape[0]
        pos_count = group_positive.sum(1).index_select(0, group)  # N
        others = pos_count - group_positive[group, own].long() > 0  # N bool: a positive besides z_i
        positive_t = group_positive.to(features.dtype).transpose(0, 1)  # S×G
        den, pos, shift = (features.new_empty(n) for _ in range(3))
        ctx.blocks = []  # the exponentials, consumed by the first backward
        for rows in _row_blocks(n, prototypes.shape[0]):
            e, shift[rows], own_logit = _shifted_exponentials(features[rows], prototypes, own[rows], others[rows],
                                                              kappa)
            den[rows] = e.sum(1)
            masses = (e @ positive_t).gather(1, group[rows, None])[:, 0]  # Σ_s e_is P[group_i, s]
            pos[rows] = torch.where(others[rows], masses, (own_logit - shift[rows]).exp())
            ctx.blocks.append(e)
        ctx.save_for_backward(features, prototypes, own, group, group_positive, others, den, pos, shift)
        ctx.kappa = kappa
        return den.log() - pos.log()

    @staticmethod
    def backward(ctx, grad):
        features, prototypes, own, group, group_positive, others, den, pos, shift = ctx.saved_tensors
        # ∂L_i/∂logit_is = e_is / den_i − [s ∈ C⁺_i] e_is / pos_i  (C⁺_i = P[group_i] \ {z_i}, or {z_i});
        # ∂L_i/∂(μ_sᵀ f_i) = κ ∂L_i/∂logit_is: κ folded into the per-row coefficients
        grad = grad * ctx.kappa
        a = grad / den
        b = torch.where(others, a - grad / pos, a)  # coefficient of the positives (fallback rows: none)
        grad_f = torch.empty_like(features) if ctx.needs_input_grad[0] else None
        grad_p = torch.zeros_like(prototypes) if ctx.needs_input_grad[1] else None
        blocks, ctx.blocks = ctx.blocks, None
        for k, rows in enumerate(_row_blocks(features.shape[0], prototypes.shape[0])):
            if blocks is None:
                e, _, _ = _shifted_exponentials(features[rows], prototypes, own[rows], others[rows], ctx.kappa,
                                                shift[rows])
            else:
                e, blocks[k] = blocks[k], None
            g = e.mul_(torch.where(group_positive[group[rows]], b[rows, None], a[rows, None]))
            fallback = torch.nonzero(~others[rows]).squeeze(1)
            g.index_put_((fallback, own[rows][fallback]), -grad[rows][fallback], accumulate=True)  # −∂ logit_iz_i
            if grad_f is not None:
                grad_f[rows] = torch.mm(g, prototypes)
            if grad_p is not None:
                grad_p.addmm_(g.transpose(0, 1), features[rows])
        return grad_f, grad_p, None, None, None, None


def contrastive_losses(features: Tensor, prototypes: Tensor, own: Tensor, group: Tensor, group_positive: Tensor,
                       kappa: float) -> Tensor:
    """Per-pixel loss ``L_i`` of eq. (3) with the own-segment exclusion and its fallback (module docstring);
    the negatives are every segment that is not a positive.

    The positives come by group: pixel ``i``'s are ``group_positive[group[i]]`` (its label, its image, …),
    so no ``N×S`` mask is built; the logits are handled by blocks of rows (:data:`BLOCK_ENTRIES`). Exact up to rounding for unit features and prototypes and
    ``κ ≤`` :data:`MAX_KAPPA` (one shift per row; :func:`wsss.losses.spml_reference.dense_contrastive_losses`
    is the masked log-sum-exp form it is tested against, values and gradients).

    Args:
        features: ``N×D`` float unit pixel features ``f_i``.
        prototypes: ``S×D`` float unit segment prototypes ``μ_s``.
        own: ``N`` int64, each pixel's own segment ``z_i`` in ``[0, S)``.
        group: ``N`` int64 in ``[0, G)``, each pixel's group.
        group_positive: ``G×S`` bool, the positive segments of each group (own may be marked positive or
            not; it is never a negative).
        kappa: concentration κ in ``(0, MAX_KAPPA]``.

    Returns:
        ``N`` float per-pixel losses (≥ 0, finite), differentiable in ``features`` and ``prototypes``.
    """
    if not 0 < kappa <= MAX_KAPPA:
        raise ValueError(f"κ = {kappa}: must lie in (0, {MAX_KAPPA:g}]")
    if features.shape[0] == 0:
        return features.sum(1) + prototypes.sum() * 0.0
    return _GroupedContrastive.apply(features, prototypes, own, group, group_positive.bool(), float(kappa))


def _pixels(features: Tensor, segs: Segments) -> tuple[Tensor, Tensor, Tensor]:
    """``(f N×D, own N, image N)`` of the pixels with a segment (valid pixels), row-major per image.
    features: ``B×D×h×w``."""
    b, d, h, w = features.shape
    ids = segs.ids.reshape(-1)
    inside = ids >= 0
    flat = features.permute(0, 2, 3, 1).reshape(-1, d)
    image = torch.arange(b, device=features.device).repeat_interleave(h * w)
    return flat[inside], ids[inside], image[inside]


def _value_groups(values: Tensor) -> tuple[Tensor, Tensor]:
    """Segments grouped by an attribute (region, label): ``values`` ``S`` int64 → ``(group S int64 in
    [0, G), G×S bool: the segments of each group)``, G the number of distinct values."""
    distinct, group = torch.unique(values, return_inverse=True)
    return group, torch.arange(distinct.numel(), device=values.device)[:, None] == group[None, :]


def _zero(features: Tensor) -> Tensor:
    """A 0-d zero connected to ``features``' graph (a term without pixels)."""
    return features.sum() * 0.0


def image_tags(labels: Tensor, valid: Tensor, num_classes: int, background: int | None) -> Tensor:
    """Tags of each image: the foreground classes present among its valid seed pixels.

    labels: ``B×H×W`` int64 seeds (255 unlabelled); valid: ``B×H×W`` bool; background: the background class
    index (excluded) or None. Returns ``B×K`` bool.
    """
    b = labels.shape[0]
    lab = labels.masked_fill(~valid.bool(), IGNORE_INDEX).reshape(b, -1)
    known = (lab >= 0) & (lab < num_classes)
    tags = torch.zeros(b, num_classes + 1, dtype=torch.bool, device=labels.device)
    tags.scatter_(1, torch.where(known, lab, num_classes), True)
    tags = tags[:, :num_classes]
    if background is not None:
        tags[:, background] = False
    return tags


def image_similarity_term(v: Tensor, segs: Segments, kappa: float, weight: float = 1.0) -> Term:
    """``img``: ``weight`` × Σ over images of the mean of ``L_i`` over the image's pixels, counted by the
    images with valid pixels (module docstring).

    Args:
        v: ``B×D×h×w`` float unit location-augmented vectors (:func:`~wsss.spml.kmeans.kmeans_features`).
        segs: the batch's :class:`~wsss.spml.kmeans.Segments` (``ids`` ``B×h×w``).
        kappa: κ_img.
    """
    protos = segment_prototypes(v, segs)
    f, own, image = _pixels(v, segs)
    total, count = _zero(v), 0
    for b in range(v.shape[0]):  # a loop over the images: each contrasts with its own segments only
        pick = image == b
        if not bool(pick.any()):
            continue
        seg_idx = torch.nonzero(segs.image == b).squeeze(1)  # contiguous: segments are sorted by image
        start = int(seg_idx[0])
        own_b = own[pick] - start
        region, same_region = _value_groups(segs.region[seg_idx])
        losses = contrastive_losses(f[pick], protos[seg_idx], own_b, region[own_b], same_region, kappa)
        total = total + losses.mean()
        count += 1
    return Term.of(weight * total, count)


def annotation_term(e: Tensor, segs: Segments, protos: Tensor, bank_protos: Tensor, bank_labels: Tensor,
                    kappa: float, weight: float = 1.0) -> Term:
    """``ann``: ``weight`` × Σ of ``L_i`` over the labelled valid pixels, counted by them.

    Args:
        e: ``B×d×h×w`` float unit embedding.
        segs: the batch's segments; protos: their ``S×d`` unit prototypes (with gradient).
        bank_protos, bank_labels: ``M×d`` detached prototypes and ``M`` int64 labels of the memory bank.
        kappa: κ_ann.
    """
    f, own, _ = _pixels(e, segs)
    label = segs.label[own]
    pick = label != IGNORE_INDEX
    if not bool(pick.any()):
        return Term.of(_zero(e), 0)
    keep = segs.label != IGNORE_INDEX
    remap = torch.cumsum(keep.long(), 0) - 1
    bank_keep = bank_labels != IGNORE_INDEX
    seg_protos = torch.cat([protos[keep], bank_protos[bank_keep].detach()])
    seg_labels = torch.cat([segs.label[keep], bank_labels[bank_keep]])
    own_kept = remap[own[pick]]
    label_group, same_label = _value_groups(seg_labels)
    losses = contrastive_losses(f[pick], seg_protos, own_kept, label_group[own_kept], same_label, kappa)
    return Term.of(weight * losses.sum(), losses.shape[0])


def cooccurrence_term(e: Tensor, segs: Segments, protos: Tensor, tags: Tensor, bank_protos: Tensor,
                      bank_tags: Tensor, kappa: float, weight: float = 1.0) -> Term:
    """``occ``: ``weight`` × Σ of ``L_i`` over the valid pixels of images with foreground tags, counted by them.

    Args:
        e: ``B×d×h×w`` float unit embedding.
        segs, protos: the batch's segments and their ``S×d`` prototypes.
        tags: ``B×K`` bool tags of the batch's images (:func:`image_tags`).
        bank_protos, bank_tags: ``M×d`` detached prototypes and ``M×K`` bool tags of the memory bank.
        kappa: κ_occ.
    """
    f, own, image = _pixels(e, segs)
    pick = tags[image].any(1)
    if not bool(pick.any()):
        return Term.of(_zero(e), 0)
    seg_protos = torch.cat([protos, bank_protos.detach()])
    seg_tags = torch.cat([tags[segs.image], bank_tags]).float()
    shares = (tags.float() @ seg_tags.transpose(0, 1)) > 0  # B×(S+M): image b shares a tag with segment s
    losses = contrastive_losses(f[pick], seg_protos, own[pick], image[pick], shares, kappa)
    return Term.of(weight * losses.sum(), losses.shape[0])


def propagated_labels(protos: Tensor, labels: Tensor) -> Tensor:
    """Each unlabelled segment takes the label of its nearest labelled segment (largest ``μ_sᵀ μ_t``; ties:
    the first); labelled segments keep theirs. protos: ``S×d`` unit; labels: ``S`` int64 (255 unlabelled).
    Returns ``S`` int64 (all 255 when no segment is labelled). No gradient."""
    labelled = labels != IGNORE_INDEX
    if not bool(labelled.any()):
        return labels.clone()
    with torch.no_grad():
        nearest = (protos @ protos[labelled].transpose(0, 1)).argmax(1)
    return torch.where(labelled, labels, labels[labelled][nearest])


def affinity_term(e: Tensor, segs: Segments, protos: Tensor, kappa: float, weight: float = 1.0) -> Term:
    """``aff``: ``weight`` × Σ of ``L_i`` over the valid pixels, positives / negatives by the labels of
    :func:`propagated_labels` on the batch's segments; counted by the pixels (0 without labelled segments).
    e: ``B×d×h×w`` unit embedding; segs, protos: the batch's segments and ``S×d`` prototypes."""
    f, own, _ = _pixels(e, segs)
    label = propagated_labels(protos.detach(), segs.label)
    if f.shape[0] == 0 or bool((label == IGNORE_INDEX).all()):
        return Term.of(_zero(e), 0)
    label_group, same_label = _value_groups(label)
    losses = contrastive_losses(f, protos, own, label_group[own], same_label, kappa)
    return Term.of(weight * losses.sum(), losses.shape[0])


def nearest_resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """``B×H×W`` integer or bool map → ``B×h×w`` of the same dtype, by nearest neighbour (PyTorch's
    ``nearest``: source index ``⌊i·H/h⌋``)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    out = F.interpolate(x[:, None].double(), size=size, mode="nearest")[:, 0]
    return out.round().to(x.dtype) if x.dtype != torch.bool else out > 0.5


def _src(annotation_dependent: bool = False) -> str:
    return "Ke et al. 2021: Table 5, same in its code" + ("; by --spml-annotation" if annotation_dependent else "")


def _weight_help(index: int) -> str:
    """``--help`` default of one relation weight: its value per annotation type and the source."""
    values = ", ".join(f"{a} {D.CODE_WEIGHTS[a][index]:g}" for a in D.ANNOTATIONS)
    return f"{values}: Ke et al. 2021's code scripts; --spml-weights paper for Tables 1, 5"


class SPMLLoss(TrainingLoss):
    """``--loss spml`` (module docstring): ``w_img L_img + w_ann (L_ann + L_cls) + w_occ L_occ + w_aff L_aff``.

    ``L_cls`` is the partial CE of the jointly trained classifier (on the detached embedding, logits
    upsampled to the seeds' size), the mean over the labelled valid pixels, inside the ``ann`` weight. The
    terms are logged as ``img``, ``ann``, ``cls``, ``occ``, ``aff``; a relation of weight 0 is not computed
    (``cls`` always is, so that every parameter gets a gradient under DDP).
    The training task (:mod:`wsss.training.spml`) runs the network and calls :meth:`spml_terms`.
    """

    name = "spml"
    target = "seeds"
    default_warmup_fraction = 0.0
    OPTIONS = (
        LossOption("--spml-annotation", ("annotation",), f"{', '.join(D.ANNOTATIONS)}: selects the relation "
                   f"weights and κ_occ [{D.ANNOTATION}]", default=D.ANNOTATION),
        LossOption("--spml-weights", ("weights",), "code (the released code's training scripts: "
                   f"{D.describe_weights('code')}) or paper (Ke et al. 2021: Tables 1, 5: "
                   f"{D.describe_weights('paper')}), as w_img/w_ann/w_occ/w_aff [{D.WEIGHT_SOURCE}]",
                   default=D.WEIGHT_SOURCE),
        LossOption("--w-img", ("w_img",), f"w_img [{_weight_help(0)}]"),
        LossOption("--w-ann", ("w_ann",), f"w_ann, also weighting the classifier CE [{_weight_help(1)}]"),
        LossOption("--w-occ", ("w_occ",), f"w_occ [{_weight_help(2)}]"),
        LossOption("--w-aff", ("w_aff",), "w_aff [0: used for DensePose points only, Ke et al. 2021]"),
        LossOption("--kappa-img", ("kappa_img",), f"κ_img [{D.KAPPA_IMG:g}, {_src()}]", default=D.KAPPA_IMG),
        LossOption("--kappa-ann", ("kappa_ann",), f"κ_ann [{D.KAPPA_ANN:g}, {_src()}]", default=D.KAPPA_ANN),
        LossOption("--kappa-occ", ("kappa_occ",), "κ_occ [scribbles 12, points / boxes / tags 8, "
                   f"{_src(True)}]"),
        LossOption("--kappa-aff", ("kappa_aff",), f"κ_aff [{D.KAPPA_AFF:g}, {_src()}]", default=D.KAPPA_AFF),
        LossOption("--embedding-dim", ("embedding_dim",), f"embedding dimension d [{EMBEDDING_DIM}, Ke et al. 2021, VOC]",
                   default=EMBEDDING_DIM),
        LossOption("--kmeans-grid", ("grid",), "side G of the k-means grid, G×G clusters per image "
                   f"[{DEFAULT_GRID}, Ke et al. 2021 code, VOC]", default=DEFAULT_GRID),
        LossOption("--kmeans-iterations", ("iterations",), f"spherical k-means iterations [{DEFAULT_ITERATIONS}, Ke et al. 2021]",
                   default=DEFAULT_ITERATIONS),
        LossOption("--memory-batches", ("memory",), "previous batches in the memory bank of ann and occ "
                   f"[{D.MEMORY_BATCHES}, Ke et al. 2021]", default=D.MEMORY_BATCHES),
    )

    def __init__(self, annotation: str | None = None, weights: str | None = None, w_img: float | None = None,
                 w_ann: float | None = None, w_occ: float | None = None, w_aff: float | None = None,
                 kappa_img: float | None = None, kappa_ann: float | None = None, kappa_occ: float | None = None,
                 kappa_aff: float | None = None, embedding_dim: int | None = None, grid: int | None = None,
                 iterations: int | None = None, memory: int | None = None):
        from wsss.validation import check_numbers

        self.annotation = D.ANNOTATION if annotation is None else str(annotation)
        if self.annotation not in D.ANNOTATIONS:
            raise UserError(f"--spml-annotation {self.annotation}: choose one of: {', '.join(D.ANNOTATIONS)}.")
        self.weights = D.WEIGHT_SOURCE if weights is None else str(weights)
        if self.weights not in D.WEIGHT_SOURCES:
            raise UserError(f"--spml-weights {self.weights}: choose one of: {', '.join(D.WEIGHT_SOURCES)}.")
        table = D.relation_weights(self.annotation, self.weights)
        given = (w_img, w_ann, w_occ, w_aff)
        self.w_img, self.w_ann, self.w_occ, self.w_aff = (float(t if g is None else g) for g, t in zip(given, table))
        self.kappa_img = float(D.KAPPA_IMG if kappa_img is None else kappa_img)
        self.kappa_ann = float(D.KAPPA_ANN if kappa_ann is None else kappa_ann)
        self.kappa_occ = float(D.KAPPA_OCC[self.annotation] if kappa_occ is None else kappa_occ)
        self.kappa_aff = float(D.KAPPA_AFF if kappa_aff is None else kappa_aff)
        self.embedding_dim = int(EMBEDDING_DIM if embedding_dim is None else embedding_dim)
        self.grid = int(DEFAULT_GRID if grid is None else grid)
        self.iterations = int(DEFAULT_ITERATIONS if iterations is None else iterations)
        self.memory_batches = int(D.MEMORY_BATCHES if memory is None else memory)
        check_numbers([(f"--w-{r}", w, 0, None) for r, w in zip(D.RELATIONS, self.relation_weights)]
                      + [(f"--kappa-{r}", k, 0, MAX_KAPPA, {"low_open": True}) for r, k in
                         zip(D.RELATIONS, (self.kappa_img, self.kappa_ann, self.kappa_occ, self.kappa_aff))]
                      + [("--embedding-dim", self.embedding_dim, 1, None, {"integer": True}),
                         ("--kmeans-grid", self.grid, 1, None, {"integer": True}),
                         ("--kmeans-iterations", self.iterations, 0, None, {"integer": True}),
                         ("--memory-batches", self.memory_batches, 0, None, {"integer": True})])
        self.memory = SegmentMemory(self.memory_batches)
        self.last_counts: dict[str, int] = {}

    @property
    def relation_weights(self) -> tuple[float, float, float, float]:
        return (self.w_img, self.w_ann, self.w_occ, self.w_aff)

    def terms(self, logits, batch):
        raise UserError("--loss spml: trains an embedding network; run it through wsss train (the SPML task).")

    def warmup_terms(self, logits, batch):
        return self.terms(logits, batch)

    def spml_terms(self, embedding: Tensor, logits: Tensor, labels: Tensor, valid: Tensor, regions: Tensor,
                   background: int | None, update_memory: bool = True) -> dict[str, Term]:
        """The terms of one batch (class docstring), then the batch's segments join the memory bank.

        Args:
            embedding: ``B×d×h×w`` float unit embedding at stride 4 (gradient flows).
            logits: ``B×K×h×w`` float classifier logits (on the detached embedding).
            labels: ``B×H×W`` int64 seeds (255 unlabelled) at crop size.
            valid: ``B×H×W`` bool validity mask.
            regions: ``B×H×W`` int64 low-level region ids (superpixels; any value outside ``valid``).
            background: background class index (excluded from the tags) or None.
            update_memory: push this batch's segments into the memory bank afterwards.

        Returns:
            ``{"img", "ann", "cls", "occ", "aff"}`` :class:`~wsss.losses.term.Term` s (relations of weight 0
            left out; ``cls`` always present, weighted by ``w_ann``). :attr:`last_counts` then holds the batch's valid
            stride-4 pixels, segments and memory-bank segments (diagnostics, benchmarks).
        """
        e = F.normalize(embedding.float(), dim=1)
        b, d, h, w = e.shape
        k = logits.shape[1]
        valid_s = nearest_resize(valid.bool(), (h, w))
        labels_s = nearest_resize(labels, (h, w)).masked_fill(~valid_s, IGNORE_INDEX)
        regions_s = nearest_resize(regions.long(), (h, w)).clamp(min=0)
        v = kmeans_features(e)
        clusters = spherical_kmeans(v, valid_s, grid=self.grid, iterations=self.iterations).labels
        segs = segments(clusters, regions_s, labels_s)
        protos = segment_prototypes(e, segs)
        tags = image_tags(labels, valid, k, background)
        bank_protos, bank_labels, bank_tags = self.memory.contents(d, k, e.device)
        out: dict[str, Term] = {}
        if self.w_img > 0:
            out["img"] = image_similarity_term(v, segs, self.kappa_img, self.w_img)
        if self.w_ann > 0:
            out["ann"] = annotation_term(e, segs, protos, bank_protos, bank_labels, self.kappa_ann, self.w_ann)
        # always in the graph (weight 0 included): under DDP every parameter of the classifier needs a gradient
        up = F.interpolate(logits.float(), size=labels.shape[-2:], mode="bilinear", align_corners=True)
        cls = partial_ce_term(up, labels, valid)
        out["cls"] = Term(self.w_ann * cls.total, cls.count)
        if self.w_occ > 0:
            out["occ"] = cooccurrence_term(e, segs, protos, tags, bank_protos, bank_tags, self.kappa_occ, self.w_occ)
        if self.w_aff > 0:
            out["aff"] = affinity_term(e, segs, protos, self.kappa_aff, self.w_aff)
        if update_memory:
            self.memory.push(protos, segs.label, tags[segs.image])
        self.last_counts = {"pixels": int((segs.ids >= 0).sum()), "segments": segs.count,
                            "memory": int(bank_protos.shape[0])}
        return out

    def options(self):
        return {"annotation": self.annotation, "weights": self.weights, "w_img": self.w_img, "w_ann": self.w_ann,
                "w_occ": self.w_occ, "w_aff": self.w_aff, "kappa_img": self.kappa_img, "kappa_ann": self.kappa_ann,
                "kappa_occ": self.kappa_occ, "kappa_aff": self.kappa_aff, "embedding_dim": self.embedding_dim,
                "grid": self.grid, "iterations": self.iterations, "memory": self.memory_batches}


__all__ = ["MAX_KAPPA", "SPMLLoss", "affinity_term", "annotation_term", "contrastive_losses", "cooccurrence_term", "image_tags",
           "image_similarity_term", "nearest_resize", "propagated_labels"]
