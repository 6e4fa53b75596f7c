"""``wsss train --loss NAME``: the network losses and their options.

Every loss maps ``(logits, batch)`` to a dict of named :class:`~wsss.losses.term.Term` s (batch sums,
already multiplied by their weights, with the count each is averaged over); the training loop sums the
counts over ranks and adds the means (:func:`wsss.losses.term.reduce_terms`). The terms are logged
separately. Reductions (a weight means the same at any annotation density):

| name        | target        | terms and their reduction                                                  | source |
|-------------|---------------|----------------------------------------------------------------------------|--------|
| ``pce``     | seeds         | ``pce`` = mean_{S∩V} −ln σ^ȳ (0 without seeds)                              | rloss code |
| ``full``    | dense masks   | ``ce`` = mean over the non-void valid pixels of −ln σ^y                     | |
| ``gridcrf`` | seeds         | ``pce`` + ``crf`` = λ · mean over valid NN4/8 pairs of w_pq P(σ_p, σ_q)      | Tang et al. 2018 |
| ``densecrf``| seeds         | ``pce`` + ``crf`` = λ · mean over the batch's images of R_CRF(σ) (eq. 4)    | rloss code |
| ``ncut``    | seeds         | ``pce`` + ``crf`` = λ · mean over images of R_NC(σ) (eq. 5)                 | rloss convention |
| ``kernelcut``| seeds        | ``pce`` + ``crf`` = λ · mean over images of R_KC(σ) (eq. 6)                 | rloss convention |
| ``collision``| seeds        | ``pce`` + ``sl`` = η_net · mean_{V∖S} CE(y, σ), y from the solver (sums)     | Zhang & Boykov (8) |
| ``pseudo``  | pseudolabels  | ``ce`` = mean_V H(y, σ) (soft) or mean over labelled pixels (``hard``)       | |
| ``urss``    | seeds         | ``pce`` + ``entropy`` = ω₁ · mean_{V∖B} H(σ) (+ ``ss`` = ω₂ · eigenspace, mean over images) | URSS code |
| ``spml``    | seeds         | ``img`` (mean of per-image means), ``ann`` + ``cls`` (means over labelled pixels), ``occ`` (mean over pixels of tagged images), weighted per relation | SPML code |

Defaults tuned under the earlier shared-Z rule are converted at their tuning runs' counts
(:mod:`wsss.losses.conversion`).

During the pCE warm-up (``--warmup-epochs``) every seeds-based loss uses its ``pce`` term only
(:meth:`TrainingLoss.warmup_terms`).

Options: each loss class declares its options once, in :attr:`TrainingLoss.OPTIONS` (a tuple of
:class:`LossOption`: the ``wsss train`` flag, where :func:`make_loss` finds the value, the default and
its source). :func:`make_loss` accepts exactly the declared keys; ``wsss train`` derives from the same
declarations which flags apply to which loss, how their values reach ``make_loss`` and their help.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import torch
from torch import Tensor

from wsss.errors import UserError
from wsss.losses.base import LossBatch, LossOption, TrainingLoss  # noqa: F401  (LossBatch: re-exported)
from wsss.losses.defaults import DENSECRF_WEIGHT, GRIDCRF_LAMBDA, KERNELCUT_WEIGHT, NCUT_WEIGHT, SL_WEIGHT_PER_ETA
from wsss.losses.partial_ce import partial_ce_term, soft_ce_term, weighted_ce_term
from wsss.losses.spml import SPMLLoss
from wsss.losses.term import Term
from wsss.losses.urss import URSSLoss
from wsss.potts.neighbourhoods import DEFAULT_BANDWIDTH
from wsss.potts.solver import SolverConfig
from wsss.validation import check_numbers

#: the solver configuration's defaults (what ``--loss collision`` shows for its solver options)
_SOLVER = SolverConfig()


class PartialCE(TrainingLoss):
    """``pce``: partial cross-entropy on the seeds only; reduction: the mean over the batch's labelled valid
    pixels (0 for a batch without seeds)."""

    name = "pce"

    def terms(self, logits, batch):
        return self.warmup_terms(logits, batch)


class FullCE(TrainingLoss):
    """``full``: cross-entropy on dense ground-truth masks (255 ignored); reduction: the mean over the batch's
    non-void valid pixels, or with ``class_weights="median-frequency"`` the weighted mean (4') with the
    median-frequency weights of the training masks (docs/methods.md §3.1), computed in :meth:`prepare`."""

    name = "full"
    target = "masks"
    OPTIONS = (LossOption("--class-weights", ("class_weights",), "none (every pixel weighs 1) or median-frequency "
                          "(median frequency balancing of the training masks, Eigen & Fergus 2015, SegNet's CamVid "
                          "setting; docs/methods.md §3.1) [none]", "none"),)

    def __init__(self, class_weights: str | None = None):
        from wsss.losses.class_weights import CLASS_WEIGHTINGS

        self.class_weights = str(self.option_default("class_weights") if class_weights is None else class_weights)
        if self.class_weights not in CLASS_WEIGHTINGS:
            raise UserError(f"--class-weights {self.class_weights}: unknown. Choose {' or '.join(CLASS_WEIGHTINGS)}.")
        self.weight: Tensor | None = None

    def prepare(self, targets) -> None:
        """Compute the class weights from every training mask (``targets``: a ``masks`` TargetSource)."""
        if self.class_weights == "none":
            return
        from wsss.losses.class_weights import class_pixel_counts, median_frequency_weights

        ds = targets.dataset
        pixels, image_pixels = class_pixel_counts((ds.load_mask(i) for i in targets.ids), ds.num_classes)
        self.weight = torch.as_tensor(median_frequency_weights(pixels, image_pixels), dtype=torch.float32)

    def terms(self, logits, batch):
        if self.weight is not None:
            return {"ce": weighted_ce_term(logits, batch.labels, batch.valid, self.weight)}
        return {"ce": partial_ce_term(logits, batch.labels, batch.valid)}

    warmup_terms = terms

    def options(self):
        out: dict[str, Any] = {"class_weights": self.class_weights}
        if self.weight is not None:
            out["class_weight_values"] = [round(float(w), 6) for w in self.weight]
        return out


class PseudoCE(TrainingLoss):
    """``pseudo``: CE on a pseudolabels artifact; soft ``H(y, σ)`` on every valid pixel, or (``hard``)
    CE on its ``label`` map; reduction: the mean over the valid (soft) or labelled valid (hard) pixels."""

    name = "pseudo"
    target = "pseudolabels"
    OPTIONS = (LossOption("--hard", ("hard",), "train on the artifact's label map instead of its soft probabilities",
                          default=False, kind="switch"),)

    def __init__(self, hard: bool | None = None):
        self.hard = bool(self.option_default("hard") if hard is None else hard)

    @property
    def uses_soft_targets(self) -> bool:
        return not self.hard

    def terms(self, logits, batch):
        if self.hard or batch.probs is None:
            return {"ce": partial_ce_term(logits, batch.labels, batch.valid)}
        return {"ce": soft_ce_term(logits, batch.probs, batch.valid)}

    warmup_terms = terms

    def options(self):
        return {"hard": self.hard}


class GridCRFLoss(TrainingLoss):
    """``gridcrf``: pCE + λ · mean over valid pairs of w_pq P(σ_p, σ_q) on NN4/NN8 (:mod:`wsss.losses.gridcrf`).

    λ default :data:`GRIDCRF_LAMBDA` (toolkit baseline, no published value): the demo search's 0.5 under the
    earlier shared-Z rule, converted at that run's counts; gradient descent on σ wants a much smaller λ
    than the pseudo-label solver.
    """

    name = "gridcrf"
    OPTIONS = (
        LossOption("--lambda", ("lam",), f"{GRIDCRF_LAMBDA:.4g} (demo search, converted to the per-pair mean)",
                   default=GRIDCRF_LAMBDA),
        LossOption("--relaxation", ("relaxation",), "collision-divergence (any Potts relaxation)",
                   default="collision-divergence"),
        LossOption("--neighbourhood", ("neighbourhood",), "nn4 (Zhang & Boykov 2025) or nn8", default="nn4"),
        LossOption("--bandwidth", ("bandwidth",), f"{DEFAULT_BANDWIDTH:g} (Zhang & Boykov 2025, VOC)",
                   default=DEFAULT_BANDWIDTH),
    )

    def __init__(self, lam: float | None = None, relaxation: str | None = None, neighbourhood: str | None = None,
                 bandwidth: float | None = None):
        from wsss.potts.relaxations import get_relaxation

        given = {"lam": lam, "relaxation": relaxation, "neighbourhood": neighbourhood, "bandwidth": bandwidth}
        lam, relaxation, neighbourhood, bandwidth = (self.option_default(k) if v is None else v for k, v in given.items())
        get_relaxation(relaxation)  # validates the name
        if neighbourhood not in ("nn4", "nn8"):
            raise UserError(f"--neighbourhood {neighbourhood}: the grid CRF loss needs nn4 or nn8.")
        lam = float(lam)
        check_numbers([("--lambda", lam, 0, None),
                       ("--bandwidth", bandwidth, 0, None, {"low_open": True, "reason": "the grid weights divide by s²"})])
        self.lam, self.relaxation, self.neighbourhood, self.bandwidth = lam, relaxation, neighbourhood, bandwidth

    def terms(self, logits, batch):
        from wsss.losses.gridcrf import gridcrf_term

        probs = torch.softmax(logits.float(), dim=1)
        crf = gridcrf_term(probs, batch.image, batch.valid, relaxation=self.relaxation,
                           neighbourhood=self.neighbourhood, bandwidth=self.bandwidth)
        return {"pce": partial_ce_term(logits, batch.labels, batch.valid), "crf": Term(self.lam * crf.total, crf.count)}

    def options(self):
        return {"lam": self.lam, "relaxation": self.relaxation, "neighbourhood": self.neighbourhood, "bandwidth": self.bandwidth}


class DenseCRFFamily(TrainingLoss):
    """``densecrf`` / ``ncut`` / ``kernelcut``: pCE + λ · mean over the batch's images of R(σ) with the
    bilateral filter library (:func:`wsss.losses.densecrf.densecrf_loss` / ``ncut_loss`` / ``kernelcut_loss``,
    per-image sums; rloss's normalization). ``dense`` options are passed through as keyword arguments (``sigma_rgb``, ``sigma_xy``, ``scale``,
    ``gamma``, ``exact``, ...; defaults are that module's: rloss's recommended σ_rgb 15, σ_xy 100,
    scale 0.5). Default λ: :func:`default_dense_weight`. One subclass per loss name."""

    def __init__(self, lam: float | None = None, dense: dict[str, Any] | None = None):
        self.lam = float(lam) if lam is not None else float(self.option_default("lam"))
        self.extra = dict(dense or {})
        check_numbers([("--lambda", self.lam, 0, None)])
        for key, value in self.extra.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                positive = key.startswith("sigma") or key == "scale"
                check_numbers([(f"--crf-option {key}", value, 0 if positive else None, None, {"low_open": positive})])
        fn = self._fn()
        params = inspect.signature(fn).parameters
        unknown = sorted(k for k in self.extra if k not in params or k in ("probs", "image", "valid", "reduction"))
        if unknown:
            allowed = [k for k in params if k not in ("probs", "image", "valid", "reduction")]
            raise UserError(f"--crf-option {unknown[0]}: not an option of --loss {self.name}. Known: {', '.join(allowed)}.")

    def _fn(self):
        from wsss.losses import densecrf

        return getattr(densecrf, f"{self.name}_loss")

    def terms(self, logits, batch):
        probs = torch.softmax(logits.float(), dim=1)
        reg = self._fn()(probs, batch.image.float(), batch.valid[:, None], **self.extra)
        return {"pce": partial_ce_term(logits, batch.labels, batch.valid),
                "crf": Term.of(self.lam * reg, probs.shape[0])}

    def options(self):
        return {"lam": self.lam, **self.extra}


def default_dense_weight(name: str) -> float:
    """Default λ of the dense losses (weights of the per-image sum averaged over the batch's images):
    ``densecrf``: :data:`wsss.losses.densecrf.DENSECRF_WEIGHT` (the calibration to rloss's recommended
    setting); ``kernelcut``: :data:`KERNELCUT_WEIGHT`; ``ncut``: :data:`NCUT_WEIGHT` (CamVid search, converted)."""
    if name == "ncut":
        return NCUT_WEIGHT
    if name == "kernelcut":
        return KERNELCUT_WEIGHT
    return DENSECRF_WEIGHT


def _dense_options(name: str, lam_help: str) -> tuple[LossOption, ...]:
    return (
        LossOption("--lambda", ("lam",), lam_help, default=default_dense_weight(name)),
        LossOption("--crf-option", ("dense",), f"a keyword of wsss.losses.densecrf.{name}_loss, KEY=VALUE "
                   "(repeatable, e.g. sigma_rgb=15; defaults: that function's)", default={}, kind="pairs"),
    )


class DenseCRFLoss(DenseCRFFamily):
    """``densecrf``: pCE + λ R_CRF(σ) (Tang et al. 2018)."""

    name = "densecrf"
    OPTIONS = _dense_options("densecrf", f"{DENSECRF_WEIGHT:.4g} (rloss's recommended weight 2e-9 × its batch 12, "
                             "lattice-scale corrected)")


class NCutLoss(DenseCRFFamily):
    """``ncut``: pCE + λ R_NC(σ) (Tang et al. 2018)."""

    name = "ncut"
    OPTIONS = _dense_options("ncut", f"{NCUT_WEIGHT:.4g} (CamVid search, converted)")


class KernelCutLoss(DenseCRFFamily):
    """``kernelcut``: pCE + λ R_KC(σ) (Tang et al. 2018)."""

    name = "kernelcut"
    OPTIONS = _dense_options("kernelcut", f"{KERNELCUT_WEIGHT:.4g} (CamVid search, converted)")


#: Mirror-descent steps per batch of ``--loss collision`` when none are given (the offline ``wsss solve``
#: default is 50 at lr 1), with :data:`TRAINING_SOLVER_LR` and :data:`TRAINING_START_DOWNSAMPLE`: the
#: training budget measured with benchmarks/train_step.py and tests/test_solver_reduced.py
#: (docs/methods.md §4.5). Soft Jaccard to an exact reference (1000 mirror steps at lr 1 from the
#: 100-iteration full-resolution convex start, float64) against the previous budget's (20 steps at lr 1
#: after a full-resolution start: trained as well as 50 on the demo data, docs/demo-results.md):
#: higher on toy batches with a MobileNetV2 after 40 pCE steps (K 21, 128²) and with blurred noisy
#: predictions (K 3, 64²), not lower by more than a point with the untrained network; the solve ≈ 4×
#: faster (with the closed-form gradient). The previous budget stays reachable: ``--solver-steps 20
#: --solver-lr 1 --solver-option start_downsample=1``.
TRAINING_SOLVER_STEPS = 15
#: Mirror-descent step size of ``--loss collision`` when none is given (offline: 1.0): at lr 3 a step
#: moves much further towards the exact reference (10 steps after 40 pCE steps: 44–50 % at lr 2, 58–62 %
#: at lr 3, energy rising again at lr 4).
TRAINING_SOLVER_LR = 3.0
#: ``start_downsample`` of ``--loss collision`` (offline: 1): the convex start solved at half resolution
#: (4× fewer pixels) and upsampled; the full-resolution mirror steps repair the boundaries.
TRAINING_START_DOWNSAMPLE = 2
#: Precision of the convex start's CG in training (float32: ≈ 1.7× faster than float64 there, same
#: pseudo-labels to 1.5e-4; benchmarks/train_step.py).
TRAINING_CG_DTYPE = "float32"


class SelfLabelingLoss(TrainingLoss):
    """``collision``: soft self-labeling (:mod:`wsss.losses.self_labeling`), or hard with ``hard=True``.

    Network step: pCE (mean over seeds) + ``weight`` · mean over ``V∖S`` of CE(y, σ); ``weight`` default
    ``η · SL_WEIGHT_PER_ETA`` (η of the solver, 0.3 by default), the conversion of the demo-tuned setting.

    The solver options are a :class:`wsss.potts.solver.SolverConfig` (defaults: the potts library's,
    i.e. collision CE + collision divergence on NN4, the ``mirror`` optimizer: convex start + preconditioned
    mirror descent, here :data:`TRAINING_SOLVER_STEPS` steps at lr :data:`TRAINING_SOLVER_LR` per batch after
    a half-resolution convex start (:data:`TRAINING_START_DOWNSAMPLE`); ``optimizer=sgd`` gives the paper's
    200 GD steps at lr 0.075).
    Default warm-up: 20 % of the epochs (toolkit choice, the paper's length is unknown; kept by the CamVid
    search, docs/results.md: 0 / 20 / 40 % → 27.8 / 31.0 / 32.9 % val mIoU, within its 3-point margin).
    """

    name = "collision"
    default_warmup_fraction = 0.2
    OPTIONS = (
        LossOption("--solver-option", ("solver",), "any other SolverConfig field, KEY=VALUE (repeatable)",
                   default={}, kind="pairs"),
        LossOption("--lambda", ("solver", "lam"), f"the solver's Potts weight, {_SOLVER.lam:g} (demo search, sum "
                   "energy)", default=_SOLVER.lam),
        LossOption("--eta", ("solver", "eta"), f"{_SOLVER.eta:g} in the solver's sum energy (an unverified secondary "
                   "source's value, confirmed on the demo data against 0.1 and 1.0); the network step weights the mean of CE(y,σ) over unlabelled pixels by "
                   f"η × {SL_WEIGHT_PER_ETA:.4g} (the demo setting converted)", default=_SOLVER.eta),
        LossOption("--relaxation", ("solver", "relaxation"), f"{_SOLVER.relaxation}", default=_SOLVER.relaxation),
        LossOption("--ce", ("solver", "ce"), f"standard, reverse or collision; {_SOLVER.ce} "
                   "(Zhang & Boykov 2025's best)", default=_SOLVER.ce),
        LossOption("--neighbourhood", ("solver", "neighbourhood"), "nn4, nn8, or dn with bilinear/quadratic; "
                   f"{_SOLVER.neighbourhood} (Zhang & Boykov 2025)", default=_SOLVER.neighbourhood),
        LossOption("--bandwidth", ("solver", "bandwidth"), f"{_SOLVER.bandwidth:g} (Zhang & Boykov 2025, VOC)",
                   default=_SOLVER.bandwidth),
        LossOption("--solver-steps", ("solver", "steps"), f"mirror {TRAINING_SOLVER_STEPS} after a convex start at "
                   f"1/{TRAINING_START_DOWNSAMPLE} resolution (toolkit training budget, benchmarks/train_step.py, "
                   "docs/methods.md §4.5), sgd 200 (Zhang & Boykov 2025)"),
        LossOption("--solver-lr", ("solver", "lr"), f"mirror {TRAINING_SOLVER_LR:g} in training (toolkit, "
                   "preconditioned; docs/methods.md §4.5), sgd 0.075 (Zhang & Boykov 2025)"),
        LossOption("--solver-optimizer", ("solver", "optimizer"), "mirror (convex start + preconditioned mirror "
                   "descent, toolkit), sgd (Zhang & Boykov 2025's plain gradient descent) or adam; "
                   f"{_SOLVER.optimizer}", default=_SOLVER.optimizer),
        LossOption("--hard", ("hard",), "hard self-labeling (one-hot arg-max of y)", default=False, kind="switch"),
        LossOption(None, ("weight",), f"network-step weight of the mean CE(y,σ) over unlabelled pixels; "
                   f"η × {SL_WEIGHT_PER_ETA:.4g}"),
    )

    def __init__(self, solver: Any = None, hard: bool | None = None, weight: float | None = None):
        self.solver = solver if solver is not None else solver_config({}, training=True)
        self.hard = bool(self.option_default("hard") if hard is None else hard)
        self.weight = float(weight) if weight is not None else self.solver.eta * SL_WEIGHT_PER_ETA
        self.last_pseudo_labels: Tensor | None = None

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "SelfLabelingLoss":
        return cls(solver_config(options.get("solver", {}), training=True), hard=options.get("hard"),
                   weight=options.get("weight"))

    def terms(self, logits, batch):
        from wsss.losses.self_labeling import self_labeling_terms

        terms, y = self_labeling_terms(logits, batch.labels, batch.image, batch.valid, self.solver, self.hard,
                                       weight=self.weight)
        self.last_pseudo_labels = y
        return terms

    def options(self):
        return {"hard": self.hard, "weight": self.weight, "solver": dataclasses.asdict(self.solver)}


def solver_config(options: dict[str, Any], training: bool = False) -> Any:
    """A :class:`wsss.potts.solver.SolverConfig` from option values (unknown keys → UserError).

    ``training``: the ``mirror`` optimizer without explicit ``steps`` / ``lr`` gets :data:`TRAINING_SOLVER_STEPS` /
    :data:`TRAINING_SOLVER_LR`, and the convex start runs at ``1/``:data:`TRAINING_START_DOWNSAMPLE`
    resolution in :data:`TRAINING_CG_DTYPE` unless ``start_downsample`` / ``cg_dtype`` are given.
    """
    names = {f.name: f for f in dataclasses.fields(SolverConfig)}
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise UserError(f"--solver-option {unknown[0]}: unknown solver option. Known: {', '.join(names)}.")
    options = dict(options)
    if training and options.get("optimizer", SolverConfig.optimizer) == "mirror":
        for key, value in (("steps", TRAINING_SOLVER_STEPS), ("lr", TRAINING_SOLVER_LR)):
            if options.get(key) is None:
                options[key] = value
    if training:
        for key, value in (("cg_dtype", TRAINING_CG_DTYPE), ("start_downsample", TRAINING_START_DOWNSAMPLE)):
            if options.get(key) is None:
                options[key] = value
    config = SolverConfig(**options)
    config.resolved()  # validates names and ranges now, not at the first batch
    return config


#: every loss of ``wsss train --loss``, by name (the order of ``--help``)
LOSSES: dict[str, type[TrainingLoss]] = {cls.name: cls for cls in (
    PartialCE, FullCE, GridCRFLoss, DenseCRFLoss, NCutLoss, KernelCutLoss, SelfLabelingLoss, PseudoCE, URSSLoss, SPMLLoss)}
#: --loss names
LOSS_NAMES = tuple(LOSSES)


def loss_class(name: str) -> type[TrainingLoss]:
    """The class of the loss ``name`` (:class:`UserError` for an unknown name)."""
    if name not in LOSSES:
        raise UserError(f"--loss {name}: unknown loss. Choose one of: {', '.join(LOSS_NAMES)}.")
    return LOSSES[name]


def make_loss(name: str, options: dict[str, Any] | None = None) -> TrainingLoss:
    """Build the loss ``name`` with its ``options``: a dict whose keys are the first elements of the keys the
    loss declares in :attr:`TrainingLoss.OPTIONS` (e.g. ``gridcrf``: lam, relaxation, neighbourhood,
    bandwidth; ``densecrf``/``ncut``/``kernelcut``: lam, dense (keyword options of the
    :mod:`wsss.losses.densecrf` function); ``collision``: solver (dict of
    :class:`~wsss.potts.solver.SolverConfig` fields), hard, weight (η_net); ``pseudo``: hard). Other keys raise
    :class:`UserError`.
    """
    cls = loss_class(name)
    options = dict(options or {})
    extra = sorted(set(options) - cls.option_keys())
    if extra:
        raise UserError(f"--loss {name}: options {extra} do not apply to this loss. Remove them.")
    return cls.from_options(options)
