"""Loss terms on encoder features and the criterion that composes them."""

from .perceptual import (
    ContentLoss,
    GramStyleLoss,
    HistogramStyleLoss,
    LossTerm,
    PerceptualCriterion,
    StyleTarget,
    TotalVariationLoss,
    encode,
)

__all__ = [
    "ContentLoss",
    "GramStyleLoss",
    "HistogramStyleLoss",
    "LossTerm",
    "PerceptualCriterion",
    "StyleTarget",
    "TotalVariationLoss",
    "encode",
]
