"""A studio on tiny random networks (fast tier) and encoded test images, for the web tests."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from PIL import Image

from atelier.methods import get_method
from atelier.nets import VGGDecoder
from atelier.web.studio import Studio, StudioSettings
from helpers import smooth_image, stripes_image


class Spread(torch.nn.Module):
    """A random decoder whose output is spread over (0, 1) (standardised, then a sigmoid), so that a
    change of the features (of α) shows in the 8-bit image."""

    def __init__(self, decoder: torch.nn.Module):
        super().__init__()
        self.inner, self.scale = decoder, decoder.scale

    def forward(self, features: torch.Tensor, **extra: Any) -> torch.Tensor:
        image = self.inner(features, **extra)
        return torch.sigmoid((image - image.mean()) / image.std().clamp_min(1e-6))


def tiny_factory(encoder):
    """Build methods on the tiny random encoder (and a random AdaIN decoder)."""
    torch.manual_seed(0)
    decoder = Spread(VGGDecoder("relu4_1", widths=encoder.widths))

    def build(name: str, options: dict[str, Any]):
        cls = get_method(name)
        if name in ("adain", "efdm"):
            return cls(encoder=encoder, decoders={"relu4_1": decoder}, precision="fp32", **options)
        if name in ("gatys", "photo"):
            return cls(encoder=encoder, precision="fp32", **options)
        return cls(**options)

    return build


def tiny_studio(encoder, **settings: Any) -> Studio:
    values: dict[str, Any] = {"workers": 1, "queue_limit": 4, "preview_size": 64}
    values.update(settings)
    return Studio(StudioSettings(**values), build_method=tiny_factory(encoder))


def encoded(image: torch.Tensor, fmt: str = "PNG") -> bytes:
    """A ``(1, 3, H, W)`` tensor as image file bytes."""
    array = (image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt)
    return buffer.getvalue()


def content_png(height: int = 48, width: int = 64) -> bytes:
    return encoded(smooth_image(height, width, seed=1))


def style_png() -> bytes:
    return encoded(stripes_image(48, 48, period=6))


@contextlib.contextmanager
def running_server(app) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free local port in a thread; yields its base address."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(10)
