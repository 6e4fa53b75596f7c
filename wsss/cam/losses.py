"""CAM-stage losses: GAP multi-label loss, importance sampling loss (ISL), feature similarity loss (FSL).

Method: docs/methods.md §6 (Jonnarth et al. 2024). All losses act on the native CAM grid
(``h×w``, stride 8) and use the reductions of the hfpl code (docs/methods.md §2): means over
classes, samples and images, and ``−1/(B·h·w)`` for FSL.

Shapes: ``scores`` are ``B×K×h×w`` float logits in the channel layout of
:mod:`wsss.cam.classifier` (binomial ``K = C``; multinomial ``K = C + 1``, background channel 0);
``targets`` are ``B×C`` float image tags ``y ∈ {0,1}^C`` (:func:`tags_to_targets`). Every loss
returns a 0-dim tensor of the scores' dtype.

Typical training use (one branch, eq. 16 + FSL)::

    s = model(x)                                                   # B×K×h×w
    loss = classification_loss(s, y, posterior=p, generator=g)     # (1−λ) L_ce + λ L_is^N
    gate = fsl_gate(s, y, posterior=p)                             # B×(C+1)×h×w, with gradient
    loss = loss + beta * feature_similarity_loss(gate, fsl_image(x_aug, gate.shape[-2:]))
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from wsss.cam.classifier import check_posterior, foreground_scores, posterior_probs
from wsss.constants import IMAGENET_MEAN, IMAGENET_STD
from wsss.errors import UserError

#: ε of the max-normalized CAM ``r`` (docs/methods.md §6.1, hfpl code).
CAM_EPS = 1e-5
#: Added to the posterior before normalising it into the sampling distribution ``p_c`` (docs/methods.md §6.2, eq. 20).
SAMPLING_EPS = 1e-5
#: Samples per class N (Jonnarth et al. 2024, Table 5: plateau after 10).
DEFAULT_NUM_SAMPLES = 10
#: ISL mixing weight λ per posterior (Jonnarth et al. 2024, Table 4: 0.2 binomial, 0.6 multinomial).
DEFAULT_ISL_WEIGHT = {"binomial": 0.2, "multinomial": 0.6}
#: FSL constants (docs/methods.md §6: μ = 2.5, σ_fs = 5 grid cells, fixed; ε = 1e-5 in f).
FSL_MU = 2.5
FSL_SIGMA = 5.0
FSL_EPS = 1e-5
#: FSL gate inputs: ``r`` (max-normalized CAM, default), ``b`` (sigmoid), ``a`` (softmax, multinomial).
FSL_GATES = ("r", "b", "a")

# Pair-matrix entries materialised at once by the exact FSL (B·rows·h·w); bounds memory to ~100 MB.
_FSL_CHUNK_ELEMENTS = 1 << 22


def default_isl_weight(posterior: str = "binomial") -> float:
    """λ of eq. (16): 0.2 for the binomial posterior, 0.6 for the multinomial one (docs/methods.md §6)."""
    return DEFAULT_ISL_WEIGHT[check_posterior(posterior)]


def tags_to_targets(tags: Sequence[Sequence[int]] | Sequence[Tensor], num_classes: int,
                    label_offset: int = 1, dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None) -> Tensor:
    """Multi-hot targets ``B×C`` (``dtype``) from per-image lists of label values.

    Label value ``v`` sets channel ``v − label_offset`` (default 1: class 0 is background and is
    never a tag, docs/methods.md §1). A value outside ``[label_offset, label_offset + C)`` raises
    :class:`UserError`.
    """
    y = torch.zeros(len(tags), num_classes, dtype=dtype, device=device)
    for b, t in enumerate(tags):
        idx = torch.as_tensor(t, dtype=torch.long).reshape(-1) - label_offset
        if idx.numel() and (idx.min() < 0 or idx.max() >= num_classes):
            raise UserError(
                f"tags: image {b} has tag values {sorted(set((idx + label_offset).tolist()))} outside "
                f"{label_offset}..{label_offset + num_classes - 1}. Check the tags artifact against the class list.")
        y[b, idx.to(y.device)] = 1
    return y


def _check_scores(scores: Tensor, targets: Tensor, posterior: str) -> Tensor:
    if scores.dim() != 4:
        raise ValueError(f"scores must be B×K×h×w, got shape {tuple(scores.shape)}")
    fg = foreground_scores(scores, posterior)
    if targets.shape != fg.shape[:2]:
        raise ValueError(f"targets must be B×C = {tuple(fg.shape[:2])}, got {tuple(targets.shape)}")
    return fg


# -- GAP ------------------------------------------------------------------------------------

def image_scores(scores_fg: Tensor) -> Tensor:
    """GAP image scores ``S_c = mean_{i,j} s_c(i, j)``: ``B×C×h×w`` → ``B×C`` (docs/methods.md §6; the mean, not
    the sum of the paper's eq. 3)."""
    return scores_fg.mean(dim=(2, 3))


def gap_loss(scores: Tensor, targets: Tensor, posterior: str = "binomial") -> Tensor:
    """Baseline multi-label loss ``L_ce`` (eq. 17) on the GAP scores of the foreground channels.

    ``−(1/C) Σ_c [y_c ln B_c + (1 − y_c) ln(1 − B_c)]``, ``B_c = sigmoid(S_c)`` computed from logits,
    averaged over images. ``scores`` ``B×K×h×w``, ``targets`` ``B×C``; the multinomial layout's
    background channel is ignored (as SEAM's loss on channels 1..C).
    """
    fg = _check_scores(scores, targets, posterior)
    return F.binary_cross_entropy_with_logits(image_scores(fg), targets.to(fg.dtype))


# -- max-normalized CAM ---------------------------------------------------------------------

def max_normalized_cam(scores_fg: Tensor, eps: float = CAM_EPS, subtract_min: bool = True) -> Tensor:
    """Max-normalized CAM ``r``: ``B×C×h×w`` float → ``B×C×h×w`` in [0, 1), with gradient.

    Default (code form): ``r = ReLU(ReLU(s) − m − ε) / (M − m + ε)`` with ``M, m`` the spatial max and
    min of ``ReLU(s)`` per image and class (gradient flows through both). ``subtract_min=False``:
    ``m = 0``, the paper's eq. (4) ``ReLU(s) / max ReLU(s)`` (up to ε).
    """
    pos = F.relu(scores_fg)
    big = pos.amax(dim=(2, 3), keepdim=True)
    small = pos.amin(dim=(2, 3), keepdim=True) if subtract_min else torch.zeros_like(big)
    return F.relu(pos - small - eps) / (big - small + eps)


# -- ISL ------------------------------------------------------------------------------------

def sample_positions(weights: Tensor, num_samples: int = DEFAULT_NUM_SAMPLES,
                     generator: torch.Generator | None = None) -> Tensor:
    """Draw grid cells i.i.d. with replacement from ``p_c ∝ weights + 1e-5`` (docs/methods.md §6.2, eq. 20).

    ``weights``: ``B×C×h×w`` non-negative float (the posterior ``b`` or ``a``; detached here).
    Returns ``B×C×N`` int64 flat indices into ``h·w`` (row-major). ``generator`` (on the weights'
    device) makes the draw reproducible.
    """
    b, c, h, w = weights.shape
    p = (weights.detach().reshape(b * c, h * w).to(torch.float64) + SAMPLING_EPS)
    idx = torch.multinomial(p, num_samples, replacement=True, generator=generator)
    return idx.reshape(b, c, num_samples)


def _log_posterior_pair(scores: Tensor, indices: Tensor, posterior: str) -> tuple[Tensor, Tensor]:
    """``ln b̃`` and ``ln(1 − b̃)`` (each ``B×C×N``) at the sampled cells, from logits."""
    b, k, h, w = scores.shape
    flat = scores.reshape(b, k, h * w)
    if posterior == "binomial":
        s = flat.gather(2, indices)                                   # B×C×N
        return F.logsigmoid(s), F.logsigmoid(-s)
    # multinomial: all K logits at each sampled cell of class c (channel c + 1)
    c, n = indices.shape[1], indices.shape[2]
    cols = flat.unsqueeze(1).expand(b, c, k, h * w)
    at = cols.gather(3, indices.unsqueeze(2).expand(b, c, k, n)).permute(0, 1, 3, 2)  # B×C×N×K
    lse = torch.logsumexp(at, dim=3)
    own = torch.arange(1, c + 1, device=scores.device).view(1, c, 1, 1).expand(b, c, n, 1)
    log_a = at.gather(3, own).squeeze(3) - lse
    others = at.scatter(3, own, float("-inf"))                         # drop channel c + 1
    log_not_a = torch.logsumexp(others, dim=3) - lse                   # ln(1 − a_c), exact
    return log_a, log_not_a


def isl_loss(scores: Tensor, targets: Tensor, num_samples: int = DEFAULT_NUM_SAMPLES,
             posterior: str = "binomial", generator: torch.Generator | None = None,
             indices: Tensor | None = None) -> Tensor:
    """Multi-sample importance sampling loss ``L_is^N`` (eq. 18).

    For every image and every foreground class (absent ones included), ``N`` cells are drawn from
    ``p_c ∝ posterior_c + 1e-5`` (:func:`sample_positions`; not differentiated), and the binary
    cross-entropy of the posterior at those cells is averaged over (n, c) and then over images.
    Logs come from logits: ``logsigmoid(±s̃)`` (binomial) or log-softmax / a log-sum-exp without the
    class (multinomial). Only the sampled cells receive gradient.

    ``scores`` ``B×K×h×w`` float, ``targets`` ``B×C``; ``indices`` (``B×C×N`` int64 flat cell
    indices) bypasses the draw. Returns a 0-dim tensor.
    """
    posterior = check_posterior(posterior)
    fg = _check_scores(scores, targets, posterior)
    if indices is None:
        with torch.no_grad():
            probs = foreground_scores(posterior_probs(scores, posterior), posterior)
        indices = sample_positions(probs, num_samples, generator)
    log_p, log_q = _log_posterior_pair(scores, indices.to(scores.device), posterior)
    y = targets.to(fg.dtype).unsqueeze(2)
    return -(y * log_p + (1 - y) * log_q).mean()


def classification_loss(scores: Tensor, targets: Tensor, weight: float | None = None,
                        num_samples: int = DEFAULT_NUM_SAMPLES, posterior: str = "binomial",
                        isl_scale: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """``L_cls = (1 − λ) L_ce + isl_scale · λ L_is^N`` (eq. 16; ``--isl-scale``, docs/methods.md §6).

    ``weight`` λ defaults to :func:`default_isl_weight` (0.2 binomial, 0.6 multinomial);
    ``isl_scale`` 1 for SEAM, 0.1 for SIPE/MCTformer. λ = 0 returns exactly :func:`gap_loss` (no
    draw is made). Shapes as :func:`isl_loss`.
    """
    posterior = check_posterior(posterior)
    lam = default_isl_weight(posterior) if weight is None else float(weight)
    if not 0.0 <= lam <= 1.0:
        raise UserError(f"option --isl-weight: λ = {lam} is outside [0, 1]. Pick a mixing weight in [0, 1].")
    ce = gap_loss(scores, targets, posterior)
    if lam == 0.0:
        return ce
    return (1 - lam) * ce + isl_scale * lam * isl_loss(scores, targets, num_samples, posterior, generator)


# -- FSL ------------------------------------------------------------------------------------

def fsl_image(image: Tensor, size: Sequence[int], mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> Tensor:
    """FSL colours ``x``: the normalised (augmented) input crop ``B×3×H×W`` resized bilinearly
    (``align_corners=True``) to the CAM grid ``size = (h, w)``, de-normalised with ``mean``/``std``
    and clamped to [0, 1]. Returns ``B×3×h×w`` of the image's dtype, detached (docs/methods.md §6)."""
    x = F.interpolate(image.detach(), size=tuple(size), mode="bilinear", align_corners=True)
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x * s + m).clamp(0, 1)


def fsl_gate(scores: Tensor, targets: Tensor, gate: str = "r", posterior: str = "binomial",
             bg_channel: bool = True, subtract_min: bool = True) -> Tensor:
    """Gate input of FSL (with gradient): ``B×K×h×w`` scores, ``B×C`` targets → ``B×K'×h×w``.

    - ``"r"`` (default; J 66.9 vs 64.6 for ``b``, docs/methods.md §6): :func:`max_normalized_cam` of the
      foreground channels, absent classes zeroed, plus (``bg_channel``, default on,
      ``--fsl-bg-channel``) channel 0 ``r_0 = 1 − max_{c present} r_c`` (1 when no class is present).
    - ``"b"``: the same with ``sigmoid(s_c)`` in place of ``r_c`` (paper's ablation).
    - ``"a"``: multinomial posterior ``softmax`` over all ``C + 1`` channels (original FSL; needs
      ``posterior="multinomial"``; ``bg_channel`` is ignored, the softmax has its own).
    """
    posterior = check_posterior(posterior)
    fg = _check_scores(scores, targets, posterior)
    if gate == "a":
        if posterior != "multinomial":
            raise UserError("option --fsl-gate: gate 'a' is the softmax posterior and needs --posterior multinomial. Use gate 'r' or 'b'.")
        return torch.softmax(scores, dim=1)
    if gate == "r":
        maps = max_normalized_cam(fg, subtract_min=subtract_min)
    elif gate == "b":
        maps = torch.sigmoid(fg)
    else:
        raise UserError(f"option --fsl-gate: unknown gate {gate!r}. Use one of {', '.join(FSL_GATES)}.")
    maps = maps * targets.to(maps.dtype)[:, :, None, None]
    if not bg_channel:
        return maps
    bg = 1 - maps.amax(dim=1, keepdim=True) if maps.shape[1] else torch.ones_like(fg[:, :1])
    return torch.cat([bg, maps], dim=1)


def fsl_dissimilarity(delta: Tensor, mu: float = FSL_MU, eps: float = FSL_EPS) -> Tensor:
    """``f(δ) = tanh(μ + ln((δ + ε)/(1 − δ + ε)))`` (eq. 12), elementwise on δ ∈ [0, 1]; in [−1, 1].

    Evaluated without transcendental calls as ``(e^{2μ}u² − v²)/(e^{2μ}u² + v²)``, ``u = δ + ε``,
    ``v = 1 − δ + ε`` (the same function: ``tanh z = (e^{2z} − 1)/(e^{2z} + 1)``); ``v ≥ ε`` keeps
    the denominator positive. New tensor of ``delta``'s shape and dtype.
    """
    return _dissimilarity_(delta.clone(), mu, eps)


def _dissimilarity_(delta: Tensor, mu: float, eps: float) -> Tensor:
    """In-place :func:`fsl_dissimilarity` (overwrites and returns ``delta``)."""
    u = delta.add_(eps)                                            # u = δ + ε
    v2 = torch.sub(1 + 2 * eps, u).square_()                       # v² = (1 − δ + ε)²
    a = u.square_().mul_(math.exp(2 * mu))                         # e^{2μ} u²
    num = a - v2
    return num.div_(a.add_(v2))


def fsl_spatial_weight(dist2: Tensor, sigma: float = FSL_SIGMA) -> Tensor:
    """``w = exp(−d²/(2σ²)) / (2πσ²)`` (eq. 10) of squared grid distances ``dist2`` (elementwise)."""
    return torch.exp(-dist2 / (2 * sigma * sigma)) / (2 * math.pi * sigma * sigma)


def _fsl_exact_q(r: Tensor, x: Tensor, mu: float, sigma: float, valid: Tensor | None) -> Tensor:
    """``Q = (D − A) R`` over all ordered pairs, ``A_ij = w_ij f_ij``: ``B×K×h×w`` (no gradient).

    Builds ``A`` in blocks of whole grid rows (``B×m×n``, ``m`` a multiple of ``w``) so memory
    stays ~``_FSL_CHUNK_ELEMENTS`` floats. The spatial weight is separable:
    ``w_ij = kron(w_row, w_col)``; one ``bmm`` against ``[R, 1]`` gives ``A R`` and ``D = A 1``.
    """
    b, k, h, w = r.shape
    n = h * w
    X = x.flatten(2).transpose(1, 2).contiguous()                     # B×n×3
    R1 = torch.cat([r.flatten(2), torch.ones_like(r[:, :1].flatten(2))], 1).transpose(1, 2)   # B×n×(K+1)
    dr = torch.arange(h, device=r.device, dtype=r.dtype)
    dc = torch.arange(w, device=r.device, dtype=r.dtype)
    g_row = fsl_spatial_weight((dr[:, None] - dr[None, :]) ** 2, sigma) * (2 * math.pi * sigma * sigma)   # h×h
    g_col = fsl_spatial_weight((dc[:, None] - dc[None, :]) ** 2, sigma)                                 # w×w
    V = None if valid is None else valid.reshape(b, n).to(r.dtype)
    Q = torch.empty(b, n, k, dtype=r.dtype, device=r.device)
    rows = max(1, _FSL_CHUNK_ELEMENTS // max(1, b * n * w))
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        sl = slice(r0 * w, r1 * w)
        A = torch.cdist(X[:, sl], X, p=1).div_(3).clamp_(0, 1)                           # B×m×n, δ
        A = _dissimilarity_(A, mu, FSL_EPS).mul_(torch.kron(g_row[r0:r1], g_col))        # w·f
        if V is not None:
            A.mul_(V[:, sl, None]).mul_(V[:, None, :])
        AR = torch.bmm(A, R1)                                                           # B×m×(K+1)
        Q[:, sl] = AR[:, :, k:] * R1[:, sl, :k] - AR[:, :, :k]
    return Q.transpose(1, 2).reshape(b, k, h, w)


def _fsl_window_q(r: Tensor, x: Tensor, mu: float, sigma: float, radius: int, valid: Tensor | None) -> Tensor:
    """``Q_i = Σ_{j: |Δrow|,|Δcol| ≤ radius} A_ij (r_i − r_j)``: ``B×K×h×w`` (no gradient).

    Loops over half of the window's offsets (each offset handles both orders of its pairs), each
    step batched over all cells.
    """
    b, k, h, w = r.shape
    Q = torch.zeros_like(r)
    v = None if valid is None else valid.to(r.dtype)
    for dy in range(0, min(radius, h - 1) + 1):
        for dx in range(-min(radius, w - 1), min(radius, w - 1) + 1):
            if dy == 0 and dx <= 0:
                continue
            # pair (i, j) with i = (y, x), j = (y + dy, x + dx)
            ys, yd = slice(0, h - dy), slice(dy, h)
            xs, xd = slice(max(0, -dx), w - max(0, dx)), slice(max(0, dx), w - max(0, -dx))
            A = (x[:, :, ys, xs] - x[:, :, yd, xd]).abs_().sum(dim=1).div_(3).clamp_(0, 1)   # B×h'×w', δ
            A = _dissimilarity_(A, mu, FSL_EPS).mul_(math.exp(-(dy * dy + dx * dx) / (2 * sigma * sigma))
                                                      / (2 * math.pi * sigma * sigma))
            if v is not None:
                A.mul_(v[:, ys, xs]).mul_(v[:, yd, xd])
            t = (r[:, :, ys, xs] - r[:, :, yd, xd]).mul_(A.unsqueeze(1))
            Q[:, :, ys, xs] += t
            Q[:, :, yd, xd] -= t
    return Q


def feature_similarity_loss(gate: Tensor, image: Tensor, mu: float = FSL_MU, sigma: float = FSL_SIGMA,
                            window: int | None = None, valid: Tensor | None = None) -> Tensor:
    """Feature similarity loss ``L_fs`` (eqs. 9–13), mean over images.

    ``L = −1/(B·h·w) Σ_b Σ_{i,j} w_ij · ½‖r_i − r_j‖² · f(δ(x_i, x_j))`` over ordered pairs of
    cells of each image (an unordered pair counts twice; ``i = j`` contributes 0).

    Args:
        gate: ``B×K×h×w`` float, the gate input ``r`` (:func:`fsl_gate`), with gradient.
        image: ``B×3×h×w`` colours ``x`` in [0, 1] on the same grid (:func:`fsl_image`); constant.
        mu, sigma: μ = 2.5 and σ_fs = 5 grid cells (docs/methods.md §6, fixed).
        window: ``None`` (default) = exact all-pairs sum, as the hfpl code. An int ``R`` keeps only
            pairs with ``|Δrow| ≤ R`` and ``|Δcol| ≤ R`` (ordered pairs still counted twice). This
            is an approximation: it drops the lattice Gaussian mass outside the square,
            ``τ = fsl_window_tail(R, σ)`` (≈0.39 % per interior cell for R = ⌈3σ⌉ = 15, σ = 5), and
            ``|L_exact − L_window| ≤ τ · g_max`` with ``g_max = ½ Σ_k (max r_k − min r_k)²`` taken
            over the batch (:func:`fsl_window_bound`), since ``|f| ≤ 1``. ``R ≥ max(h, w) − 1``
            equals the exact sum. Measured on 56×56 maps: 0.4–0.8 % relative for CAM-like maps
            with structure at 2–4 cells, up to ~4 % for maps smooth over ~8 cells (the dropped
            far pairs carry the largest ``g``, and signs of ``f`` cancel in the total).
        valid: optional ``B×h×w`` bool/float mask; pairs with an endpoint outside it are dropped
            (docs/methods.md §2; the reduction stays ``1/(B·h·w)``).

    Only ``g`` carries gradient (``w`` and ``f`` are constants; ``image`` is never differentiated):
    ``∂L/∂r_i = −2/(B·h·w) Σ_j w_ij f_ij (r_i − r_j)``. Similar pairs (``f < 0``) are pulled
    together, dissimilar ones (``f > 0``) pushed apart. The pair matrix is never kept for backward:
    ``Q = (D − A) r`` is computed without autograd and the loss is returned as
    ``−(2⟨r, Q⟩ − ⟨r̄, Q⟩)/(B·h·w)`` (``r̄`` detached), whose value and first derivative are exact
    (no second derivatives).
    Memory: exact ~4 M pair entries at a time (blocks of grid rows) plus ``O(B·K·h·w)``; windowed
    ``O(B·K·h·w)``. Time: exact ``O(B·(h·w)²)``, windowed ``O(B·K·h·w·R²)``.
    """
    if gate.dim() != 4 or image.dim() != 4 or image.shape[0] != gate.shape[0] or image.shape[2:] != gate.shape[2:]:
        raise ValueError(f"gate must be B×K×h×w and image B×3×h×w on the same grid, got {tuple(gate.shape)} and {tuple(image.shape)}")
    b, _, h, w = gate.shape
    r = gate.detach()
    x = image.detach().to(gate.dtype)
    with torch.no_grad():
        if window is None:
            Q = _fsl_exact_q(r, x, mu, sigma, valid)
        else:
            if window < 0:
                raise UserError(f"option --fsl-window: radius {window} is negative. Use a radius ≥ 0 or omit it for the exact sum.")
            Q = _fsl_window_q(r, x, mu, sigma, int(window), valid)
    norm = b * h * w
    return -(2 * (gate * Q).sum() - (r * Q).sum()) / norm


def fsl_window_tail(radius: int, sigma: float = FSL_SIGMA, extent: int | None = None) -> float:
    """Lattice Gaussian mass ``Σ_{(dy,dx) ∉ [−R,R]²} w(dy, dx)`` dropped by the window (infinite grid).

    With ``w`` of eq. (10) the full lattice sum is 1 to ~1e-10 for σ ≥ 1, so this is the dropped
    fraction of an interior cell's weight (docs/methods.md §6: ≈0.4 % for R = 15, σ = 5).
    """
    extent = int(extent if extent is not None else max(radius, math.ceil(12 * sigma)) + 1)
    d = torch.arange(-extent, extent + 1, dtype=torch.float64)
    g1 = torch.exp(-d * d / (2 * sigma * sigma)) / math.sqrt(2 * math.pi * sigma * sigma)
    total = g1.sum() ** 2
    inside = g1[(d.abs() <= radius)].sum() ** 2
    return float(total - inside)


def fsl_window_bound(gate: Tensor, radius: int, sigma: float = FSL_SIGMA) -> float:
    """Upper bound on ``|L_exact − L_window|`` for ``gate`` ``B×K×h×w``: ``τ(R, σ) · g_max``.

    ``g_max = max_b ½ Σ_k (max r_k − min r_k)²`` bounds ``g`` over any pair; ``|f| ≤ 1``; each cell
    loses at most the tail mass ``τ`` of its weights, and the loss is a mean over cells.
    """
    r = gate.detach()
    span = (r.amax(dim=(2, 3)) - r.amin(dim=(2, 3))) ** 2                 # B×K
    g_max = 0.5 * float(span.sum(dim=1).max()) if r.numel() else 0.0
    return fsl_window_tail(radius, sigma) * g_max
