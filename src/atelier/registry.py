"""Name -> class registries (methods, training tasks), in the detectron2 style."""

from __future__ import annotations

from typing import Generic, TypeVar

from .errors import OptionError, UnknownNameError, suggest

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Classes registered under their ``name`` attribute; ``what`` names them in errors."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._classes: dict[str, type[T]] = {}

    def register(self, cls: type[T]) -> type[T]:
        """Class decorator adding ``cls`` under ``cls.name``."""
        name = cls.name  # type: ignore[attr-defined]
        if name in self._classes and self._classes[name] is not cls:
            raise ValueError(f"{self.what} {name!r} registered twice")
        self._classes[name] = cls
        return cls

    def available(self) -> dict[str, type[T]]:
        """``{name: class}``, sorted by name."""
        return dict(sorted(self._classes.items()))

    def get(self, name: str) -> type[T]:
        """The class called ``name``; :class:`UnknownNameError` with suggestions otherwise."""
        if not isinstance(name, str):
            raise OptionError(f"a {self.what} is given by its name (text, e.g. {sorted(self._classes)[0]!r}), "
                              f"got {name!r}")
        try:
            return self._classes[name]
        except KeyError:
            names = sorted(self._classes)
            raise UnknownNameError(
                f"unknown {self.what} {name!r}{suggest(name, names)} (available: {', '.join(names)})"
            ) from None
