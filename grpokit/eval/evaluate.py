"""Evaluation: generate for a list of examples, score the completions, and summarise.

``evaluate_examples`` is the one path: greedy or n sampled completions per problem, each scored
by a reward; a completion is *correct* when its reward is above 0 (right under 1/0, under the
textbook's +1/-0.5/-1 and under the think tiers). It reports accuracy, unbiased pass@k, mean
completion length, the truncated and think-block shares, and the same by any column (MATH-500's
subject and level). ``greedy_accuracy`` is its accuracy alone; ``held_out_metrics`` is the
training run's evaluation (greedy, its log-row metrics).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch

from grpokit.algo.sampling import seeded_generator
from grpokit.rollout.generate import Rollout, generate

RewardFn = Callable[[str, dict], "float | None"]


def decode_completions(tokenizer, rollout: Rollout) -> list[str]:
    """Text of each completion (its first lengths_B tokens), special tokens removed; of a
    multi-turn rollout, each episode's final text (its last model turn), as rewards see it."""
    if rollout.episodes is not None:
        return [e.final_text for e in rollout.episodes]
    rows = [ids[: int(n)].tolist() for ids, n in zip(rollout.completion_ids_BT, rollout.lengths_B)]
    return tokenizer.batch_decode(rows, skip_special_tokens=True)


@dataclass
class Samples:
    """n completions per example, example-major: completion j of example i is row i * n + j."""

    texts: list[str] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)  # completion tokens, EOS counted
    ended: list[bool] = field(default_factory=list)  # False = stopped by max_new_tokens (truncated)


@torch.no_grad()
def sample_completions(
    model, tokenizer, examples: list[dict], *, n: int = 1, max_new_tokens: int, batch_size: int = 256,
    seed: int = 0, stop_token_ids: Iterable[int] = (), **sampling,
) -> Samples:
    """n completions per example, batch_size sequences per generate call (greedy unless
    sampling sets a temperature > 0; then the draws are fixed by seed). A completion ends at any
    end-of-turn id (grpokit.data.chat.stop_token_ids, with stop_token_ids added), as in training."""
    from grpokit.data.chat import stop_token_ids as end_of_turn_ids
    from grpokit.data.records import example_prompt_ids

    sampling.setdefault("temperature", 0.0)
    if n > 1 and sampling["temperature"] <= 0:
        raise ValueError(f"n={n} samples per problem need temperature > 0 (greedy gives one answer)")
    device = next(model.parameters()).device
    generator = seeded_generator(device, seed)
    per_call = max(1, batch_size // n)
    stops = end_of_turn_ids(tokenizer, model, stop_token_ids)
    out = Samples()
    for start in range(0, len(examples), per_call):
        chunk = examples[start : start + per_call]
        rollout = generate(
            model, [example_prompt_ids(tokenizer, ex) for ex in chunk], group_size=n,
            max_new_tokens=max_new_tokens, eos_id=stops, pad_id=tokenizer.pad_token_id,
            generator=generator, **sampling,
        )
        out.texts.extend(decode_completions(tokenizer, rollout))
        out.lengths.extend(rollout.lengths_B.tolist())
        out.ended.extend(rollout.ended_B.tolist())
    return out


def generate_for(
    model, tokenizer, examples: list[dict], *, max_new_tokens: int, batch_size: int = 256, **sampling
) -> list[str]:
    """One completion per example (greedy unless sampling options say otherwise)."""
    return sample_completions(model, tokenizer, examples, max_new_tokens=max_new_tokens,
                              batch_size=batch_size, **sampling).texts


def is_correct(score: float | None) -> bool:
    return score is not None and score > 0


def greedy_accuracy(
    model, tokenizer, examples: list[dict], reward_fn: Callable[[str, dict], float | None], *, max_new_tokens: int
) -> float:
    """Share of examples whose greedy completion scores above 0 (right under 1/0 and +1/-0.5/-1)."""
    return evaluate_examples(model, tokenizer, examples, reward_fn, max_new_tokens=max_new_tokens).accuracy


# A training run's held-out metrics (log-row name -> evaluate_examples summary key).
HELD_OUT_METRICS = {"eval/accuracy": "accuracy", "eval/truncated_share": "truncated_share",
                    "eval/completion_length_mean": "mean_completion_tokens", "eval/think_share": "think_share"}


def held_out_metrics(model, tokenizer, examples: list[dict], reward: str | RewardFn, *, max_new_tokens: int,
                     **sampling) -> dict[str, float]:
    """The training run's evaluation: one greedy completion per held-out example, scored by
    ``reward``; the HELD_OUT_METRICS of the log row (eval/accuracy alone, NaN, without examples)."""
    if not examples:
        return {"eval/accuracy": math.nan}
    s = evaluate_examples(model, tokenizer, examples, reward, max_new_tokens=max_new_tokens, **sampling).summary
    return {name: s[key] for name, key in HELD_OUT_METRICS.items()}


# ----------------------------------------------------------------------------- pass@k


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with c correct among n samples (Chen et al. 2021, eq. 1):
    1 - C(n-c, k) / C(n, k), computed as a product so large n does not overflow."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def default_ks(n: int) -> list[int]:
    """1, 2, 4, ... up to n, and n itself."""
    ks = [k for k in (2**i for i in range(n.bit_length())) if k <= n]
    return ks + ([n] if ks[-1] != n else [])


# ----------------------------------------------------------------------------- scoring


def score_completions(reward: str | RewardFn, texts: list[str], examples: list[dict], *,
                      workers: int = 0) -> tuple[list[float | None], int]:
    """(scores, failed calls). A reward name goes through RewardScorer (its failure handling and
    worker processes; failures are counted, not fatal); a function is called directly."""
    if callable(reward):
        return [reward(t, ex) for t, ex in zip(texts, examples)], 0
    from grpokit.rewards import RewardScorer

    with RewardScorer([reward], [1.0], max_fail_share=1.0, workers=workers) as scorer:
        result = scorer.score(texts, examples)
    return result.total, sum(result.failures.values())


def extracted_answer(text: str, example: dict) -> str | None:
    """What a grader reads from the completion: the code for code tasks, else the final answer."""
    if "test" in example or "io_cases" in example:
        from grpokit.rewards.code import extract_code

        return extract_code(text, example.get("entry_point"))
    from grpokit.rewards import extract_answer

    return extract_answer(text)


# ----------------------------------------------------------------------------- results


@dataclass
class EvalResult:
    summary: dict  # accuracy, pass@k, lengths, shares, breakdown, throughput
    samples: list[dict]  # one row per completion

    @property
    def accuracy(self) -> float:
        return self.summary["accuracy"]

    def write(self, out_dir: str | Path) -> tuple[Path, Path]:
        """results.json (the summary) and samples.jsonl (one line per completion) in out_dir."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        results, samples = out / "results.json", out / "samples.jsonl"
        results.write_text(json.dumps(self.summary, indent=2) + "\n")
        with open(samples, "w") as fh:
            for row in self.samples:
                fh.write(json.dumps(row, default=str) + "\n")
        return results, samples


def summarize(correct_PN: list[list[bool]], ks: list[int]) -> dict:
    """Accuracy (mean over all samples) and mean pass@k over problems, for n samples each."""
    n = len(correct_PN[0]) if correct_PN else 0
    out = {"problems": len(correct_PN),
           "accuracy": sum(map(sum, correct_PN)) / max(1, n * len(correct_PN))}
    for k in ks:
        out[f"pass@{k}"] = sum(pass_at_k(n, sum(row), k) for row in correct_PN) / max(1, len(correct_PN))
    return out


def breakdown(examples: list[dict], correct_PN: list[list[bool]], columns: list[str], ks: list[int]) -> dict:
    """{column: {value: summarize(...) of the problems with that value}}, values in sorted order."""
    out = {}
    for col in columns:
        groups: dict[str, list[list[bool]]] = {}
        for ex, row in zip(examples, correct_PN):
            groups.setdefault(str(ex.get(col)), []).append(row)
        out[col] = {value: summarize(groups[value], ks) for value in sorted(groups, key=_natural)}
    return out


def _natural(value: str):
    return (0, float(value), "") if value.replace(".", "", 1).lstrip("-").isdigit() else (1, 0.0, value)


def sample_rows(examples: list[dict], samples: Samples, scores: list, n: int, keep: list[str]) -> list[dict]:
    from grpokit.data.records import user_message
    from grpokit.rewards import has_think_block
    from grpokit.rewards.answers import opened_in

    rows = []
    for b, (text, score) in enumerate(zip(samples.texts, scores)):
        ex = examples[b // n]
        rows.append({
            "index": b // n, "sample": b % n, "prompt": user_message(ex), "completion": text,
            "extracted": extracted_answer(text, ex), "answer": ex.get("answer"), "reward": score,
            "correct": is_correct(score), "tokens": samples.lengths[b], "truncated": not samples.ended[b],
            "think": has_think_block(text, opened_in_prompt=opened_in(ex)), **{c: ex.get(c) for c in keep},
        })
    return rows


def evaluate_examples(
    model, tokenizer, examples: list[dict], reward: str | RewardFn, *, max_new_tokens: int, n: int = 1,
    ks: list[int] | None = None, by: list[str] = (), batch_size: int = 256, reward_workers: int = 0,
    seed: int = 0, **sampling,
) -> EvalResult:
    """Generate n completions per example (greedy for n=1 unless a temperature is given), score
    them with ``reward`` (a registry name/spec or a function) and summarise; ``by`` names columns
    to break accuracy and pass@k down by. Throughput counts generation and scoring."""
    if not examples:
        raise ValueError("nothing to evaluate: the example list is empty")
    ks = sorted(set(ks or default_ks(n)))
    if ks[0] < 1 or ks[-1] > n:
        raise ValueError(f"pass@k needs 1 <= k <= n={n}, got k in {ks}")
    start = time.perf_counter()
    samples = sample_completions(model, tokenizer, examples, n=n, max_new_tokens=max_new_tokens,
                                 batch_size=batch_size, seed=seed, **sampling)
    gen_seconds = time.perf_counter() - start
    scores, failures = score_completions(reward, samples.texts, [ex for ex in examples for _ in range(n)],
                                         workers=reward_workers)
    seconds = time.perf_counter() - start
    rows = sample_rows(examples, samples, scores, n, list(by))
    correct_PN = [[r["correct"] for r in rows[i * n : (i + 1) * n]] for i in range(len(examples))]
    total = len(rows)
    summary = {
        **summarize(correct_PN, ks), "samples_per_problem": n,
        "reward_mean": _mean([s for s in scores if s is not None]),
        "mean_completion_tokens": sum(samples.lengths) / total,
        "truncated_share": sum(not e for e in samples.ended) / total,
        "think_share": sum(r["think"] for r in rows) / total,
        "unjudged_share": sum(s is None for s in scores) / total, "reward_failures": failures,
        "breakdown": breakdown(examples, correct_PN, list(by), ks),
        "seconds": round(seconds, 3), "generation_seconds": round(gen_seconds, 3),
        "problems_per_second": len(examples) / seconds if seconds > 0 else math.inf,
    }
    return EvalResult(summary, rows)


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None  # None, not NaN: results.json stays valid JSON


def held_out_episode_metrics(model, tokenizer, env, examples: list[dict], reward: RewardFn, cfg, stop_ids,
                             batch_size: int = 256) -> dict[str, float]:
    """The training run's evaluation of a tool task: one greedy episode per held-out example
    (rollout.multiturn.sample_episodes, cfg's limits), its final text scored by ``reward``:
    eval/accuracy, eval/tool_call_rate (share of episodes that called a tool), eval/turns_mean."""
    from grpokit.rollout.multiturn import sample_episodes

    if not examples:
        return {"eval/accuracy": math.nan}
    episodes = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        episodes += sample_episodes(model, tokenizer, env, chunk, cfg, stop_ids, greedy=True, group_size=1).episodes
    correct = [is_correct(reward(ep.final_text, ex)) for ep, ex in zip(episodes, examples)]
    return {"eval/accuracy": sum(correct) / len(examples),
            "eval/tool_call_rate": sum(bool(ep.tool_calls) for ep in episodes) / len(examples),
            "eval/turns_mean": sum(len(ep.turns) for ep in episodes) / len(examples)}
