"""Validated, frozen option dataclasses shared by methods and training tasks.

A field made with :func:`option` carries its help text (shown by ``--help`` and
``atelier methods``); values are coerced from CLI strings and YAML lists and checked.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import OptionError, UnknownNameError, suggest

__all__ = ["MethodConfig", "option", "plain_dict"]


def plain_dict(config: Any) -> dict[str, Any]:
    """A dataclass's fields as a plain-Python dict (tuples become lists), for JSON and YAML.

    The one serialisation of method configs and training configs.
    """
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def option(default: Any, help: str, *, choices: Sequence[Any] | None = None, cli: bool = True) -> Any:
    """A config field with its help text (shown by ``--help`` and ``atelier methods``)."""
    metadata = {"help": help, "choices": tuple(choices) if choices else None, "cli": cli}
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for sequence defaults: configs are frozen")
    return field(default=default, metadata=metadata)

def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Convert ``value`` to the field's type (CLI strings, lists from YAML/JSON)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if value is None and type(None) in args:
        return None
    if origin is typing.Union or str(origin) == "types.UnionType":
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(name, value, arg)
            except (OptionError, TypeError, ValueError):
                continue
        raise OptionError(f"{name}: cannot use {value!r}")
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            items = [items]
        return tuple(_coerce(name, v, args[0]) for v in items)
    if annotation is bool:
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise OptionError(f"{name} must be true or false, not {value!r}")
        return bool(value)
    if annotation in (int, float):
        try:
            number = annotation(value)
        except (TypeError, ValueError):
            raise OptionError(f"{name} must be a number, not {value!r}") from None
        if isinstance(number, float) and not math.isfinite(number):
            raise OptionError(f"{name} must be finite, not {value!r}")
        if annotation is int and isinstance(value, float) and value != number:
            raise OptionError(f"{name} must be a whole number, not {value!r}")
        return number
    if annotation is str:
        return str(value)
    return value

@dataclass(frozen=True)
class MethodConfig:
    """Base of per-method configs: frozen, validated, round-trips through dicts."""

    def __post_init__(self) -> None:
        """Coerce every field to its annotated type, check it against its ``choices``, then run :meth:`validate`."""
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = _coerce(f.name, getattr(self, f.name), hints[f.name])
            choices = f.metadata.get("choices")
            if choices and value not in choices:
                raise OptionError(
                    f"{f.name} must be one of {', '.join(map(str, choices))}, not {value!r}"
                    f"{suggest(str(value), map(str, choices))}"
                )
            object.__setattr__(self, f.name, value)
        self.validate()

    def validate(self) -> None:
        """Raise :class:`OptionError` for values outside their domain."""

    def non_negative(self, *names: str) -> None:
        """Check that the named numeric fields (or every item of tuple fields) are >= 0."""
        for name in names:
            value = getattr(self, name)
            for item in value if isinstance(value, tuple) else (value,):
                if item < 0:
                    raise OptionError(f"{name} must be >= 0, got {item}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (tuples become lists), for JSON/YAML next to outputs."""
        return plain_dict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        """Names of the config's options."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, method: str = "") -> MethodConfig:
        """Build from a dict; unknown keys raise :class:`UnknownNameError` with suggestions."""
        names = cls.field_names()
        for key in values:
            if key not in names:
                where = f" for method {method!r}" if method else ""
                raise UnknownNameError(
                    f"unknown option {key!r}{where}{suggest(key, names)} "
                    f"(options: {', '.join(names)})"
                )
        return cls(**values)
