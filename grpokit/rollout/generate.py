"""Rollout: sample G completions for each of P prompts in one batched loop.

Returns token ids and lengths, never only text: the loss is computed on exactly these ids.
The model runs in eval mode while sampling (no dropout in the samples). The decoder that
computes the logits sits behind rollout/decoders.py's protocol.
Row b of every [B, ...] tensor belongs to prompt b // G.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Iterable

import torch

from grpokit.algo.logprobs import completion_mask_BT
from grpokit.algo.sampling import sample_next_B
from grpokit.rollout.decoders import DecoderFactory, choose_decoder


@dataclass
class Rollout:
    prompt_ids_BL: torch.Tensor  # left-padded prompts, repeated G times
    prompt_mask_BL: torch.Tensor  # 1 on real prompt tokens
    completion_ids_BT: torch.Tensor  # right-padded with pad_id; EOS included when emitted
    lengths_B: torch.Tensor  # completion tokens per row, EOS counted
    ended_B: torch.Tensor  # True where the row emitted EOS (False = truncated)
    group_size: int
    entropy_BT: torch.Tensor | None = None  # sampler's entropy at each completion position (free to keep)
    logprobs_BT: torch.Tensor | None = None  # log-prob of each sampled token under the sampling policy (logprobs=True)
    # Multi-turn episodes (rollout/multiturn.py): the completion region holds every token after the
    # first prompt (model turns, tool results, template tokens); 1 exactly where the model sampled.
    loss_mask_BT: torch.Tensor | None = None
    episodes: list | None = None  # [B] envs.base.Episode of each row (multi-turn only)

    @property
    def completion_mask_BT(self) -> torch.Tensor:
        """[B, T] 1 on every real completion token: what the forward attends to."""
        return completion_mask_BT(self.lengths_B, self.completion_ids_BT.shape[1])

    @property
    def train_mask_BT(self) -> torch.Tensor:
        """[B, T] 1 on the tokens the loss trains on: the sampled ones (the completion mask for a
        single-turn rollout; loss_mask_BT for a multi-turn one, which excludes tool results)."""
        mask_BT = self.completion_mask_BT
        return mask_BT if self.loss_mask_BT is None else mask_BT * self.loss_mask_BT.to(mask_BT.dtype)

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
            None if self.logprobs_BT is None else self.logprobs_BT[rows_B, :T],
            None if self.loss_mask_BT is None else self.loss_mask_BT[rows_B, :T],
            None if self.episodes is None else [self.episodes[int(i)] for i in rows_B],
        )


def concat_rollouts(parts: list["Rollout"], pad_id: int) -> "Rollout":
    """Rollouts of the same group size (e.g. several sampling rounds of one step) as one, rows in
    order. Each tensor field is padded to the widest part by its shape name: `_BL` on the left
    (prompts; pad_id for ids, 0 for masks), `_BT` on the right (pad_id for ids, 0 otherwise),
    `_B` and lists (episodes) concatenated. A field that is None in any part is None in the result."""
    if not parts:
        raise ValueError("concat_rollouts needs at least one rollout")
    if len({p.group_size for p in parts}) != 1:
        raise ValueError(f"rollouts of different group sizes: {[p.group_size for p in parts]}")
    out = {}
    for f in dataclasses.fields(Rollout):
        values = [getattr(p, f.name) for p in parts]
        if f.name == "group_size" or any(v is None for v in values):
            out[f.name] = values[0] if f.name == "group_size" else None
        elif isinstance(values[0], list):  # episodes
            out[f.name] = [x for v in values for x in v]
        elif f.name.endswith(("_BL", "_BT")):
            width, fill = max(v.shape[1] for v in values), pad_id if "ids" in f.name else 0
            left = f.name.endswith("_BL")
            out[f.name] = torch.cat([torch.nn.functional.pad(v, (width - v.shape[1], 0) if left else
                                                             (0, width - v.shape[1]), value=fill) for v in values])
        else:
            out[f.name] = torch.cat(values)
    return Rollout(**out)


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
    eos_id: int | Iterable[int],
    pad_id: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    min_new_tokens: int = 0,
    generator: torch.Generator | None = None,
    decoder: DecoderFactory | None = None,
    share_prefill: bool = True,
    logprobs: bool = False,
) -> Rollout:
    """Sample group_size completions per prompt with a KV cache. eos_id: one id or several (every
    end-of-turn id, data.chat.stop_token_ids); a row ends at the first, kept in lengths_B and the
    loss mask. prompts: P token-id lists (unpadded). Tokens are drawn by algo.sampling.sample_next_B
    (temperature 0 = greedy); min_new_tokens forbids EOS before that many tokens. decoder: a
    DecoderFactory (rollout/decoders.py); None takes the fastest one the model supports (the
    lean decoder for llama-family models, else the model's own forward, logged once with the
    reason). Internal, for the benchmark's ablations and tests: share_prefill=False prefills
    every sample's prompt instead of once per group (the same tokens, slower). logprobs keeps
    each sampled token's log-prob under the temperature-scaled distribution it was drawn from
    (before top-k/top-p; end-of-turn ids banned below min_new_tokens), read off the sampler's pass."""
    device = next(model.parameters()).device
    ids_PL, mask_PL = left_pad(prompts, pad_id, device)
    G = group_size
    if not share_prefill:
        ids_PL, mask_PL = ids_PL.repeat_interleave(G, 0), mask_PL.repeat_interleave(G, 0)
    repeat = G if share_prefill else 1
    with eval_mode(model):
        factory = decoder or choose_decoder(model, ids_PL.shape[1] + max_new_tokens)
        dec = factory(model, ids_PL, mask_PL, positions_from_mask(mask_PL), repeat, max_new_tokens)
        ids_BL, mask_BL = ids_PL.repeat_interleave(repeat, 0), mask_PL.repeat_interleave(repeat, 0)
        B = ids_BL.shape[0]
        finished_B = torch.zeros(B, dtype=torch.bool, device=device)
        stop_S = stop_ids_S(eos_id, device)
        tokens, entropies, logps, lengths_B = [], [], [], torch.zeros(B, dtype=torch.long, device=device)
        for step in range(max_new_tokens):
            logits_BV = dec.logits_BV()
            if step < min_new_tokens:  # the logits are this step's own tensor: edit in place
                logits_BV[:, stop_S] = float("-inf")
            tok_B, ent_B, logp_B = sample_next_B(logits_BV, temperature=temperature, top_k=top_k, top_p=top_p,
                                                 generator=generator)
            if ent_B is not None:
                entropies.append(ent_B)
            if logprobs and logp_B is not None:  # read off the sampler's own pass: no extra work
                logps.append(logp_B)
            tok_B = torch.where(finished_B, torch.full_like(tok_B, pad_id), tok_B)
            tokens.append(tok_B)
            lengths_B += (~finished_B).long()
            finished_B = finished_B | torch.isin(tok_B, stop_S)
            if bool(finished_B.all()) or step == max_new_tokens - 1:
                break
            dec.feed(tok_B, finished_B)
    completion_BT = torch.stack(tokens, dim=1) if tokens else torch.empty(B, 0, dtype=torch.long, device=device)
    return Rollout(ids_BL, mask_BL, completion_BT, lengths_B, finished_B, G, _stacked_BT(entropies), _stacked_BT(logps))


def stop_ids_S(eos_id: int | Iterable[int], device) -> torch.Tensor:
    """The distinct end-of-turn ids [S] as a tensor (one id or several)."""
    ids = [eos_id] if isinstance(eos_id, int) else eos_id
    return torch.tensor(sorted({int(i) for i in ids}), dtype=torch.long, device=device)


def _stacked_BT(columns: list[torch.Tensor]) -> torch.Tensor | None:
    """Per-step [B] columns as one [B, T] tensor, or None when nothing was kept."""
    return torch.stack(columns, dim=1) if columns else None
