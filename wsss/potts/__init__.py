"""Potts relaxations, cross-entropy terms, neighbourhoods and the soft pseudo-label solver of
self-labeling (docs/methods.md §4; notation §1).

- :mod:`wsss.potts.relaxations` — ``P(a, b)``: bilinear, quadratic, normalized-quadratic, collision-ce,
  collision-divergence, log-quadratic (:data:`RELAXATIONS`).
- :mod:`wsss.potts.crossentropy` — ``CE(y, σ)``: standard, reverse, collision, quadratic
  (:data:`CROSS_ENTROPIES`).
- :mod:`wsss.potts.neighbourhoods` — NN4 / NN8 grids and DN, Potts energies.
- :mod:`wsss.potts.linear` — multigrid CG for the convex quadratic problem (random walker with priors).
- :mod:`wsss.potts.solver` — :class:`SolverConfig`, :func:`solve_pseudolabels`, :func:`soft_jaccard`.
"""

from wsss.potts.crossentropy import CROSS_ENTROPIES, get_cross_entropy, safe_log
from wsss.potts.errors import PottsError
from wsss.potts.neighbourhoods import (
    DenseNeighbourhood,
    GridNeighbourhood,
    grid_neighbourhood,
    make_neighbourhood,
)
from wsss.potts.relaxations import RELAXATIONS, get_relaxation
from wsss.potts.solver import OPTIMIZERS, SolverConfig, paper_config, soft_jaccard, solve_pseudolabels

__all__ = [
    "CROSS_ENTROPIES",
    "OPTIMIZERS",
    "RELAXATIONS",
    "DenseNeighbourhood",
    "GridNeighbourhood",
    "PottsError",
    "SolverConfig",
    "get_cross_entropy",
    "get_relaxation",
    "grid_neighbourhood",
    "make_neighbourhood",
    "paper_config",
    "safe_log",
    "soft_jaccard",
    "solve_pseudolabels",
]
