"""Image optimisation: the shared loop and the coarse-to-fine schedule."""

from .loop import OptimizationResult, optimize_image
from .schedule import pyramid_sizes

__all__ = ["OptimizationResult", "optimize_image", "pyramid_sizes"]
