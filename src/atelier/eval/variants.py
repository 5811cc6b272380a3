"""Method variants: a method with options under one name.

``atelier eval --methods`` and the benchmarks compare them.

A *method spec* is one of:

* a registered method name: ``adain``;
* a named variant from :data:`VARIANTS`: ``lst_relu3_1`` (= ``lst`` with ``layer=relu3_1``);
* a method (or variant) with options: ``lst:layer=relu3_1``, ``wct:alpha=0.6,layers=relu5_1,relu4_1``
  (options separated by ``,`` before a ``KEY=`` or by ``:``; values are parsed like CLI values);
* any of those under a label of your choice: ``lst3=lst:layer=relu3_1``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import OptionError, UnknownNameError, suggest
from ..methods import available_methods

__all__ = ["VARIANTS", "MethodSpec", "parse_method"]

#: Variant name -> (method, options): shorthands for configurations worth comparing side by side.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "lst_relu4_1": ("lst", {"layer": "relu4_1"}),
    "lst_relu3_1": ("lst", {"layer": "relu3_1"}),
}

_LABEL = re.compile(r"^[A-Za-z0-9_.+-]+$")
_OPTION_SPLIT = re.compile(r":|,(?=\s*[A-Za-z_]\w*\s*=)")


@dataclass(frozen=True)
class MethodSpec:
    """A method to run: its ``label`` (row name), registered ``method`` name and ``options``."""

    label: str
    method: str
    options: dict[str, Any] = field(default_factory=dict)

    def pair(self) -> tuple[str, dict[str, Any]]:
        """``(method, options)``, the form of :data:`VARIANTS`."""
        return self.method, dict(self.options)


def _known_names() -> list[str]:
    return sorted({*available_methods(), *VARIANTS})


def parse_method(spec: str) -> MethodSpec:
    """The :class:`MethodSpec` a spec string names (see the module docstring).

    Raises:
        UnknownNameError: the method or variant is not known (the message suggests close names).
        OptionError: a malformed spec (an option without ``=``, an empty label).
    """
    text = spec.strip()
    head, sep, rest = text.partition(":")
    label = ""
    if "=" in head:
        label, _, head = head.partition("=")
        label, head = label.strip(), head.strip()
        if not label or not _LABEL.match(label):
            raise OptionError(f"method spec {spec!r}: a label is letters, digits and _ . + - before '='")
    name = head.strip()
    if not name:
        raise OptionError(f"method spec {spec!r}: no method name")
    if name in VARIANTS:
        method, options = VARIANTS[name][0], dict(VARIANTS[name][1])
    elif name in available_methods():
        method, options = name, {}
    else:
        names = _known_names()
        raise UnknownNameError(f"unknown method {name!r}{suggest(name, names)} (available: {', '.join(names)})")
    if sep:
        for item in _OPTION_SPLIT.split(rest):
            if not item.strip():
                continue
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise OptionError(f"method spec {spec!r}: options are KEY=VALUE, got {item!r}")
            options[key.strip()] = value.strip()
    return MethodSpec(label=label or (text if sep else name), method=method, options=options)
