"""Contrastive (InfoNCE) loss over a batch whose members are grouped by a shared attribute.

Chen et al. 2021, "Artistic Style Transfer with Internal-external Learning and Contrastive
Learning" (NeurIPS), sec. 3.3, eq. 8–9: for an anchor output, the positive is another output
that shares its style (style contrast) or its content (content contrast), the negatives are
outputs that share neither, and

``l = -log( exp(q·k+ / tau) / (exp(q·k+ / tau) + sum_k- exp(q·k- / tau)) )``

on L2-normalised projections ``q, k``. Outputs that share the other attribute are left out of
the negatives (an output with the anchor's content is not pushed away in the style space),
as the authors' code builds its comparison lists.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import OptionError

__all__ = ["grouped_info_nce"]


def grouped_info_nce(embeddings: Tensor, groups: Tensor, others: Tensor, temperature: float) -> Tensor:
    """Sum over anchors of the InfoNCE loss of ``embeddings`` grouped by ``groups``.

    Args:
        embeddings: ``(N, D)`` L2-normalised projections.
        groups: ``(N,)`` integer labels: members with the anchor's label are its positives
            (each positive is scored against the negatives separately and averaged, as
            supervised contrastive learning does with several positives).
        others: ``(N,)`` labels of the other attribute: members sharing it with the anchor
            are neither positives nor negatives.
        temperature: ``tau`` (Chen et al. 2021: 0.2).

    Returns:
        A scalar: the sum over anchors that have a positive (Chen et al. sum over the batch).
    """
    if embeddings.dim() != 2 or groups.shape != (embeddings.shape[0],) or others.shape != groups.shape:
        raise ValueError(f"need (N, D) embeddings with (N,) labels, got {tuple(embeddings.shape)}, "
                         f"{tuple(groups.shape)}, {tuple(others.shape)}")
    if not temperature > 0:
        raise OptionError(f"the contrastive temperature must be > 0, got {temperature}")
    embeddings = embeddings.to(torch.promote_types(embeddings.dtype, torch.float32))  # bf16 autocast -> float32
    logits = embeddings @ embeddings.t() / temperature
    count = embeddings.shape[0]
    itself = torch.eye(count, dtype=torch.bool, device=embeddings.device)
    same_group = groups[:, None] == groups[None, :]
    same_other = others[:, None] == others[None, :]
    positive = same_group & ~itself & ~same_other
    negative = ~same_group & ~same_other
    # log sum_k- exp(q.k-/tau) per anchor (-inf when there is no negative: then the loss is 0)
    negatives = torch.logsumexp(logits.masked_fill(~negative, float("-inf")), dim=1, keepdim=True)
    per_pair = torch.logaddexp(logits, negatives) - logits  # -log softmax of each positive against the negatives
    per_pair = per_pair.masked_fill(~positive, 0.0)
    positives = positive.sum(1)
    has = positives > 0
    return (per_pair.sum(1)[has] / positives[has]).sum()
