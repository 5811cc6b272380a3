"""Gatys et al. image optimisation, with histogram loss and coarse-to-fine scales.

Papers:
    Gatys, Ecker, Bethge 2016, "Image Style Transfer Using Convolutional Neural Networks" (CVPR).
    Gatys, Ecker, Bethge, Hertzmann, Shechtman 2017, "Controlling Perceptual Factors in Neural
    Style Transfer" (CVPR): spatial control (sec. 4), colour (sec. 5), scale (sec. 6).
    Risser, Wilmot, Barnes 2017, "Stable and Controllable Neural Texture Synthesis and Style
    Transfer Using Histogram Losses".

The optimisation itself (losses, coarse-to-fine pyramid, optimizer loop) is the framework's
:mod:`atelier.pipelines.optimization`, shared with the photorealistic method; its options'
defaults are this paper's, and its module notes list the deviations from the papers.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..pipelines.base import register
from ..pipelines.optimization import OptimizationConfig, OptimizationMethod

__all__ = ["Gatys", "GatysConfig"]


@dataclass(frozen=True)
class GatysConfig(OptimizationConfig):
    """Options of the Gatys method; defaults cite their source (Gatys et al. 2016, 2017; Risser et al. 2017)."""


@register
class Gatys(OptimizationMethod):
    """Image optimisation with Gram (and optionally histogram) style losses (Gatys et al. 2016)."""

    name = "gatys"
    summary = "image optimization with Gram losses on VGG-19, optional histogram loss, coarse-to-fine"
    paper = "Gatys et al. 2016; Gatys et al. 2017; Risser et al. 2017"
    Config = GatysConfig
    config: GatysConfig
