"""Attention of content positions over style positions (SANet, Park & Lee 2019, eq. 1–2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import OptionError
from ._checks import check_bchw

__all__ = ["attend"]

#: Bytes of attention scores computed at once (the queries are processed in chunks).
SCORE_BYTES = 1 << 27


def attend(query: Tensor, key: Tensor, value: Tensor, temperature: float = 1.0) -> Tensor:
    r"""``value`` re-arranged by the attention of each query position over the key positions.

    :math:`o_i = \sum_j \mathrm{softmax}_j(q_i^\top k_j / \tau)\, v_j` (Park & Lee 2019, eq. 1
    with :math:`\tau = 1`). At ``temperature`` 0 the softmax becomes the argmax: each position
    copies the value at its nearest key by dot product.

    Args:
        query: ``(B, C, H, W)`` (SANet: :math:`f(\bar F_c)`).
        key: ``(B, C, H', W')`` (:math:`g(\bar F_s)`).
        value: ``(B, C_v, H', W')`` (:math:`h(F_s)`).
        temperature: softmax temperature :math:`\tau \ge 0`.

    Returns:
        ``(B, C_v, H, W)``. The queries run in chunks of rows, so that a chunk's ``(rows, H'W')``
        score matrix would take at most :data:`SCORE_BYTES`; with ``temperature`` > 0 each chunk
        is one fused attention call (``scaled_dot_product_attention``: blocked, with the softmax
        taken on the fly, same float32 arithmetic; 1.5x faster than two products and a softmax
        at 512 px on this project's CPU, docs/BENCHMARKS.md).
    """
    for name, x in (("query", query), ("key", key), ("value", value)):
        check_bchw(x, name)
    if query.shape[1] != key.shape[1] or key.shape[-2:] != value.shape[-2:]:
        raise OptionError(f"query {tuple(query.shape)}, key {tuple(key.shape)} and value {tuple(value.shape)} "
                          "must share channels (query/key) and positions (key/value)")
    if temperature < 0:
        raise OptionError(f"temperature must be >= 0, got {temperature}")
    b, _, h, w = query.shape
    q = query.flatten(2).transpose(1, 2)  # (B, HW, C)
    k = key.flatten(2).transpose(1, 2)  # (B, H'W', C)
    v = value.flatten(2).transpose(1, 2)  # (B, H'W', C_v)
    rows = max(1, SCORE_BYTES // (4 * b * k.shape[1]))
    out = []
    for start in range(0, h * w, rows):
        chunk = q[:, start : start + rows]
        if temperature == 0:
            scores = chunk @ k.transpose(1, 2)
            out.append(torch.gather(v, 1, scores.argmax(-1, keepdim=True).expand(-1, -1, v.shape[-1])))
        else:
            # One head: (B, 1, rows, C); the scale is 1 / temperature (the paper's scores are unscaled).
            out.append(F.scaled_dot_product_attention(chunk[:, None], k[:, None], v[:, None],
                                                      scale=1.0 / temperature)[:, 0])
    return torch.cat(out, 1).transpose(1, 2).reshape(b, v.shape[-1], h, w)
