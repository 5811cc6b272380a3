"""Quality metrics for stylization results."""

from .metrics import gram_distance, ssim

__all__ = ["gram_distance", "ssim"]
