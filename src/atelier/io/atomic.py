"""Atomic file writing: a temporary file in the target folder, renamed into place.

A crash or Ctrl-C mid-write never leaves a partial file at the destination, which matters
for images, checkpoints and exported weights alike.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import OutputNotWritableError

__all__ = ["atomic_path", "check_writable_folder"]


def check_writable_folder(folder: str | os.PathLike, what: str = "output") -> Path:
    """Check, before any work, that files can be written into ``folder``.

    The nearest existing folder on the way is probed by creating and removing a temporary file
    in it (folders that do not exist yet are created only when the output is written).

    Raises:
        OutputNotWritableError: a part of the path is a file, or the folder cannot be written.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputNotWritableError(f"{folder}: cannot write the {what} there, {existing} is a file; "
                                     "choose another output folder")
    try:
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".atelier-probe.", suffix=".part")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        reason = error.strerror or error.__class__.__name__
        raise OutputNotWritableError(f"{folder}: cannot write the {what} there ({reason}); "
                                     "choose a writable output folder") from None
    return folder


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it to ``path``.

    >>> with atomic_path("out/model.safetensors") as temp:  # doctest: +SKIP
    ...     save_file(tensors, temp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(handle)
    # mkstemp makes the file private (0600); give it the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temp, 0o666 & ~umask)
    try:
        yield Path(temp)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
