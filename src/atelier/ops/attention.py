"""Attention of content positions over style positions (SANet, Park & Lee 2019, eq. 1–2)."""

from __future__ import annotations

import torch
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
        ``(B, C_v, H, W)``. The ``(HW, H'W')`` score matrix is formed in chunks of query rows.
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
    k = key.flatten(2)  # (B, C, H'W')
    v = value.flatten(2).transpose(1, 2)  # (B, H'W', C_v)
    rows = max(1, SCORE_BYTES // (4 * b * k.shape[-1]))
    out = []
    for start in range(0, h * w, rows):
        scores = q[:, start : start + rows] @ k
        if temperature == 0:
            out.append(torch.gather(v, 1, scores.argmax(-1, keepdim=True).expand(-1, -1, v.shape[-1])))
        else:
            out.append(torch.softmax(scores / temperature, dim=-1) @ v)
    return torch.cat(out, 1).transpose(1, 2).reshape(b, v.shape[-1], h, w)
