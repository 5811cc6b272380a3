"""Running transformer networks with ONNX Runtime on the CPU.

For the small per-style networks (a few GFLOP per 512 px image, few channels at full
resolution) PyTorch's eager CPU kernels spend much of their time in layout copies and
padding; ONNX Runtime's fused CPU kernels run the same graph several times faster (numbers in
docs/BENCHMARKS.md). The graph is exported once per weights file with PyTorch's ONNX exporter
and cached in ``$ATELIER_HOME/cache/onnx/`` under the hash of the weights, written
atomically. ``onnxruntime`` is optional (``pip install 'atelier[onnx]'``, which also
installs ``onnx`` for the exporter).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..encoders.weights import atelier_home
from ..errors import OptionError
from ..io.atomic import atomic_path
from ..ops.padding import pad_to_multiple
from .transformer import STRIDE, TransformerNet

__all__ = ["OnnxTransformer", "onnxruntime_available"]

#: Bumped when the exported graph changes, so stale cache files are not reused.
GRAPH_VERSION = 2


def onnxruntime_available() -> bool:
    """Whether ``onnxruntime`` (to run) and ``onnx`` (PyTorch's exporter needs it) can be imported."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class _Body(nn.Module):
    """The exported function: padded image ``(1, 3, H, W)`` and weights ``(1, S)`` -> image."""

    def __init__(self, net: TransformerNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: Tensor, style_weights: Tensor) -> Tensor:
        return self.net.body(image, style_weights)


def _fingerprint(net: TransformerNet) -> str:
    digest = hashlib.sha256(f"v{GRAPH_VERSION}:{net.architecture()}".encode())
    for key, value in sorted(net.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:24]


def _export(net: TransformerNet) -> bytes:
    net = net.float().eval()
    example = (torch.rand(1, 3, 64, 64), torch.full((1, net.styles), 1.0 / net.styles))
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Body(net), example, buffer,  # type: ignore[arg-type]  # a file object works; the stub says path
            input_names=["image", "style_weights"], output_names=["stylized"],
            dynamic_axes={"image": {2: "height", 3: "width"}, "stylized": {2: "height", 3: "width"}},
            opset_version=17, dynamo=False,
        )
    return buffer.getvalue()


def _write_cache(path: Path, model: bytes) -> None:
    """Cache the exported graph at ``path``, or warn and go on without the cache.

    The warning comes when the cache folder cannot be written (a read-only or misplaced
    ``$ATELIER_HOME``).
    """
    try:
        with atomic_path(path) as temp:
            Path(temp).write_bytes(model)
    except OSError as error:
        warnings.warn(f"cannot cache the ONNX graph in {path.parent} ({error.strerror or error}); it is exported "
                      "again next run. Set ATELIER_HOME to a writable folder to keep it", RuntimeWarning,
                      stacklevel=3)


class OnnxTransformer:
    """A :class:`TransformerNet` compiled for ONNX Runtime (CPU).

    Called like the network, for ``(1, 3, H, W)`` images and ``(S,)`` style weights.
    """

    def __init__(self, net: TransformerNet, *, threads: int | None = None, cache: bool = True) -> None:
        if not onnxruntime_available():
            raise OptionError("backend onnxruntime needs the onnxruntime and onnx packages: "
                              "pip install 'atelier[onnx]' (or use backend torch)")
        import onnxruntime

        self.styles = net.styles
        path = atelier_home() / "cache" / "onnx" / f"transformer-{_fingerprint(net)}.onnx"
        model: bytes | None = None
        if cache:
            try:
                model = path.read_bytes() if path.is_file() else None
            except OSError:  # an unreadable cache file is re-exported (and rewritten when possible)
                model = None
        if model is None:
            model = _export(net)
            if cache:
                _write_cache(path, model)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = threads or torch.get_num_threads()
        self.session: Any = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def __call__(self, image: Tensor, style_weights: Tensor) -> Tensor:
        """``image`` ``(1, 3, H, W)`` in [0, 1], ``style_weights`` ``(S,)`` -> ``(1, 3, H, W)``."""
        height, width = image.shape[-2:]
        padded, _ = pad_to_multiple(image.float(), STRIDE)
        weights = style_weights.float().reshape(1, self.styles).cpu().numpy()
        (output,) = self.session.run(None, {"image": np.ascontiguousarray(padded.cpu().numpy()),
                                            "style_weights": weights})
        return torch.from_numpy(output)[..., :height, :width]
