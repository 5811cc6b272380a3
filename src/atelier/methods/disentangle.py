"""Content-style disentanglement: one network per collection, styled by any of its paintings.

Paper: Kotovenko, Sanakoyeu, Lang & Ommer 2019, "Content and Style Disentanglement for Artistic
Style Transfer" (ICCV). A content encoder ``E_c``, a style encoder ``E_s`` and a decoder ``D``
conditioned on the style code (:class:`atelier.nets.disentangle.DisentangledGenerator`) are
trained on photos and the paintings of one collection (artist or genre). A step takes photos
``x_i`` and paintings ``p_i`` with codes ``s_i = E_s(p_i)``; ``s'_i = s_{i-1}`` is another
painting's code (the batch rolled by one). With ``G(x, s) = D(E_c(x), s)``:

* adversarial (sec. 3.1): a PatchGAN log-loss, paintings real, ``G(x, s)`` and photos fake
  (the discriminator of the style-aware content loss, Sanakoyeu et al. 2018);
* reconstruction (sec. 3.2): ``|D(E_c(p), E_s(p)) - p|_1``, a painting rebuilt from its own
  content and style;
* fixpoint triplet loss (sec. 3.3): a photo stylized with painting ``a``'s code, re-encoded,
  must land nearer that code than another painting's code, by a margin ``r``:
  ``max(0, r + |E_s(G(x, s_a)) - s_a| - |E_s(G(x, s_a)) - s_b|)`` with Euclidean distances
  between unit codes (:func:`fixpoint_triplet_loss`). The negative ``s_b`` is a painting's own
  code, so this term also pushes the codes of different paintings apart: it is what keeps the
  style encoder from collapsing to one code. Plus the style fixpoint ``|E_s(G(x, s)) - s|^2``;
* fixpoint disentanglement loss (sec. 3.4): stylizing two photos with one code must give style
  codes no farther apart than the photos' own codes are:
  ``max(0, |E_s(G(x_1, s)) - E_s(G(x_2, s))| - |E_s(x_1) - E_s(x_2)|)``
  (:func:`fixpoint_disentanglement_loss`): the photo must not choose the style;
* content disentanglement: changing the style code must not change the content
  representation, ``|E_c(G(x, s)) - E_c(G(x, s'))|^2`` (:func:`disentanglement_loss`);
* the style-aware content loss ``|E_c(G(x, s)) - E_c(x)|^2`` (Sanakoyeu et al. 2018, eq. 4),
  which keeps the photo's content in the content encoder's space.

Runtime: ``atelier stylize photo.jpg --model chinese_landscape_dis --style painting.jpg`` (one
painting's style), several ``--style`` with ``--style-weights`` (their codes blended), or no
``--style`` (the collection's average code, a running mean over the training paintings).

Deviations from the paper:
    * One PatchGAN instead of the paper's multi-scale discriminator; both networks are updated
      every step (no discriminator-accuracy gating).
    * The paper's loss weights and margin are not all stated in its text; the weights here keep
      the scale of the style-aware content loss code (image and feature terms 100, adversarial
      1) and are options of the config. Style codes are unit vectors (see
      :func:`atelier.nets.disentangle.unit_code`), so the margin is in units of the sphere.
    * Style codes are centred on a running mean of the paintings' codes before the sphere
      (:class:`atelier.nets.disentangle.StyleEncoder`), and the decoder's up path uses layer
      norm: both ours, both needed here for the codes to separate and to reach the output.
    * The two fixpoint losses are written from the paper's description of them; the section
      numbers are as we read the paper, not checked against its equations' numbering.
    * The content-space disentanglement term is ours (the issue's reading of "changing the style
      code must not change the content"); the paper's sec. 3.4 term is the fixpoint one.
    * The shipped network is far narrower and shorter-trained than the paper's (CPU budget;
      see its model card and configs/disentangle_chinese_landscape.yaml).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import OptionError
from ..io.images import resize_longest
from ..nets.disentangle import DisentangledGenerator, unit_code
from ..nets.gan import PatchDiscriminator, log_loss
from ..options import MethodConfig, option
from ..pipelines.base import StylizeResult, register
from ..pipelines.memory import check_fits, generator_bytes
from ..pipelines.trained import TrainedNetworkMethod, collection_info, load_trained
from ..train.data import MIN_COLLECTION_IMAGES
from ..train.task import Phase, TrainingTask, register_task

__all__ = ["NETWORKS", "Disentangle", "DisentangleConfig", "DisentangleOptions", "DisentangleTraining",
           "code_spread", "disentanglement_loss", "fixpoint_disentanglement_loss", "fixpoint_triplet_loss",
           "load_disentangled"]

TASK = "disentangle"
#: The trained networks of this method, in one place: file stem -> the config that trains it
#: (each file's header carries the architecture, see :meth:`DisentangleTraining.metadata`).
NETWORKS = {"chinese_landscape_dis": "configs/disentangle_chinese_landscape.yaml"}
#: Longest side a style painting is resized to before the style encoder (the scale of the
#: training crops: ~160 px crops of 30-100% of a painting).
STYLE_SIDE = 256
#: Momentum of the running mean of training style codes (the collection's average style).
AVERAGE_MOMENTUM = 0.99


# -- losses --------------------------------------------------------------------------------------
def _squared_distance(a: Tensor, b: Tensor) -> Tensor:
    """Mean squared difference per row: ``(B, D), (B, D) -> (B,)``."""
    return (a.float() - b.float()).pow(2).mean(dim=1)


def _distance(a: Tensor, b: Tensor) -> Tensor:
    """Euclidean distance per row, ``(B, D), (B, D) -> (B,)`` (the paper's ``|.|_2``).

    Not squared: a squared distance has a zero gradient where two codes coincide, which is
    exactly where a collapsed style encoder sits (every code alike), so the triplet loss could
    not push it out (the first shipped network stayed there, its triplet loss at the margin).
    The small constant keeps the square root's gradient finite at zero.
    """
    return ((a.float() - b.float()).pow(2).sum(dim=1) + 1e-12).sqrt()


def fixpoint_triplet_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float) -> Tensor:
    """``mean max(0, margin + |anchor - positive| - |anchor - negative|)`` (Kotovenko et al. 2019, sec. 3.3).

    Args:
        anchor: ``E_s(G(x, s_a))`` ``(B, D)``, a photo stylized with painting ``a``'s code, re-encoded.
        positive: ``s_a = E_s(p_a)``, the code it was stylized with.
        negative: ``s_b = E_s(p_b)``, another painting's code.
        margin: ``r``, by how much the negative must be farther (Euclidean, unit codes: in [0, 2]).

    Zero when the stylization is nearer its own code than the other painting's by at least
    ``margin``; it grows when it is not. Its gradient pushes the negative painting's code away
    (which is what keeps the codes of different paintings apart).
    """
    return F.relu(margin + _distance(anchor, positive) - _distance(anchor, negative)).mean()


def fixpoint_disentanglement_loss(stylized_a: Tensor, stylized_b: Tensor, photo_a: Tensor, photo_b: Tensor) -> Tensor:
    """``mean max(0, |stylized_a - stylized_b| - |photo_a - photo_b|)`` (Kotovenko et al. 2019, sec. 3.4).

    Args:
        stylized_a: ``E_s(G(x_1, s))`` ``(B, D)``.
        stylized_b: ``E_s(G(x_2, s))``, another photo stylized with the same code ``s``.
        photo_a: ``E_s(x_1)``, the style code of the first photo itself.
        photo_b: ``E_s(x_2)``.

    Zero when the two stylizations' styles are no farther apart than the photos' own styles:
    the style of an output must come from the code, not from the photo.
    """
    return F.relu(_distance(stylized_a, stylized_b) - _distance(photo_a, photo_b)).mean()


def disentanglement_loss(content_a: Tensor, content_b: Tensor) -> Tensor:
    """``|E_c(G(x, s)) - E_c(G(x, s'))|^2``, with ``content_*`` ``(B, C, h, w)``.

    The content of a stylization must not depend on the style code.
    """
    return F.mse_loss(content_a.float(), content_b.float())


def code_spread(codes: Tensor) -> Tensor:
    """Mean Euclidean distance between the rows of ``codes`` ``(N, D)``, N >= 2 (a collapse probe).

    Zero when the style encoder gives every painting the same code; up to 2 for unit codes.
    """
    if codes.shape[0] < 2:
        raise OptionError("code_spread needs at least two codes")
    distances = torch.cdist(codes.float()[None], codes.float()[None])[0]
    return distances.sum() / (codes.shape[0] * (codes.shape[0] - 1))


# -- training ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DisentangleOptions(MethodConfig):
    """Options of content-style disentanglement training (Kotovenko et al. 2019)."""

    name: str = option("disentangle", "file stem of the exported network (e.g. chinese_landscape_dis)")
    collection: str = option("", "name of the collection (artist or genre), for the model card")
    width: int = option(32, "channels of the content encoder's first layer (as the style-aware generator: 32)")
    blocks: int = option(4, "AdaIN residual blocks of the decoder (>= 1: they carry the style)")
    code_dim: int = option(128, "length of the style code")
    disc_width: int = option(64, "channels of the discriminator's first layer (PatchGAN: 64)")
    disc_layers: int = option(3, "stride-2 layers of the PatchGAN (3 = 70x70 patches)")
    adversarial_weight: float = option(1.0, "weight of the adversarial loss (sec. 3.1)")
    reconstruction_weight: float = option(100.0, "weight of the painting reconstruction L1 (sec. 3.2)")
    content_weight: float = option(100.0, "weight of the style-aware content loss (Sanakoyeu et al. 2018, eq. 4)")
    triplet_weight: float = option(10.0, "weight of the fixpoint triplet loss (sec. 3.3)")
    triplet_margin: float = option(0.2, "margin r of the fixpoint triplet loss (Euclidean, between unit codes)")
    fixpoint_weight: float = option(10.0, "weight of the style fixpoint |E_s(G(x, s)) - s|^2 (sec. 3.3)")
    fixpoint_disentangle_weight: float = option(10.0, "weight of the fixpoint disentanglement loss (sec. 3.4)")
    disentangle_weight: float = option(100.0, "weight of the content disentanglement |E_c(G(x,s)) - E_c(G(x,s'))|^2")

    def validate(self) -> None:
        """Refuse a stem that is not a plain file name and impossible sizes."""
        if not self.name or "/" in self.name:
            raise OptionError(f"name must be a plain file stem, got {self.name!r}")
        if min(self.width, self.blocks, self.code_dim, self.disc_width, self.disc_layers) < 1:
            raise OptionError("width, blocks, code_dim, disc_width and disc_layers must be >= 1")
        self.non_negative("adversarial_weight", "reconstruction_weight", "content_weight", "triplet_weight",
                          "triplet_margin", "fixpoint_weight", "fixpoint_disentangle_weight",
                          "disentangle_weight")


def _generator(model: nn.ModuleDict) -> DisentangledGenerator:
    """The generator of the training model (typed; the model is a ModuleDict of parts)."""
    return cast(DisentangledGenerator, model["generator"])


@register_task
class DisentangleTraining(TrainingTask[nn.ModuleDict]):
    """Content encoder, style encoder, conditioned decoder and a PatchGAN; two phases per step."""

    name = TASK
    Options = DisentangleOptions
    options: DisentangleOptions
    needs_style = True
    needs_encoder = False
    min_style_images = MIN_COLLECTION_IMAGES

    def build_generator(self) -> DisentangledGenerator:
        """The generator (both encoders and the decoder) of the options' architecture."""
        opts = self.options
        return DisentangledGenerator(width=opts.width, blocks=opts.blocks, code_dim=opts.code_dim)

    def build_model(self) -> nn.ModuleDict:
        """``ModuleDict`` of the generator and the discriminator ``d``."""
        opts = self.options
        return nn.ModuleDict({"generator": self.build_generator(),
                              "d": PatchDiscriminator(width=opts.disc_width, layers=opts.disc_layers)})

    def phases(self, model: nn.ModuleDict) -> list[Phase]:
        """The generator phase, then the discriminator phase."""
        return [Phase("generator", list(_generator(model).parameters()), self.generator_losses),
                Phase("discriminator", list(model["d"].parameters()), self.discriminator_losses)]

    def generator_losses(self, model: nn.ModuleDict, photo: Tensor, painting: Tensor | None,
                         context: dict[str, Any]) -> dict[str, Tensor]:
        """Every generator term of the module docstring; leaves ``G(x, s)`` in ``context``."""
        assert painting is not None
        if photo.shape[0] < 2 or painting.shape[0] < 2:
            raise OptionError("disentangle training needs batch_size >= 2 (each step pairs a photo with another "
                              "photo and a painting with another painting)")
        opts = self.options
        g = _generator(model)
        size = photo.shape[-2:]
        raw = g.style_encoder.raw(painting)
        code = unit_code(raw - g.style_encoder.center)  # s_i = E_s(p_i); gradients reach E_s from every term
        other = code.roll(1, dims=0)  # s'_i = s_{i-1}: another painting's code
        content = g.content(photo)
        stylized = g.decode(content, code)[..., :size[0], :size[1]]  # G(x_i, s_i)
        with_other = g.decode(content, other)[..., :size[0], :size[1]]  # G(x_i, s_{i-1})
        rebuilt = g.decode(g.content(painting), code)[..., :painting.shape[-2], :painting.shape[-1]]
        anchor = g.style(stylized)
        # G(x_i, s_{i-1}) and G(x_{i-1}, s_{i-1}) share a code: the fixpoint disentanglement pair, without a
        # third decode.
        other_anchor, photo_code = g.style(with_other), g.style(photo)
        stylized_content = g.content(stylized)
        context["stylized"] = stylized.detach()
        with torch.no_grad():  # the collection's average style, for stylizing without --style
            g.average_code.mul_(AVERAGE_MOMENTUM).add_((1 - AVERAGE_MOMENTUM) * code.float().mean(0))
        g.style_encoder.follow(raw)  # after every code of this step: they all share one centre
        return {
            "g_adv": opts.adversarial_weight * log_loss(model["d"](stylized), True),
            "reconstruction": opts.reconstruction_weight * F.l1_loss(rebuilt.float(), painting.float()),
            "content": opts.content_weight * F.mse_loss(stylized_content.float(), content.float()),
            "fixpoint_triplet": opts.triplet_weight * fixpoint_triplet_loss(anchor, code, other, opts.triplet_margin),
            "fixpoint": opts.fixpoint_weight * _squared_distance(anchor, code).mean(),
            "fixpoint_disentanglement": opts.fixpoint_disentangle_weight * fixpoint_disentanglement_loss(
                other_anchor, anchor.roll(1, dims=0), photo_code, photo_code.roll(1, dims=0)),
            "disentanglement": opts.disentangle_weight * disentanglement_loss(stylized_content,
                                                                               g.content(with_other)),
        }

    def discriminator_losses(self, model: nn.ModuleDict, photo: Tensor, painting: Tensor | None,
                             context: dict[str, Any]) -> dict[str, Tensor]:
        """Paintings real; stylized photos and photos fake."""
        assert painting is not None
        if "stylized" not in context:  # no generator phase ran before (evaluation)
            with torch.no_grad():
                g = _generator(model)
                context["stylized"] = g(photo, g.style(painting))
        d, weight = model["d"], self.options.adversarial_weight
        return {"d_real": weight * log_loss(d(painting), True),
                "d_fake": weight * log_loss(d(context["stylized"].float()), False),
                "d_photo": weight * log_loss(d(photo), False)}

    def losses(self, model: nn.ModuleDict, content: Tensor, style: Tensor | None) -> dict[str, Tensor]:
        """Every generator and discriminator term on one batch."""
        context: dict[str, Any] = {}
        return self.generator_losses(model, content, style, context) | self.discriminator_losses(
            model, content, style, context)

    def sample(self, model: nn.ModuleDict, content: Tensor, style: Tensor | None) -> Tensor:
        """Each photo with the style of the painting beside it."""
        assert style is not None
        g = _generator(model)
        return g(content, g.style(style))

    def export(self, model: nn.ModuleDict) -> dict[str, nn.Module | dict[str, Tensor]]:
        """The generator (both encoders, decoder, average code); not the discriminator."""
        return {self.options.name: _generator(model).state_dict()}

    def metadata(self, stem: str) -> dict[str, str]:
        """Task, collection and the architecture (the network is rebuilt from them)."""
        opts = self.options
        return {"task": TASK, "name": stem, "collection": opts.collection or stem, "width": str(opts.width),
                "blocks": str(opts.blocks), "code_dim": str(opts.code_dim), "style_side": str(STYLE_SIDE),
                "inference": "style code of each --style (longest side style_side) blended by --style-weights, "
                             "or the collection's average code"}


# -- inference -----------------------------------------------------------------------------------
def load_disentangled(model: str) -> tuple[DisentangledGenerator, dict[str, Any]]:
    """A trained disentanglement network by name or ``.safetensors`` path, with its header facts.

    Raises:
        OptionError: no model given.
        WeightsError: missing file, another kind of network, or damaged header or weights.
    """
    net, header, path = load_trained(
        model, task=TASK, train_hint=f"atelier train {NETWORKS['chinese_landscape_dis']}",
        what="content-style disentanglement model",
        build=lambda h: DisentangledGenerator(width=int(h["width"]), blocks=int(h["blocks"]),
                                              code_dim=int(h["code_dim"])))
    return net, collection_info(header, path)


@dataclass(frozen=True)
class DisentangleConfig(MethodConfig):
    """Options of a disentanglement network at inference."""

    model: str = option("", "trained disentanglement model: a name from `atelier models` "
                            "(e.g. chinese_landscape_dis) or a .safetensors file")


@register
class Disentangle(TrainedNetworkMethod[DisentangledGenerator]):
    """A collection's network: a photo in the style of one of its paintings, a blend, or the average."""

    name = TASK
    summary = ("content-style disentanglement: a network per collection, styled by any painting of it "
               "(--model chinese_landscape_dis [--style painting.jpg ...]; no --style: the collection's average)")
    paper = "Kotovenko et al. 2019"
    Config = DisentangleConfig
    config: DisentangleConfig
    supports_masks = False
    styles_optional = True
    unloaded_info: ClassVar[dict[str, Any]] = {"collection": "?"}
    load = staticmethod(load_disentangled)

    def style_count(self) -> int:
        """Without style images: one style, the collection's average."""
        return 1

    def style_code(self, styles: Sequence[Tensor], weights: Sequence[float], device: str = "cpu") -> Tensor:
        """The blended code ``sum_i w_i E_s(style_i)`` ``(code_dim,)``, or the average code without styles."""
        net = self.network.to(device)
        if not styles:
            return net.average_code
        with torch.no_grad():
            codes = torch.cat([net.style(resize_longest(s.to(device).float(), STYLE_SIDE)) for s in styles])
        return (torch.tensor(list(weights), device=device)[:, None] * codes).sum(0)

    def stylize(self, content: Tensor, styles: Sequence[Tensor], *, style_weights: Sequence[float],
                masks: Tensor | None = None, device: str = "cpu", progress: bool = True,
                seed: int | None = None) -> StylizeResult:
        """Decode ``content`` with the blended code of ``styles`` (or the collection's average)."""
        net = self.network
        height, width = content.shape[-2:]
        check_fits(generator_bytes(height, width, net.width), width=width, height=height, what="this network")
        code = self.style_code(styles, style_weights, device)
        with torch.no_grad():
            output = net.to(device)(content.to(device).float(), code).float()
        style = f"{len(styles)} painting(s)" if styles else "average of the collection"
        return StylizeResult(image=output.clamp(0, 1).cpu(),
                             info={"model": self._info.get("name"), "collection": self._info.get("collection"),
                                   "style": style})
