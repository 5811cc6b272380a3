"""EFDM: arbitrary style transfer by exact feature distribution matching.

Paper: Zhang, Li, Wang, Wang & Zhou 2022, "Exact Feature Distribution Matching for Arbitrary
Style Transfer and Domain Generalization" (CVPR). AdaIN (Huang & Belongie 2017) matches the
per-channel mean and standard deviation of the VGG-19 relu4_1 features; EFDM matches their
whole empirical distribution by sort-matching (exact histogram matching): per channel, the
content values keep their order and take the style values of the same rank
(:func:`atelier.ops.stats.exact_feature_distribution_matching`). The paper builds on AdaIN's
encoder-decoder and replaces the AdaIN transform with EFDM, so this method runs on the shipped
AdaIN decoder (same weights, same header checks).

Deviations from the paper:
    * The decoder is AdaIN's as trained (with AdaIN in the loop), not retrained with EFDM.
    * When the style's feature map has another number of positions than the content's, its
      sorted values are resampled to the content's count by linear interpolation.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..ops.stats import exact_feature_distribution_matching
from ..pipelines.base import option, register
from ..pipelines.feedforward import AdaINDecoderConfig, FeatureMatchingMethod

__all__ = ["EFDM", "EFDMConfig"]


@dataclass(frozen=True)
class EFDMConfig(AdaINDecoderConfig):
    """Options of EFDM inference (Zhang et al. 2022)."""

    decoder: str = option("", "AdaIN decoder weights (.safetensors) EFDM decodes with; default: the shipped "
                              "adain_decoder")


@register
class EFDM(FeatureMatchingMethod):
    """Encoder -> exact feature distribution matching at relu4_1 -> AdaIN's trained decoder."""

    name = "efdm"
    summary = "arbitrary style, feed-forward: exact feature distribution matching (sort-matching) at relu4_1 " \
              "+ AdaIN's decoder"
    paper = "Zhang et al. 2022"
    Config = EFDMConfig

    def match(self, content: Tensor, style: Tensor, content_mask: Tensor | None) -> Tensor:
        """Sort-matching: per channel, the content's ranks take the style's values."""
        return exact_feature_distribution_matching(content, style, content_mask=content_mask)
