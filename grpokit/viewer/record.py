"""The rollouts log (rollouts.jsonl): one JSON object per training step, written by the trainer
(rank 0's share of the step's prompts) and read by `grpokit view`.

Per step, with P prompts and G completions each (B = P * G rows; row b belongs to prompt b // G):

    step          int               the step, as in metrics.jsonl (1 = the first update)
    group_size    int               G
    indices       [P] int           prompt index in the training set (stable across the run)
    prompts       [P]               the prompt as the data gave it (a string or chat messages)
    answers       [P]               the reference answer (a string; null when there is none)
    completion_ids [B][len] int     sampled token ids, EOS included when emitted
    texts         [B] str           decoded completions, special tokens removed
    rewards       [B] float|null    total reward (null: a component returned None)
    components    {name: [B]}       each reward component, float or null
    advantages    [B] float         the advantage that trained the completion
    lengths       [B] int           completion tokens (EOS counted)
    ended         [B] bool          emitted EOS; false = truncated at rollout.max_new_tokens
    logprobs      [B][len] float    log-prob of each sampled token under the sampling policy
                                    (temperature-scaled, before top-k/top-p), 4 decimals
    entropies     [B][len] float    entropy of the sampling distribution at each token, 3 decimals

Keys are only ever added; a reader must skip keys it does not know and tolerate missing ones
(older logs lack everything after `rewards`)."""

from __future__ import annotations

import math

import torch

LOGPROB_DECIMALS = 4
ENTROPY_DECIMALS = 3


def _rows(values_BT: torch.Tensor | None, lengths: list[int], decimals: int) -> list[list[float]] | None:
    if values_BT is None:
        return None
    table = values_BT.detach().float().cpu().tolist()
    return [[round(v, decimals) for v in row[:n]] for row, n in zip(table, lengths)]


def _plain(value):
    """JSON-able as it is (str, number, chat messages) or its str()."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, dict)):
        return value
    return str(value)


def _finite(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def rollout_record(examples: list[dict], indices: list[int], rollout, texts: list[str], scored,
                   adv_B: torch.Tensor) -> dict:
    """The log line of one step (without `step`, which the metrics log adds). `rollout`: the
    step's Rollout (lengths_B, ended_B, completion_ids_BT, optional logprobs_BT/entropy_BT);
    `scored`: its ScoreResult; `adv_B`: [B] advantages of these rows."""
    lengths = [int(n) for n in rollout.lengths_B.tolist()]
    record = {
        "group_size": rollout.group_size,
        "indices": list(indices),
        "prompts": [_plain(ex.get("prompt")) for ex in examples],
        "answers": [None if ex.get("answer") is None else str(ex.get("answer")) for ex in examples],
        "completion_ids": [row[:n] for row, n in zip(rollout.completion_ids_BT.tolist(), lengths)],
        "texts": texts,
        "rewards": [_finite(x) for x in scored.total],
        "components": {k: [_finite(x) for x in v] for k, v in scored.components.items()},
        "advantages": [round(x, 6) for x in adv_B.detach().float().cpu().tolist()],
        "lengths": lengths,
        "ended": [bool(x) for x in rollout.ended_B.tolist()],
    }
    for key, values, decimals in (("logprobs", rollout.logprobs_BT, LOGPROB_DECIMALS),
                                  ("entropies", rollout.entropy_BT, ENTROPY_DECIMALS)):
        rows = _rows(values, lengths, decimals)
        if rows is not None:
            record[key] = rows
    return record
