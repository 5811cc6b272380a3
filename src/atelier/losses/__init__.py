"""Loss terms on encoder features and the criterion that composes them."""

from .contrastive import grouped_info_nce
from .matting import MattingLoss
from .moments import (
    CAFFE_FEATURE_SCALES,
    covariance_loss,
    feature_mse,
    gram_loss,
    gram_loss_to,
    layer_scale,
    mean_std_loss,
)
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
    "MattingLoss",
    "PerceptualCriterion",
    "StyleTarget",
    "TotalVariationLoss",
    "covariance_loss",
    "encode",
    "feature_mse",
    "gram_loss",
    "gram_loss_to",
    "grouped_info_nce",
    "layer_scale",
    "mean_std_loss",
]
