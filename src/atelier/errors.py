"""Typed exceptions raised by atelier's public API.

Every error a user can cause derives from :class:`AtelierError`; the CLI turns it into one
line on stderr and exit status 2. Each message says what is wrong and what to do.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "AtelierError",
    "ImageError",
    "ImageTooLargeError",
    "ImageTooSmallError",
    "MaskError",
    "OptionError",
    "OutputExistsError",
    "OutputNotWritableError",
    "UnknownNameError",
    "WeightsError",
    "suggest",
]


class AtelierError(Exception):
    """Base class of every error caused by user input (files, options, weights)."""


class OptionError(AtelierError, ValueError):
    """An option has an invalid value (negative weight, wrong count, unknown choice)."""


class UnknownNameError(OptionError, KeyError):
    """A name (method, layer, model) is not known; the message suggests the closest ones."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        """The message as given (``KeyError`` would show it quoted)."""
        return str(self.args[0]) if self.args else ""


class ImageError(AtelierError):
    """An image file is missing, unreadable, corrupt or of an unsupported kind."""


class ImageTooSmallError(ImageError):
    """An image is too small for the deepest encoder layer a method needs."""


class ImageTooLargeError(ImageError):
    """An image exceeds the pixel limit; raise ``max_pixels`` to allow it."""


class MaskError(AtelierError):
    """Masks are unreadable or do not match the styles (count) or the content (size)."""


class WeightsError(AtelierError):
    """A weights file is missing, corrupt, or does not have the expected layers/shapes."""


class OutputExistsError(AtelierError, FileExistsError):
    """The output file exists and ``overwrite`` was not given."""


class OutputNotWritableError(AtelierError):
    """The output's folder cannot be created or written (checked before any work)."""


def suggest(name: str, choices: Iterable[str]) -> str:
    """A "did you mean" suffix for an unknown ``name`` ('' when nothing is close).

    For the messages of :class:`UnknownNameError` and friends.
    """
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f"; did you mean {', '.join(close)}?" if close else ""
