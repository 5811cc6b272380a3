"""Quality metrics for stylization and translation results."""

from .domain import DomainJudge
from .metrics import gram_distance, ssim

__all__ = ["DomainJudge", "gram_distance", "ssim"]
