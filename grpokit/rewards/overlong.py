"""DAPO's overlong penalty as a reward (registry name ``overlong``), and the per-completion
records that carry a completion's length to the rewards.

A reward sees ``(completion, example)``; the trainer scores each completion against a shallow
copy of its prompt's record with ``completion_tokens`` (its length in tokens, the stop token
counted), ``ended`` (False = cut off by the token limit) and ``max_new_tokens`` added
(``completion_records``). ``overlong`` reads those keys.
"""

from __future__ import annotations

from typing import Sequence

__all__ = ["completion_records", "overlong_reward"]


def completion_records(examples: Sequence[dict], group_size: int, lengths: Sequence[int],
                       ended: Sequence[bool], max_new_tokens: int) -> list[dict]:
    """One record per completion, example-major (row b belongs to examples[b // group_size]):
    the prompt's record plus ``completion_tokens``, ``ended`` and ``max_new_tokens``. The copies
    are shallow, so the prompt's ids are shared, not copied."""
    if len(lengths) != len(examples) * group_size or len(ended) != len(lengths):
        raise ValueError(f"{len(lengths)} lengths and {len(ended)} ended flags for {len(examples)} prompts x "
                         f"{group_size} completions")
    return [{**examples[b // group_size], "completion_tokens": int(n), "ended": bool(e),
             "max_new_tokens": int(max_new_tokens)} for b, (n, e) in enumerate(zip(lengths, ended))]


def overlong_reward(completion: str, example: dict, *, max_len: int = 0, cache_len: int | None = None,
                    penalty: float = 1.0) -> float:
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13) of one completion: 0 up to
    ``max_len - cache_len`` tokens, then falling linearly to ``-penalty`` at ``max_len``.

    max_len: 0 = the run's rollout.max_new_tokens. cache_len: the length of the ramp, in tokens
    (None = max_len // 5, DAPO's 4096 of 20480). Raises ValueError when the record carries no
    ``completion_tokens`` (the trainer adds it; see ``completion_records``)."""
    from .length import overlong_penalty_B  # torch, only when this reward is used

    import torch

    if "completion_tokens" not in example:
        raise ValueError("the overlong reward needs example['completion_tokens'] (the trainer adds it; "
                         "elsewhere, score records built by grpokit.rewards.overlong.completion_records)")
    limit = int(max_len) or int(example.get("max_new_tokens", 0))
    if limit <= 0:
        raise ValueError("the overlong reward needs max_len > 0 (reward.kwargs.overlong.max_len)")
    ramp = limit // 5 if cache_len is None else int(cache_len)
    n = torch.tensor([example["completion_tokens"]])
    return float(overlong_penalty_B(n, max_len=limit, cache_len=ramp, penalty=penalty)[0])
