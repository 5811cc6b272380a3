"""Loss terms on encoder features and the criterion that composes them."""

from .moments import CAFFE_FEATURE_SCALES, feature_mse, layer_scale, mean_std_loss
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
    "CAFFE_FEATURE_SCALES",
    "ContentLoss",
    "GramStyleLoss",
    "HistogramStyleLoss",
    "LossTerm",
    "PerceptualCriterion",
    "StyleTarget",
    "TotalVariationLoss",
    "encode",
    "feature_mse",
    "layer_scale",
    "mean_std_loss",
]
