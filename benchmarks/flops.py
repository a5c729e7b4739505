"""FLOPs a GRPO step needs, counted from a decoder's shapes, and the machine's fp32 matmul rate.

One multiply-add is 2 FLOPs. Per token and layer, the projections cost
    2*d*(q_dim + 2*kv_dim) + 2*q_dim*d  (q, k, v, o)   +   3 * 2*d*I  (gate, up, down)
and attention over c keys costs 4*q_dim*c (scores and the weighted sum); the LM head costs 2*d*V
per position whose logits are needed. Norms, activations and softmax are left out (a few %).

What a step *needs* (the cheapest exact way to do the work; padding is never counted):
* generation (forward only): each prompt's prefill once per group; one head per prompt for the
  first sampled token; then, for every row, the body and head for each further token, the body
  attending to the prompt and the tokens before it. The last sampled token is never fed back.
* update (forward + backward = 3 x forward): only rows whose advantage is non-zero (with beta = 0
  the others contribute nothing); for each group with such rows its prompt once, and each row's
  completion tokens except the last (the last one predicts nothing) attending to prompt and
  completion; heads at the len_b positions that predict the completion tokens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelShape:
    hidden: int
    layers: int
    q_dim: int  # heads * head_dim
    kv_dim: int  # kv_heads * head_dim
    intermediate: int
    vocab: int

    @classmethod
    def from_config(cls, c) -> "ModelShape":
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        kv_heads = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
        return cls(c.hidden_size, c.num_hidden_layers, c.num_attention_heads * head_dim, kv_heads * head_dim,
                   c.intermediate_size, c.vocab_size)

    def body_per_token(self) -> int:
        d = self.hidden
        per_layer = 2 * d * (self.q_dim + 2 * self.kv_dim) + 2 * self.q_dim * d + 3 * 2 * d * self.intermediate
        return self.layers * per_layer

    def attention(self, first_ctx: int, tokens: int) -> int:
        """Attention FLOPs of `tokens` consecutive tokens, the first attending to first_ctx keys."""
        keys = tokens * first_ctx + tokens * (tokens - 1) // 2
        return self.layers * 4 * self.q_dim * keys

    def head(self, positions: int) -> int:
        return positions * 2 * self.hidden * self.vocab

    def forward(self, tokens: int, past: int = 0, heads: int = 0) -> int:
        """One forward of `tokens` tokens after `past` cached ones, with `heads` LM-head positions."""
        return tokens * self.body_per_token() + self.attention(past + 1, tokens) + self.head(heads)


def step_flops(shape: ModelShape, prompt_len_P: list[int], lengths_B: list[int], group_size: int,
               nonzero_adv_B: list[bool]) -> dict:
    """{'gen': forward FLOPs of sampling, 'update': forward+backward FLOPs of the update}.
    Row b belongs to prompt b // group_size."""
    gen = sum(shape.forward(L, heads=1) for L in prompt_len_P)
    update = 0
    for p, L in enumerate(prompt_len_P):
        rows = range(p * group_size, (p + 1) * group_size)
        for b in rows:
            n = lengths_B[b]
            gen += shape.forward(max(n - 1, 0), past=L, heads=max(n - 1, 0))
        kept = [b for b in rows if nonzero_adv_B[b]]
        if kept:
            update += shape.forward(L)
            update += sum(shape.forward(max(lengths_B[b] - 1, 0), past=L, heads=lengths_B[b]) for b in kept)
    return {"gen": gen, "update": 3 * update}


def step_record(shape, step: dict, G: int, step_s: float, gen_s: float, reward_s: float) -> dict:
    """A step record from a step's prompt lengths, completion lengths and rewards (for systems
    that do not expose their advantages: one is non-zero where a reward differs from its group's
    mean, which holds for every advantage estimator grpokit and TRL use here)."""
    lengths, rewards = step["lengths"], step["rewards"]
    nonzero, zero_groups = [], 0
    for g in range(0, len(rewards), G):
        group = rewards[g : g + G]
        mean = sum(group) / len(group)
        nonzero += [r != mean for r in group]
        zero_groups += all(r == group[0] for r in group)
    need = step_flops(shape, step["prompt_len"], lengths, G, nonzero)
    return {"step_s": step_s, "gen_s": gen_s, "reward_s": reward_s, "update_s": step_s - gen_s - reward_s,
            "completions": len(lengths), "gen_tokens": int(sum(lengths)),
            "rows_updated": step.get("rows_updated", len(lengths)),
            "zero_std_groups": zero_groups, "gen_flops": need["gen"], "update_flops": need["update"]}


def matmul_rate(size: int = 1024, seconds: float = 1.0) -> float:
    """Best fp32 FLOP/s of square matmuls on this machine with torch's current thread count."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(2):
        a @ b
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        a @ b
        best = max(best, 2 * size**3 / (time.perf_counter() - t0))
    return best
