"""Default weights of the network losses, and where each comes from (torch-free, so the command line can
show them in ``--help``).

Reductions the weights refer to (:mod:`wsss.losses.term`): pCE is the mean over the seed pixels, the
DenseCRF / normalized-cut / kernel-cut terms are λ × the mean over the batch's images of the per-image sum
(rloss's convention), the grid CRF is λ × the mean over valid pairs, and the self-labeling network step's
η-term is its weight × the mean over the unlabelled valid pixels. The weights tuned under the earlier rule
(every term a batch sum over the valid pixels) are converted exactly at their tuning runs' counts
(:mod:`wsss.losses.conversion`); the arithmetic is written out next to each.
"""

from __future__ import annotations

from wsss.losses.conversion import CAMVID_TUNING, DEMO_TUNING

#: rloss recommended setting (its README command): σ_rgb 15, σ_xy 100, scale 0.5.
DENSECRF_SIGMA_RGB = 15.0
DENSECRF_SIGMA_XY = 100.0
DENSECRF_SCALE = 0.5
#: fitted scale of the rloss lattice at σ_rgb 15 / σ_xy 50 (mean of three CamVid frames).
C_RL = 0.56
#: fitted scale of our BilateralFilter, same measurement (benchmarks/bilateral.py --calibrate): three
#: CamVid train frames 240×180 (0001TP_006690, 0006R0_f02730, 0016E5_04740): 0.999, 0.943, 0.962.
C_TK = 0.968
#: rloss's recommended batch size N_rl and lr (its README command: batch 12, lr 0.007).
N_RL = 12
LR_RL = 0.007
#: λ_tk = N_rl · w · (c_rl / c_tk) · (s_rl / s_tk)⁴ with w = 2e-9, s_rl = 0.5, s_tk = :data:`DENSECRF_SCALE`
#: (≈ 1.388e-8 at the defaults); the matching lr is ``LR_RL / N_RL`` ≈ 5.8e-4.
DENSECRF_WEIGHT = N_RL * 2e-9 * (C_RL / C_TK) * (0.5 / DENSECRF_SCALE) ** 4

#: λ of ``--loss gridcrf`` under the earlier shared-Z rule: the best of {6, 2, 0.5} in the demo-data search
#: (docs/demo-results.md: val mIoU 56.4 / 67.3 / 68.9), kept by the CamVid search (29.2 / 29.9 / 30.0).
GRIDCRF_LAMBDA_SHARED_Z = 0.5
#: Default λ of ``--loss gridcrf`` (mean over valid pairs): 0.5 converted at the demo tuning run's counts,
#: ``0.5 · pairs / seeds`` (:mod:`wsss.losses.conversion`).
GRIDCRF_LAMBDA = DEMO_TUNING.per_pair(GRIDCRF_LAMBDA_SHARED_Z)

#: λ of ``ncut`` under the earlier shared-Z rule, chosen by the CamVid search (docs/results.md, "Defaults from
#: evidence": val mIoU 35.1 / 29.1 / 20.7 at λ 1.5e3 / 4.5e3 / 1.35e4, one cpu-budget run each).
NCUT_WEIGHT_SHARED_Z = 1.5e3
#: Default λ of ``ncut`` (mean over images): 1500 converted at the CamVid search's counts, ``1500 · images / seeds``.
NCUT_WEIGHT = CAMVID_TUNING.per_image(NCUT_WEIGHT_SHARED_Z)

#: λ of ``kernelcut`` under the earlier shared-Z rule: ⅓ of that rule's DenseCRF weight 7.752e-5, chosen by the
#: CamVid search (docs/results.md: val mIoU 33.4 / 29.9 / 31.7 at ⅓, 1, 3 × 7.752e-5).
KERNELCUT_WEIGHT_SHARED_Z = 7.752e-5 / 3.0
#: Default λ of ``kernelcut`` (mean over images): converted at the CamVid search's counts.
KERNELCUT_WEIGHT = CAMVID_TUNING.per_image(KERNELCUT_WEIGHT_SHARED_Z)

#: Network-step weight of the self-labeling η-term per unit of the solver's η: under the earlier shared-Z
#: rule the network step was ``[Σ_S pCE + η Σ_{V∖S} CE] / Z`` with the solver's η 0.3 (demo search); as a
#: mean over ``V∖S`` the same loss at the demo tuning run's counts needs ``η · unlabelled / seeds``.
SL_WEIGHT_PER_ETA = DEMO_TUNING.per_unlabelled(1.0)
