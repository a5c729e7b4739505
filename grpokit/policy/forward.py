"""Connects a causal LM to the log-prob math: forward over prompt + sampled completion ids.

One update forward, policy_logprobs_BT. Where the model allows it, it takes the fast path:
* fused head: run the decoder, then the LM head fused with the log-softmax per chunk of
  positions (algo.logprobs.head_logprobs_N), only on real completion positions; no
  vocabulary-sized tensor is built for the whole micro-batch, in forward or backward.
* shared prompt: rows of a micro-batch with the same prompt (a GRPO group) run the prompt once;
  its KV cache is indexed out to the rows, so gradients from every row flow back into it.
Otherwise (a head that is not a plain bias-free Linear, one that scales or caps logits, a model
sharded with FSDP) it runs the model's own forward, and logs once why (rollout.fallback.
note_fallback). Whether the split reproduces the model's log-probs is checked once per model,
numerically. Both paths give the same log-probs and gradients to float rounding
(tests/test_fast_paths.py).
"""

from __future__ import annotations

import contextlib
import weakref

import torch

from grpokit.algo.logprobs import head_logprobs_N, token_logprobs_BT
from grpokit.rollout.decoders import fsdp_reason
from grpokit.rollout.fallback import note_fallback
from grpokit.rollout.generate import Rollout, eval_mode, positions_from_mask

# model -> {share_prompt: None when the split path reproduces the model's log-probs, else why not}
_SPLIT_CHECKED: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()
FALLBACK = "update: log-probs from the model's own forward, not the fused head"


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


def _shared_prompt_hidden_BTH(decoder, rollout: Rollout, mask_BS, pos_BS) -> torch.Tensor | None:
    """completion_hidden_BTH with each distinct prompt run once; None when no prompt repeats or
    the decoder returns no cache (gradient checkpointing)."""
    T, L = rollout.completion_ids_BT.shape[1], rollout.prompt_ids_BL.shape[1]
    key_BK = torch.cat([rollout.prompt_ids_BL, rollout.prompt_mask_BL], dim=1)
    uniq_UK, row_to_u_B = torch.unique(key_BK, dim=0, return_inverse=True)
    if uniq_UK.shape[0] == key_BK.shape[0]:
        return None
    out = decoder(input_ids=uniq_UK[:, :L], attention_mask=uniq_UK[:, L:],
                  position_ids=positions_from_mask(uniq_UK[:, L:]), use_cache=True)
    cache = out.cache
    if cache is None:
        note_fallback("update: each row runs its own prompt",
                      "the decoder returns no KV cache (gradient checkpointing?)")
        return None
    last_B1H = out.last_hidden_state[row_to_u_B, -1:]
    if T == 1:
        return last_B1H
    cache.batch_select_indices(row_to_u_B)
    rest = decoder(input_ids=rollout.completion_ids_BT[:, : T - 1], attention_mask=mask_BS,
                   position_ids=pos_BS[:, L:], cache=cache, use_cache=True)
    return torch.cat([last_B1H, rest.last_hidden_state], dim=1)


def completion_hidden_BTH(model, rollout: Rollout, *, share_prompt: bool = True) -> torch.Tensor:
    """Final hidden states (after the last norm) at the positions that predict each completion
    token: the last prompt position and every completion token but the last."""
    decoder = model.get_decoder()
    T, L = rollout.completion_ids_BT.shape[1], rollout.prompt_ids_BL.shape[1]
    mask_BS = torch.cat([rollout.prompt_mask_BL, rollout.completion_mask_BT[:, : T - 1].long()], dim=1)
    pos_BS = positions_from_mask(mask_BS)
    if share_prompt:
        hidden_BTH = _shared_prompt_hidden_BTH(decoder, rollout, mask_BS, pos_BS)
        if hidden_BTH is not None:
            return hidden_BTH
    ids_BS = torch.cat([rollout.prompt_ids_BL, rollout.completion_ids_BT[:, : T - 1]], dim=1)
    out = decoder(input_ids=ids_BS, attention_mask=mask_BS, position_ids=pos_BS, use_cache=False)
    return out.last_hidden_state[:, L - 1 :]


def _why_not_split(model) -> str | None:
    """Why the decoder + head split cannot run on this model (None when it may: then it is
    checked numerically)."""
    if not hasattr(model, "get_decoder") or not hasattr(model, "get_output_embeddings"):
        return f"{type(model).__name__} has no get_decoder / get_output_embeddings"
    head = model.get_output_embeddings()
    if type(head) is not torch.nn.Linear or head.bias is not None or not head.weight.is_floating_point():
        return f"the output layer is a {type(head).__name__}, not a bias-free torch.nn.Linear"
    return None


def rounding_tolerance(dtype: torch.dtype, max_abs_logit: float) -> float:
    """How far two computations of the same log-probs may differ when their logits are rounded
    to `dtype` (each to within half an eps, relative; a log-softmax moves by at most twice its
    inputs' largest change): 1e-4 + 2 * eps(dtype) * max|logit|. fp32 with logits of 30: ~1e-4;
    bf16 (eps 2^-7) with logits of 30: ~0.47, where a head that scales by 0.9 is off by ~6."""
    return 1e-4 + 2 * torch.finfo(dtype).eps * max_abs_logit


def _head_reason(model, rows: Rollout, hidden_BTH: torch.Tensor) -> str | None:
    """Why the fused head does not give the model's own log-probs (None when it does): both from
    the same final hidden states, so only what the model does after its decoder differs (a
    logit scale or soft cap in its forward, a hook on its head) beyond the rounding of logits.
    hidden_BTH: completion_hidden_BTH(model, rows, share_prompt=False)."""
    T = rows.completion_ids_BT.shape[1]
    mask_BT = rows.completion_mask_BT.bool()
    logits_BTV = completion_logits_BTV(model, rows)
    want_N = token_logprobs_BT(logits_BTV, rows.completion_ids_BT)[mask_BT]
    head = model.get_output_embeddings()
    got_N = head_logprobs_N(hidden_BTH[mask_BT], head.weight, rows.completion_ids_BT[mask_BT])
    worst = float((want_N - got_N).abs().max()) if T else 0.0
    if worst <= rounding_tolerance(logits_BTV.dtype, float(logits_BTV.abs().max())):
        return None
    return f"decoder + head differs from the model's forward by {worst:.3g} (a scaled or capped head?)"


def _shared_prompt_reason(model, rows: Rollout, own_BTH: torch.Tensor) -> str | None:
    """Why running each group's prompt once does not give every row's own hidden states (None
    when it does, to 1e-4 of their largest magnitude in fp32, 16 eps of it in a lower precision,
    where attention with and without a cache rounds differently): catches caches that do not
    share cleanly, whose rows get another row's prompt."""
    shared_BTH = completion_hidden_BTH(model, rows, share_prompt=True)
    mask_BT1 = rows.completion_mask_BT[..., None]
    worst = float(((shared_BTH - own_BTH).abs() * mask_BT1).max()) / max(float(own_BTH.abs().max()), 1e-30)
    if worst <= max(1e-4, 16 * torch.finfo(own_BTH.dtype).eps):
        return None
    return f"the shared prompt's cache gives hidden states that differ by {worst:.3g} of their size"


def _split_reason(model, rollout: Rollout, *, share_prompt: bool) -> str | None:
    """None when decoder + fused head (+ the shared prompt) gives the model's own log-probs, else
    why not: checked once per model on two copies of one row of the first rollout, in eval mode
    without gradients, each part against the model's own computation with the rounding of the
    model's dtype allowed (rounding_tolerance). Catches heads that scale or soft-cap logits and
    caches that do not share cleanly."""
    sharded = fsdp_reason(model)  # not cached: sharding changes the model's class in place
    if sharded is not None:
        return sharded
    state = _SPLIT_CHECKED.setdefault(model, {})
    if share_prompt not in state:
        reason = _why_not_split(model)
        if reason is None:
            rows = rollout.select(torch.zeros(2, dtype=torch.long, device=rollout.lengths_B.device))
            with eval_mode(model), torch.no_grad():
                own_BTH = completion_hidden_BTH(model, rows, share_prompt=False)  # each row its own prompt
                reason = _head_reason(model, rows, own_BTH) or (
                    _shared_prompt_reason(model, rows, own_BTH) if share_prompt else None)
        state[share_prompt] = reason
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


def policy_logprobs_BT(model, rollout: Rollout, *, temperature: float = 1.0, chunk: int = 256,
                       fused_head: bool = True, share_prompt: bool = True) -> torch.Tensor:
    """log pi(o_t | prompt, o_<t) [B, T] in float32 for every completion token, differentiable.

    temperature must be the sampler's; chunk is the positions per log-softmax chunk. Padding
    positions are 0 on the fast path and the pad token's log-prob otherwise (every loss masks
    them). Internal, for the benchmark's ablations and tests: fused_head=False / share_prompt=
    False force the slower variants (the same values to float rounding)."""
    if fused_head or share_prompt:
        reason = _split_reason(model, rollout, share_prompt=share_prompt)
        if reason is None:
            return _split_logprobs_BT(model, rollout, temperature=temperature, chunk=chunk,
                                      share_prompt=share_prompt, fused_head=fused_head)
        note_fallback(FALLBACK, reason)
    logits_BTV = completion_logits_BTV(model, rollout)
    return token_logprobs_BT(logits_BTV, rollout.completion_ids_BT, temperature=temperature, chunk=chunk)


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
