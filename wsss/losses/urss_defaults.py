"""Defaults of ``wsss train --loss urss`` and their source (torch-free, for ``--help``): the public code of
Pan et al., "Scribble-supervised semantic segmentation by uncertainty reduction on neural representation and
self-supervision on neural eigenspace" (ICCV 2021); the paper defers them to supplementary material.
docs/methods.md, "URSS"."""

#: ω₁, weight of the soft entropy (mean over valid non-boundary pixels) [URSS code]
OMEGA1 = 1.0
#: ω₂, weight of the eigenspace self-supervision (KL summed over the n·M² entries) [URSS code]
OMEGA2 = 30.0
#: γ, weight of the trace term |tr Q̂ − tr Q| (mean over images) [URSS code]
GAMMA = 0.01
#: softmax axis of the eigenspace loss: columns [URSS code]; rows = the paper's row-stochastic P
SOFTMAX_AXIS = "columns"
#: transform of the second view, drawn once per step: random (flip or translation, 50/50) [URSS code]
TRANSFORM = "random"
TRANSFORMS = ("random", "flip", "translation")
#: boundary width of the SLIC pseudo-boundaries in pixels (toolkit: skimage's thick boundary, width 1)
BOUNDARY_WIDTH = 1
#: vertical shift of the translation in pixels at the URSS crop 465 (rows 0:385 or 80:465: 10 grid rows)
TRANSLATION_SHIFT_465 = 80
