"""Connects a causal LM to the log-prob math: forward over prompt + sampled completion ids."""

from __future__ import annotations

import torch

from grpokit.algo.logprobs import entropy_BT, token_logprobs_BT
from grpokit.rollout import Rollout, positions_from_mask


def completion_logits_BTV(model, rollout: Rollout) -> torch.Tensor:
    """Logits that predict each completion token, from one forward over prompt + completion.

    Only the last T+1 positions go through the LM head (logits_to_keep), so the prompt's
    vocabulary-sized logits are never built."""
    T = rollout.completion_ids_BT.shape[1]
    ids_BS = torch.cat([rollout.prompt_ids_BL, rollout.completion_ids_BT], dim=1)
    mask_BS = torch.cat([rollout.prompt_mask_BL, rollout.completion_mask_BT.long()], dim=1)
    out = model(input_ids=ids_BS, attention_mask=mask_BS, position_ids=positions_from_mask(mask_BS),
                use_cache=False, logits_to_keep=T + 1)
    return out.logits[:, :T]


def completion_logprobs_BT(
    model, rollout: Rollout, *, temperature: float = 1.0, chunk: int = 256, with_entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log pi(o_t | prompt, o_<t) for every completion token (and the entropy when asked)."""
    logits_BTV = completion_logits_BTV(model, rollout)
    logp_BT = token_logprobs_BT(logits_BTV, rollout.completion_ids_BT, temperature=temperature, chunk=chunk)
    ent_BT = entropy_BT(logits_BTV, temperature=temperature, chunk=chunk) if with_entropy else None
    return logp_BT, ent_BT
