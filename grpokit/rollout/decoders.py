"""Decoders: what computes next-token logits for generate(), behind one protocol.

generate() owns the sampling loop (the sampler, EOS, lengths, min_new_tokens); a decoder owns
the model's state between tokens (its KV cache, positions, masks). Two ship:

* LeanDecoder (rollout/lean.py): grpokit's own decode step for llama / qwen2 / qwen3 / mistral,
  each group's prompt cached and attended once; the fastest where it runs.
* ModelDecoder: the model's own forward with its transformers KV cache; any causal LM.

choose_decoder() picks the lean one whenever the model allows it and otherwise logs, once per
reason, why it took the model's forward (note_fallback, shared with the update's fast path in
policy/forward.py).
"""

from __future__ import annotations

from typing import Protocol

import torch

from grpokit.rollout.fallback import note_fallback
from grpokit.rollout.lean import LeanDecoder, why_not_lean


def fsdp_reason(model) -> str | None:
    """Why a path that calls the model's modules outside its own forward cannot run: the model
    is sharded with FSDP (train.sharding), whose hooks on that forward gather the weights."""
    if not torch.distributed.is_available():
        return None
    from torch.distributed.fsdp import FSDPModule

    if isinstance(model, FSDPModule):
        return "the model is sharded with FSDP (train.sharding), which gathers weights in the model's own forward"
    return None


class Decoder(Protocol):
    """Decode state for P prompts x G samples; rows b = p * G + g, like every [B, ...] tensor.

    The seam another engine plugs into. Built by a DecoderFactory, which runs the prefill:

        factory(model, ids_PL, mask_PL, positions_PL, group_size, max_new_tokens) -> Decoder

    with the prompts left-padded (ids_PL, mask_PL [P, L], long; positions_PL counts from 0 at
    each row's first real token). generate() then alternates logits_BV() and feed() until every
    row has emitted EOS or max_new_tokens tokens are out. Pass a factory as
    `generate(..., decoder=...)` to choose one; LeanDecoder and ModelDecoder are factories.
    An engine that also samples (vLLM, say) plugs in one level up instead: a function with
    generate()'s arguments that returns a Rollout with the same row order."""

    def logits_BV(self) -> torch.Tensor:
        """Next-token logits [B, V] of every row: a fresh tensor that the caller may modify."""
        ...

    def feed(self, tok_B: torch.Tensor, finished_B: torch.Tensor) -> None:
        """Advance every row by one token (tok_B [B], long). Rows where finished_B [B] is True
        have ended: their token is padding, their later logits are discarded, and no other
        row may attend to it."""
        ...


class DecoderFactory(Protocol):
    def __call__(self, model, ids_PL: torch.Tensor, mask_PL: torch.Tensor, positions_PL: torch.Tensor,
                 group_size: int, max_new_tokens: int) -> Decoder: ...


class ModelDecoder:
    """Decode through the model's own forward and its transformers KV cache (any causal LM).
    The prompt's cache is computed once per prompt and repeated G times."""

    def __init__(self, model, ids_PL, mask_PL, positions_PL, group_size: int, max_new_tokens: int):
        self.model = model
        out = model(input_ids=ids_PL, attention_mask=mask_PL, position_ids=positions_PL, use_cache=True,
                    logits_to_keep=1)
        self.cache, self.logits = out.cache, out.logits[:, -1]
        if group_size > 1:
            self.cache.batch_repeat_interleave(group_size)
            self.logits = self.logits.repeat_interleave(group_size, 0)
        self.attn_BS = mask_PL.repeat_interleave(group_size, 0)
        self.next_pos_B = self.attn_BS.sum(-1)

    def logits_BV(self) -> torch.Tensor:
        return self.logits

    def feed(self, tok_B: torch.Tensor, finished_B: torch.Tensor) -> None:
        self.attn_BS = torch.cat([self.attn_BS, (~finished_B).long()[:, None]], dim=1)
        out = self.model(input_ids=tok_B[:, None], attention_mask=self.attn_BS, position_ids=self.next_pos_B[:, None],
                         cache=self.cache, use_cache=True)
        self.cache, self.logits = out.cache, out.logits[:, -1]
        self.next_pos_B = self.next_pos_B + 1


def choose_decoder(model, total_len: int) -> DecoderFactory:
    """The fastest decoder that runs `model` for sequences of up to total_len positions: the lean
    one, else the model's own forward (logged once per reason)."""
    reason = fsdp_reason(model) or why_not_lean(model, total_len)
    if reason is None:
        return LeanDecoder
    note_fallback("rollout: decoding with the model's own forward, not the lean decoder", reason)
    return ModelDecoder
