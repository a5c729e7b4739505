"""Choosing the next token from logits: temperature, top-k, top-p (nucleus), greedy."""

from __future__ import annotations

import torch


def filter_logits_BV(logits_BV: torch.Tensor, *, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set logits outside the top-k and outside the smallest nucleus of mass >= top_p to -inf."""
    if top_k > 0 and top_k < logits_BV.shape[-1]:
        kth_B1 = torch.topk(logits_BV, top_k, dim=-1).values[:, -1:]
        logits_BV = logits_BV.masked_fill(logits_BV < kth_B1, float("-inf"))
    if top_p < 1.0:
        sorted_BV, order_BV = torch.sort(logits_BV, dim=-1, descending=True)
        cum_BV = torch.softmax(sorted_BV, dim=-1).cumsum(-1)
        drop_sorted_BV = (cum_BV - torch.softmax(sorted_BV, dim=-1)) >= top_p  # mass before token
        drop_BV = drop_sorted_BV.scatter(-1, order_BV, drop_sorted_BV)
        logits_BV = logits_BV.masked_fill(drop_BV, float("-inf"))
    return logits_BV


def sample_next_B(
    logits_BV: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token id per row. temperature == 0 means greedy (argmax)."""
    if temperature == 0.0:
        return logits_BV.argmax(dim=-1)
    logits_BV = filter_logits_BV(logits_BV.float() / temperature, top_k=top_k, top_p=top_p)
    probs_BV = torch.softmax(logits_BV, dim=-1)
    return torch.multinomial(probs_BV, 1, generator=generator).squeeze(-1)
