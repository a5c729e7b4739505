"""Evaluation: generate for a list of examples and score the completions."""

from __future__ import annotations

from typing import Callable

import torch

from grpokit.rollout import Rollout, generate


def decode_completions(tokenizer, rollout: Rollout) -> list[str]:
    """Text of each completion (its first lengths_B tokens), special tokens removed."""
    rows = [ids[: int(n)].tolist() for ids, n in zip(rollout.completion_ids_BT, rollout.lengths_B)]
    return tokenizer.batch_decode(rows, skip_special_tokens=True)


@torch.no_grad()
def generate_for(
    model, tokenizer, examples: list[dict], *, max_new_tokens: int, batch_size: int = 256, **sampling
) -> list[str]:
    """One completion per example (greedy unless sampling options say otherwise)."""
    from grpokit.data import example_prompt_ids

    texts: list[str] = []
    sampling.setdefault("temperature", 0.0)
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        rollout = generate(
            model, [example_prompt_ids(tokenizer, ex) for ex in chunk], group_size=1,
            max_new_tokens=max_new_tokens, eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id,
            **sampling,
        )
        texts.extend(decode_completions(tokenizer, rollout))
    return texts


def greedy_accuracy(
    model, tokenizer, examples: list[dict], reward_fn: Callable[[str, dict], float | None], *, max_new_tokens: int
) -> float:
    """Share of examples whose greedy completion scores above 0 (right under 1/0 and +1/-0.5/-1)."""
    texts = generate_for(model, tokenizer, examples, max_new_tokens=max_new_tokens)
    scores = [reward_fn(t, ex) for t, ex in zip(texts, examples)]
    return sum(1 for s in scores if s is not None and s > 0) / max(len(examples), 1)
