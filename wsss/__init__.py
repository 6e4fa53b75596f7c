"""wsss: weakly-supervised semantic segmentation from cheap annotations.

The library behind the ``wsss`` command line: artifacts, dataset layouts, filters,
Potts relaxations and the pseudo-label solver, losses, models and the pipeline stages.
"""

__version__ = "0.1.0"
