"""Running layer sequences with each resize-convolution fused into one transposed convolution.

Decoders and generators upsample by "resize-convolution" (Odena, Dumoulin, Olah 2016): nearest 2x
upsampling, reflection padding by one pixel, a 3x3 convolution. :func:`run_layers` runs a list of
modules and replaces each such triple by :func:`~atelier.ops.padding.upsample_reflect_conv3x3`,
which computes the same values without the upsampled copy and with 2.25x fewer multiply-adds.
The modules stay as they are, so the weights files' keys do not change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from ..ops.padding import upsample_reflect_conv3x3

__all__ = ["run_layers"]


def _is_nearest_2x(module: nn.Module) -> bool:
    return isinstance(module, nn.Upsample) and module.mode == "nearest" and module.scale_factor == 2


def _is_reflect_1(module: nn.Module) -> bool:
    return isinstance(module, nn.ReflectionPad2d) and tuple(module.padding) == (1, 1, 1, 1)


def _is_plain_3x3(module: nn.Module) -> bool:
    return (isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3) and module.stride == (1, 1)
            and module.dilation == (1, 1) and module.groups == 1 and module.padding == (0, 0))


def _resize_conv(layers: Sequence[nn.Module], index: int) -> tuple[nn.Conv2d, list[nn.Module], int] | None:
    """The resize-convolution that starts at ``index``: its 3x3 convolution, the rest, the next index.

    ``None`` when the layers there are not upsample -> reflection pad(1) -> 3x3 convolution. The
    pad and convolution are either the next two layers or the first two modules of a ``Sequential``
    that comes next (its remaining modules, e.g. a ReLU, then run as usual).
    """
    if not _is_nearest_2x(layers[index]) or index + 1 >= len(layers):
        return None
    follower = layers[index + 1]
    if isinstance(follower, nn.Sequential):
        parts = list(follower.children())
        if len(parts) >= 2 and _is_reflect_1(parts[0]) and _is_plain_3x3(parts[1]):
            return parts[1], parts[2:], index + 2  # type: ignore[return-value]  # checked above
        return None
    if index + 2 < len(layers) and _is_reflect_1(follower) and _is_plain_3x3(layers[index + 2]):
        return layers[index + 2], [], index + 3  # type: ignore[return-value]  # checked above
    return None


def run_layers(layers: Sequence[nn.Module], x: Tensor, *, at_upsample: Callable[[Tensor], Tensor] | None = None,
               fuse: bool = True) -> Tensor:
    """Apply ``layers`` in order to ``x``, each resize-convolution as one transposed convolution.

    Args:
        layers: the modules, in order (a ``Sequential`` that starts with reflection pad(1) and a
            3x3 convolution counts as those two layers followed by the rest of it).
        x: the input.
        at_upsample: applied where the layers upsample: to the map before a fused upsampling, so
            it must commute with nearest upsampling (a per-channel affine map computed from the
            map's mean and variance does), otherwise after the upsampling.
        fuse: ``False`` runs every module as it is (the reference; needed when ``at_upsample``
            does not commute with upsampling, e.g. per-pixel masks).
    """
    index = 0
    while index < len(layers):
        fused = _resize_conv(layers, index) if fuse else None
        if fused is not None:
            conv, rest, index = fused
            if at_upsample is not None:
                x = at_upsample(x)
            x = upsample_reflect_conv3x3(x, conv.weight, conv.bias)
            for module in rest:
                x = module(x)
            continue
        layer = layers[index]
        x = layer(x)
        if isinstance(layer, nn.Upsample) and at_upsample is not None:
            x = at_upsample(x)
        index += 1
    return x
