"""Connects a causal LM to the log-prob math: forward over prompt + sampled completion ids.

Two switchable speed-ups, both off by default and both falling back to the plain path when the
model does not fit them (checked once per model, numerically):
* fused_head: run the decoder, then the LM head fused with the log-softmax per chunk of
  positions (algo.logprobs.head_logprobs_N), only on real completion positions; no
  vocabulary-sized tensor is built for the whole micro-batch, in forward or backward.
* share_prompt: rows of a micro-batch with the same prompt (a GRPO group) run the prompt once;
  its KV cache is indexed out to the rows, so gradients from every row flow back into it.
"""

from __future__ import annotations

import contextlib
import weakref

import torch

from grpokit.algo.logprobs import entropy_BT, head_logprobs_N, token_logprobs_BT
from grpokit.rollout.generate import Rollout, eval_mode, positions_from_mask

_SPLIT_CHECKED: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()


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


def completion_hidden_BTH(model, rollout: Rollout, *, share_prompt: bool = False) -> torch.Tensor:
    """Final hidden states (after the last norm) at the positions that predict each completion
    token: the last prompt position and every completion token but the last."""
    decoder = model.get_decoder()
    T, L = rollout.completion_ids_BT.shape[1], rollout.prompt_ids_BL.shape[1]
    mask_BS = torch.cat([rollout.prompt_mask_BL, rollout.completion_mask_BT[:, : T - 1].long()], dim=1)
    pos_BS = positions_from_mask(mask_BS)
    if share_prompt:
        key_BK = torch.cat([rollout.prompt_ids_BL, rollout.prompt_mask_BL], dim=1)
        uniq_UK, row_to_u_B = torch.unique(key_BK, dim=0, return_inverse=True)
        if uniq_UK.shape[0] < key_BK.shape[0]:
            out = decoder(input_ids=uniq_UK[:, :L], attention_mask=uniq_UK[:, L:],
                          position_ids=positions_from_mask(uniq_UK[:, L:]), use_cache=True)
            cache = out.cache
            if cache is not None:  # None under gradient checkpointing: fall through to one forward
                last_B1H = out.last_hidden_state[row_to_u_B, -1:]
                if T == 1:
                    return last_B1H
                cache.batch_select_indices(row_to_u_B)
                rest = decoder(input_ids=rollout.completion_ids_BT[:, : T - 1], attention_mask=mask_BS,
                               position_ids=pos_BS[:, L:], cache=cache, use_cache=True)
                return torch.cat([last_B1H, rest.last_hidden_state], dim=1)
    ids_BS = torch.cat([rollout.prompt_ids_BL, rollout.completion_ids_BT[:, : T - 1]], dim=1)
    out = decoder(input_ids=ids_BS, attention_mask=mask_BS, position_ids=pos_BS, use_cache=False)
    return out.last_hidden_state[:, L - 1 :]


def _plain_head(model) -> torch.nn.Linear | None:
    """The output layer when it is a bias-free torch.nn.Linear applied as is, else None."""
    if not hasattr(model, "get_decoder") or not hasattr(model, "get_output_embeddings"):
        return None
    head = model.get_output_embeddings()
    if type(head) is not torch.nn.Linear or head.bias is not None or not head.weight.is_floating_point():
        return None
    return head


def _split_ok(model, rollout: Rollout, *, share_prompt: bool) -> bool:
    """Whether decoder + head (+ the shared prompt) gives the model's own log-probs: checked once
    per model on two copies of one row of the first rollout, in eval mode without gradients.
    Catches heads that scale or soft-cap logits and caches that do not share cleanly."""
    state = _SPLIT_CHECKED.setdefault(model, {})
    if share_prompt not in state:
        state[share_prompt] = False
        head = _plain_head(model)
        if head is not None:
            rows = rollout.select(torch.zeros(2, dtype=torch.long, device=rollout.lengths_B.device))
            with eval_mode(model), torch.no_grad():
                want_BT = token_logprobs_BT(completion_logits_BTV(model, rows), rows.completion_ids_BT)
                got_BT = _split_logprobs_BT(model, rows, temperature=1.0, chunk=256, share_prompt=share_prompt,
                                            fused_head=True)
            tol = 1e-4 if head.weight.dtype == torch.float32 else 5e-2
            state[share_prompt] = bool(((want_BT - got_BT).abs() * rows.completion_mask_BT).max() <= tol)
    return state[share_prompt]


def _split_logprobs_BT(model, rollout: Rollout, *, temperature: float, chunk: int, share_prompt: bool,
                       fused_head: bool) -> torch.Tensor:
    """Log-probs from the decoder's hidden states and the head applied here (padding gets 0)."""
    hidden_BTH = completion_hidden_BTH(model, rollout, share_prompt=share_prompt)
    mask_BT = rollout.completion_mask_BT.bool()
    head = model.get_output_embeddings()
    if not fused_head:
        logp_BT = token_logprobs_BT(head(hidden_BTH), rollout.completion_ids_BT, temperature=temperature, chunk=chunk)
        return logp_BT * mask_BT
    logp_N = head_logprobs_N(hidden_BTH[mask_BT], head.weight, rollout.completion_ids_BT[mask_BT],
                             temperature=temperature, chunk=chunk)
    return torch.zeros(mask_BT.shape, dtype=logp_N.dtype, device=logp_N.device).masked_scatter(mask_BT, logp_N)


def completion_logprobs_BT(
    model, rollout: Rollout, *, temperature: float = 1.0, chunk: int = 256, with_entropy: bool = False,
    fused_head: bool = False, share_prompt: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log pi(o_t | prompt, o_<t) for every completion token (and the entropy when asked).

    fused_head / share_prompt: see the module docstring; with either, padding positions get 0
    instead of the pad token's log-prob (they are masked out of every loss anyway)."""
    if (fused_head or share_prompt) and not with_entropy and _split_ok(model, rollout, share_prompt=share_prompt):
        return _split_logprobs_BT(model, rollout, temperature=temperature, chunk=chunk, share_prompt=share_prompt,
                                  fused_head=fused_head), None
    logits_BTV = completion_logits_BTV(model, rollout)
    logp_BT = token_logprobs_BT(logits_BTV, rollout.completion_ids_BT, temperature=temperature, chunk=chunk)
    ent_BT = entropy_BT(logits_BTV, temperature=temperature, chunk=chunk) if with_entropy else None
    return logp_BT, ent_BT


@contextlib.contextmanager
def dropout_off(model: torch.nn.Module):
    """No dropout inside, while the model stays in train mode (gradient checkpointing, which
    transformers applies only in train mode, keeps working) and gradients flow: the rate of every
    torch.nn.Dropout-like module (LoRA's lora_dropout included) and every `attention_dropout`
    (transformers' attention) is 0 until the block ends, then restored."""
    changed: list[tuple[torch.nn.Module, str, float]] = []
    for module in model.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd) and module.p > 0:
            changed.append((module, "p", module.p))
        rate = getattr(module, "attention_dropout", None)
        if isinstance(rate, float) and rate > 0:
            changed.append((module, "attention_dropout", rate))
    for module, attr, _ in changed:
        setattr(module, attr, 0.0)
    try:
        yield
    finally:
        for module, attr, rate in changed:
            setattr(module, attr, rate)
