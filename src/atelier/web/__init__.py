"""``atelier serve``: the web studio and HTTP API (the optional ``web`` extra: FastAPI, uvicorn).

:mod:`atelier.web.forms` (controls from method configs) and :mod:`atelier.web.jobs` (the bounded
job queue) need no web framework; :mod:`atelier.web.app` is the FastAPI layer.
"""

from __future__ import annotations

import ctypes
import ipaddress
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import OptionError

__all__ = ["check_binding", "return_freed_memory", "serve"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(host: str, token: str | None) -> None:
    """Binding anything but loopback exposes the server to the network: require a token."""
    if not is_loopback(host) and not token:
        raise OptionError(f"binding {host} makes the studio reachable from other machines; give --token "
                          "SECRET (clients then send 'Authorization: Bearer SECRET'), or keep --host 127.0.0.1")
    if token is not None and len(token) < 8:
        raise OptionError("--token must be at least 8 characters")


def return_freed_memory() -> bool:
    """Make glibc hand freed tensor buffers back to the system (a long-running server only).

    glibc serves blocks above its mmap threshold with mmap and unmaps them on free, but after the
    first such free it raises the threshold (up to 32 MiB), so image-sized buffers then come from
    the heap, whose freed memory is rarely returned: the server's memory climbs to the high-water
    mark of every concurrent peak. Fixing the threshold at 1 MiB (which also fixes the trim
    threshold) keeps large buffers on mmap. Returns whether it was set (glibc only).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, 1 << 20))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def serve(host: str = "127.0.0.1", port: int = 8000, *, token: str | None = None, workers: int | None = None,
          queue_limit: int = 20, max_upload_mb: float = 20.0, preview_size: int = 256, device: str = "cpu",
          gallery: Sequence[str | Path] = (), log_level: str = "warning") -> None:
    """Run the studio until Ctrl-C (uvicorn); temporary files are removed on the way out."""
    check_binding(host, token)
    try:
        import uvicorn

        from .app import create_app
        from .studio import Studio, StudioSettings
    except ImportError as error:
        raise OptionError(f"atelier serve needs the web extra ({error.name} is missing): "
                          "pip install 'atelier[web]'") from None
    if queue_limit < 1 or (workers is not None and workers < 1):
        raise OptionError("--queue and --workers must be at least 1")
    if max_upload_mb <= 0:
        raise OptionError(f"--max-upload-mb must be > 0, got {max_upload_mb}")
    settings = StudioSettings(queue_limit=queue_limit, max_upload_bytes=int(max_upload_mb * 2**20),
                              preview_size=preview_size, device=device, gallery=[Path(g) for g in gallery])
    if workers is not None:
        settings.workers = workers
    try:
        with socket.socket() as probe:  # a clear message before the models load, instead of uvicorn's exit
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as error:
        raise OptionError(f"cannot listen on {host}:{port} ({error.strerror}); choose another --port") from None
    return_freed_memory()
    app = create_app(Studio(settings), token=token)
    where = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
    print(f"atelier studio on {where}{'#token=' + token if token else ''}  (API docs: {where}docs; Ctrl-C stops)")
    uvicorn.run(app, host=host, port=port, log_level=log_level)
