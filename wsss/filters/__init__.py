"""Dense Gaussian (bilateral) filtering: exact dense product and permutohedral lattice.

``from wsss.filters import BilateralFilter, DenseGaussianFilter`` — both built as
``F(image B×3×H×W, sigma_xy, sigma_rgb, valid=None)`` and called as ``F(x)`` on ``B×C×H×W``; see
:mod:`wsss.filters.bilateral` and ``docs/bilateral.md``.
"""

from wsss.filters.bilateral import BilateralFilter, GaussianFilterBase, image_features
from wsss.filters.dense import DenseGaussianFilter, dense_kernel_matrix
from wsss.filters.permutohedral import PermutohedralLattice

__all__ = [
    "BilateralFilter",
    "DenseGaussianFilter",
    "GaussianFilterBase",
    "PermutohedralLattice",
    "dense_kernel_matrix",
    "image_features",
]
