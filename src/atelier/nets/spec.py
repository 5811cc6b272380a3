"""One declaration per trained network: its weights file's name, what its header must say, its training config.

A method's training task exports a network under its :class:`WeightsSpec` and the method loads
it through the same spec, so the file stem, the header check and the "train it with ..." advice
are written once. Specs of networks that several methods share (the AdaIN decoder, the WCT
decoders) live next to the network in :mod:`atelier.nets.decoder`; the others in their method's
module.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from .pretrained import load_into, locate

__all__ = ["WeightsSpec"]

#: Every spec declared, in declaration order (see :meth:`WeightsSpec.for_file`).
_DECLARED: list[WeightsSpec] = []


@dataclass(frozen=True)
class WeightsSpec:
    """The weights file of one trained network.

    Attributes:
        stem: the file's stem; ``{layer}`` stands for the encoder layer of a family of
            networks, one per layer (``"wct_decoder_{layer}"``).
        config: the training config that makes the file, relative to the repository
            (``"configs/adain.yaml"``); may hold ``{layer}`` too.
        what: what the network is, for messages (``"{layer} decoder"``).
        layer: the encoder layer of a single network (recorded in its header and checked on
            load); None for a family (the layer comes from the stem) or a network without one.
    """

    stem: str
    config: str
    what: str
    layer: str | None = None

    def __post_init__(self) -> None:
        """Check the stem's format fields (only ``{layer}``, and only without a fixed layer), then register the spec."""
        fields = {name for _, name, _, _ in string.Formatter().parse(self.stem) if name}
        if fields - {"layer"} or (fields and self.layer is not None):
            raise ValueError(f"weights stem {self.stem!r}: only a '{{layer}}' field, and only without a fixed layer")
        _DECLARED.append(self)

    @staticmethod
    def for_file(stem: str) -> tuple[WeightsSpec, str] | None:
        """The declared spec whose file is ``stem``, with its layer ('' for none); None if no spec names it."""
        for spec in _DECLARED:
            layer = spec.layer_of(stem)
            if layer is not None:
                return spec, layer
        return None

    @staticmethod
    def locate_file(stem: str) -> Path:
        """The weights file ``stem`` (see :meth:`locate`), with its spec's advice when it is missing."""
        declared = WeightsSpec.for_file(stem)
        if declared is None:
            return locate(stem, train_hint="the training config that exports it")
        spec, layer = declared
        return spec.locate(layer or None)

    @property
    def per_layer(self) -> bool:
        """Whether the spec names a family of networks, one per encoder layer."""
        return "{layer}" in self.stem

    def _layer(self, layer: str | None) -> str | None:
        if self.per_layer:
            if not layer:
                raise ValueError(f"weights {self.stem!r} need a layer")
            return layer
        return self.layer

    def file(self, layer: str | None = None) -> str:
        """The file stem (of ``layer``'s network for a family)."""
        return self.stem.format(layer=self._layer(layer))

    def layer_of(self, stem: str) -> str | None:
        """The layer whose file is ``stem`` ('' when the spec has no layer).

        None when ``stem`` is not this spec's file.
        """
        if not self.per_layer:
            return (self.layer or "") if stem == self.stem else None
        prefix, _, suffix = self.stem.partition("{layer}")
        if stem.startswith(prefix) and stem.endswith(suffix) and len(stem) > len(prefix) + len(suffix):
            return stem[len(prefix):len(stem) - len(suffix)]
        return None

    def header(self, layer: str | None = None) -> dict[str, str]:
        """Header entries the file carries and loading checks (its layer, when it has one)."""
        found = self._layer(layer)
        return {"layer": found} if found else {}

    def train_hint(self, layer: str | None = None) -> str:
        """The command that makes the file (said when it is missing)."""
        return f"atelier train {self.config.format(layer=self._layer(layer))}"

    def describe(self, layer: str | None = None) -> str:
        """What the network is, for messages."""
        return self.what.format(layer=self._layer(layer))

    def locate(self, layer: str | None = None) -> Path:
        """The weights file: ``$ATELIER_HOME/weights/`` first, then the shipped one.

        See :func:`~atelier.nets.pretrained.locate`.
        """
        return locate(self.file(layer), train_hint=self.train_hint(layer))

    def load(self, network: nn.Module, path: str | Path = "", *, encoder: str | None,
             layer: str | None = None) -> nn.Module:
        """``network`` with the weights of ``path`` (default: :meth:`locate`).

        The file is checked against the header this spec expects and, when ``encoder`` is given,
        the encoder weights in use.
        """
        expect = self.header(layer) | ({"encoder": encoder} if encoder else {})
        return load_into(network, path or self.locate(layer), expect=expect, what=self.describe(layer))
