"""Rollout: sample G completions for each of P prompts in one batched loop.

Returns token ids and lengths, never only text: the loss is computed on exactly these ids
(DESIGN pitfall 2). The model runs in eval mode while sampling (pitfall 6).
Row b of every [B, ...] tensor belongs to prompt b // G.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from grpokit.algo.logprobs import completion_mask_BT, entropy_BT
from grpokit.algo.sampling import sample_next_B


@dataclass
class Rollout:
    prompt_ids_BL: torch.Tensor  # left-padded prompts, repeated G times
    prompt_mask_BL: torch.Tensor  # 1 on real prompt tokens
    completion_ids_BT: torch.Tensor  # right-padded with pad_id; EOS included when emitted
    lengths_B: torch.Tensor  # completion tokens per row, EOS counted
    ended_B: torch.Tensor  # True where the row emitted EOS (False = truncated)
    group_size: int
    entropy_BT: torch.Tensor | None = None  # sampler's entropy at each completion position (free to keep)

    @property
    def completion_mask_BT(self) -> torch.Tensor:
        return completion_mask_BT(self.lengths_B, self.completion_ids_BT.shape[1])

    def select(self, rows_B: torch.Tensor) -> "Rollout":
        """The rows given by an index tensor, with padding columns that every chosen row has in
        common removed (no compute on padding). Group structure is not kept."""
        prompt_mask_BL = self.prompt_mask_BL[rows_B]
        first = int((prompt_mask_BL.sum(0) > 0).nonzero()[0]) if prompt_mask_BL.numel() else 0
        lengths_B = self.lengths_B[rows_B]
        T = int(lengths_B.max()) if lengths_B.numel() else 0
        return Rollout(
            self.prompt_ids_BL[rows_B, first:], prompt_mask_BL[:, first:], self.completion_ids_BT[rows_B, :T],
            lengths_B, self.ended_B[rows_B], 1,
            None if self.entropy_BT is None else self.entropy_BT[rows_B, :T],
        )


def left_pad(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack token lists into [P, L] ids and mask, padded on the left."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        if p:
            ids[row, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[row, width - len(p) :] = 1
    return ids.to(device), mask.to(device)


def positions_from_mask(mask_BS: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on the first real token of a left-padded row."""
    return (mask_BS.cumsum(-1) - 1).clamp(min=0)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@torch.no_grad()
def generate(
    model,
    prompts: list[list[int]],
    *,
    group_size: int,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    min_new_tokens: int = 0,
    generator: torch.Generator | None = None,
    share_prefill: bool = True,
) -> Rollout:
    """Sample group_size completions per prompt with a KV cache, stopping rows at EOS.

    share_prefill runs the prompt forward once per prompt and copies its cache G times, instead
    of once per sample; the result is the same tokens either way."""
    device = next(model.parameters()).device
    ids_PL, mask_PL = left_pad(prompts, pad_id, device)
    G = group_size
    if not share_prefill:
        ids_PL, mask_PL = ids_PL.repeat_interleave(G, 0), mask_PL.repeat_interleave(G, 0)
    with eval_mode(model):
        out = model(input_ids=ids_PL, attention_mask=mask_PL, position_ids=positions_from_mask(mask_PL),
                    use_cache=True, logits_to_keep=1)
        cache, logits_BV = out.past_key_values, out.logits[:, -1]
        if share_prefill and G > 1:
            cache.batch_repeat_interleave(G)
            logits_BV = logits_BV.repeat_interleave(G, 0)
        ids_BL, mask_BL = (ids_PL.repeat_interleave(G, 0), mask_PL.repeat_interleave(G, 0)) if share_prefill else (ids_PL, mask_PL)
        B = ids_BL.shape[0]
        next_pos_B = mask_BL.sum(-1)
        attn_BS = mask_BL
        finished_B = torch.zeros(B, dtype=torch.bool, device=device)
        tokens, entropies, lengths_B = [], [], torch.zeros(B, dtype=torch.long, device=device)
        for step in range(max_new_tokens):
            if step < min_new_tokens:
                logits_BV = logits_BV.clone()
                logits_BV[:, eos_id] = float("-inf")
            if temperature > 0:
                entropies.append(entropy_BT(logits_BV[:, None], temperature=temperature)[:, 0])
            tok_B = sample_next_B(logits_BV, temperature=temperature, top_k=top_k, top_p=top_p,
                                  generator=generator)
            tok_B = torch.where(finished_B, torch.full_like(tok_B, pad_id), tok_B)
            tokens.append(tok_B)
            lengths_B += (~finished_B).long()
            finished_B = finished_B | (tok_B == eos_id)
            if bool(finished_B.all()) or step == max_new_tokens - 1:
                break
            attn_BS = torch.cat([attn_BS, (~finished_B).long()[:, None]], dim=1)
            out = model(input_ids=tok_B[:, None], attention_mask=attn_BS, position_ids=next_pos_B[:, None],
                        past_key_values=cache, use_cache=True)
            cache, logits_BV = out.past_key_values, out.logits[:, -1]
            next_pos_B = next_pos_B + 1
    completion_BT = torch.stack(tokens, dim=1) if tokens else torch.empty(B, 0, dtype=torch.long, device=device)
    ent_BT = torch.stack(entropies, dim=1) if entropies else None
    return Rollout(ids_BL, mask_BL, completion_BT, lengths_B, finished_B, G, ent_BT)
