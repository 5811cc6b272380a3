"""Image optimisation: the shared loop, the coarse-to-fine driver and its schedule."""

from .loop import OptimizationResult, optimize_image
from .pyramid import PyramidResult, coarse_to_fine
from .schedule import pyramid_sizes

__all__ = ["OptimizationResult", "PyramidResult", "coarse_to_fine", "optimize_image", "pyramid_sizes"]
