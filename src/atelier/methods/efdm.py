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

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

from ..ops.stats import exact_feature_distribution_matching
from ..pipelines.base import option, register
from ..pipelines.feedforward import FeedForwardConfig, FeedForwardMethod, Run, blend_features

__all__ = ["EFDM", "EFDMConfig"]

LAYER = "relu4_1"


@dataclass(frozen=True)
class EFDMConfig(FeedForwardConfig):
    """Options of EFDM inference (Zhang et al. 2022)."""

    decoder: str = option("", "AdaIN decoder weights (.safetensors) EFDM decodes with; default: the shipped "
                              "adain_decoder")


@register
class EFDM(FeedForwardMethod):
    """Encoder -> exact feature distribution matching at relu4_1 -> AdaIN's trained decoder."""

    name = "efdm"
    summary = "arbitrary style, feed-forward: exact feature distribution matching (sort-matching) at relu4_1 " \
              "+ AdaIN's decoder"
    paper = "Zhang et al. 2022"
    Config = EFDMConfig
    config: EFDMConfig
    decoder_layers = (LAYER,)

    def decoder_file(self, layer: str) -> str:
        return "adain_decoder"

    def decoder_path(self, layer: str) -> str:
        return self.config.decoder

    def train_hint(self, layer: str) -> str:
        return "atelier train configs/adain.yaml"

    def transfer(self, content: Tensor, styles: Sequence[Tensor], weights: Sequence[float],
                 masks: Tensor | None, precision: str, tile: int, run: Run) -> Tensor:
        content_features = self.encode_layer(content, LAYER, precision, tile)
        style_features = [self.style_features(style, LAYER, precision, tile) for style in styles]
        target = blend_features(content_features, style_features, weights,
                                lambda c, s, m: exact_feature_distribution_matching(c, s, content_mask=m),
                                masks=masks, alpha=self.config.alpha)
        return self.decode(LAYER, target, precision, tile)
