"""`grpokit doctor`'s measurements: will this run learn? Found out before any training step.

``diagnose`` samples the run's first N prompts (doctor.prompts; the training pre-flight uses
doctor.preflight_prompts) x G completions with the real Trainer at the run's exact settings, in
batches of rollout.prompts_per_step, longest prompts first; scores them twice with the run's
rewards (failures counted, never fatal); and times a full step (rollout, scoring, update) on
the P longest prompts of the whole training set (after one warm-up step), with its peak memory. The step's weights,
optimiser, schedule, prompt order and RNG are restored afterwards, so the run that follows is
the same as one without the doctor. The findings are a JSON-able dict; doctor_report.py turns
them into problems, fixes and the exit status.

A completion *passes* when the accuracy reward (reward.accuracy_reward, else the first reward:
the one evaluation uses) scores it above 0, as in evaluation. pass@1 and pass@G are Chen et
al. (2021)'s unbiased estimates over each prompt's G samples.
"""

from __future__ import annotations

import contextlib
import copy
import math
import threading
import time

import torch

from grpokit.algo.advantages import zero_std_P
from grpokit.data.records import example_prompt_ids
from grpokit.eval.evaluate import decode_completions, is_correct, pass_at_k
from grpokit.rewards.overlong import completion_records

GIB = float(1 << 30)
EVAL_SAMPLE = 32  # held-out problems timed to project the run's evaluations


class FixedOrder:
    """A prompt order that always visits the same indices (the longest prompts)."""

    def __init__(self, indices: list[int]):
        self.indices = list(indices)

    def next_indices(self, k: int) -> list[int]:
        return self.indices[:k]

    def record(self, indices, rewards_PG) -> None:
        return None

    def stats(self) -> dict:
        return {}


def prompt_tokens(trainer, index: int) -> int:
    return len(example_prompt_ids(trainer.tokenizer, trainer.examples[index]))


def first_prompts(trainer, n: int) -> list[int]:
    """The first n prompts of the run's order (the order itself is not advanced), longest first."""
    order = copy.deepcopy(trainer.prompt_order)
    indices = list(dict.fromkeys(order.next_indices(min(n, len(trainer.examples)))))
    return sorted(indices, key=lambda i: -prompt_tokens(trainer, i))


def sample(trainer, indices: list[int]) -> dict:
    """G completions of each prompt, batch by batch as the run samples: texts, lengths, ended
    flags and the scorer's per-completion records (example-major)."""
    r = trainer.cfg.rollout
    out = {"texts": [], "lengths": [], "ended": [], "records": []}
    for start in range(0, len(indices), r.prompts_per_step):
        examples = [trainer.examples[i] for i in indices[start:start + r.prompts_per_step]]
        rollout = trainer._sample(examples)
        lengths, ended = rollout.lengths_B.tolist(), rollout.ended_B.tolist()
        out["texts"] += decode_completions(trainer.tokenizer, rollout)
        out["lengths"] += lengths
        out["ended"] += ended
        out["records"] += completion_records(examples, r.group_size, lengths, ended, r.max_new_tokens)
    return out


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))])


def length_findings(drawn: dict, tokenizer, examples: list[dict], max_new_tokens: int) -> dict:
    """Completion lengths (tokens, EOS counted) against the limit, and the longest reference
    answer in tokens (None without answers): what a suggested limit is derived from."""
    lengths, ended = drawn["lengths"], drawn["ended"]
    answers = [ex["answer"] for ex in examples if isinstance(ex.get("answer"), str)]
    answer_tokens = max((len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers), default=None)
    ended_lengths = [n for n, e in zip(lengths, ended) if e]
    return {"max_new_tokens": max_new_tokens, "mean": sum(lengths) / len(lengths), "p95": _percentile(lengths, 0.95),
            "max": max(lengths), "truncated_share": 1 - len(ended_lengths) / len(lengths),
            "ended_max": max(ended_lengths, default=None), "answer_tokens_max": answer_tokens}


def _spread(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def reward_findings(scores, weights: dict[str, float]) -> dict:
    """Per reward component: weight, mean and spread (std over judged completions), None share,
    failure share (raised or returned a non-number), distinct values, first failure message."""
    out = {}
    for name, values in scores.components.items():
        judged = [v for v in values if v is not None]
        first = next((e for e in scores.errors if e.startswith(f"reward {name!r}")), None)
        out[name] = {"weight": weights[name], "mean": sum(judged) / len(judged) if judged else None,
                     "std": _spread(judged), "none_share": 1 - len(judged) / len(values),
                     "fail_share": scores.failures.get(name, 0) / len(values), "distinct": len(set(judged)),
                     "first_failure": first}
    return out


def group_findings(scores, passes: list[bool], group_size: int) -> dict:
    """Share of groups whose judged totals are all equal; pass@1 and pass@G over the prompts."""
    totals = torch.tensor([math.nan if t is None else t for t in scores.total], dtype=torch.float32)
    rewards_PG = totals.view(-1, group_size)
    correct = [sum(passes[p * group_size:(p + 1) * group_size]) for p in range(rewards_PG.shape[0])]
    judged = totals[~totals.isnan()].tolist()
    return {"equal_groups_share": float(zero_std_P(rewards_PG).float().mean()),
            "total_mean": sum(judged) / len(judged) if judged else None, "total_std": _spread(judged),
            "total_none_share": 1 - len(judged) / len(scores.total),
            "pass@1": sum(pass_at_k(group_size, c, 1) for c in correct) / len(correct),
            f"pass@{group_size}": sum(pass_at_k(group_size, c, group_size) for c in correct) / len(correct)}


def passes_of(scores, judge_name: str, judge, texts: list[str], records: list[dict]) -> list[bool]:
    """Whether each completion passes (the accuracy reward scores it above 0)."""
    if judge_name in scores.components:
        values = scores.components[judge_name]
    else:
        values = []
        for text, record in zip(texts, records):
            try:
                values.append(judge(text, record))
            except Exception:  # a judge failure is a non-pass; the scorer reports failures
                values.append(None)
    return [is_correct(v) for v in values]


def disagreeing_rewards(first, second) -> list[str]:
    """Rewards that scored the same completions differently the second time."""
    def same(a, b) -> bool:
        return (a is None and b is None) or (a is not None and b is not None and abs(a - b) <= 1e-9 * max(1, abs(a)))

    return [name for name in first.components
            if not all(same(a, b) for a, b in zip(first.components[name], second.components[name]))]


class PeakMemory:
    """Peak host RSS (a thread polls it every 5 ms) and peak CUDA allocation inside the block."""

    def __init__(self, device: torch.device):
        import psutil

        self.process, self.device = psutil.Process(), device
        self.rss_peak, self.cuda_peak = 0, None
        self._stop = threading.Event()

    def _poll(self) -> None:
        while not self._stop.wait(0.005):
            self.rss_peak = max(self.rss_peak, self.process.memory_info().rss)

    def __enter__(self):
        self.rss_peak = self.process.memory_info().rss
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.rss_peak = max(self.rss_peak, self.process.memory_info().rss)
        if self.device.type == "cuda":
            self.cuda_peak = torch.cuda.max_memory_allocated(self.device)


@contextlib.contextmanager
def restored(trainer, scorer):
    """Run a throwaway step: trainable weights, optimiser, schedule, counters, prompt order, the
    last record and torch's RNG come back as they were; `scorer` scores the step meanwhile."""
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    weights = [p.detach().clone() for p in params]
    optimizer, state = copy.deepcopy(trainer.optimizer.state_dict()), copy.deepcopy(trainer.state_dict())
    order, record, real_scorer = trainer.prompt_order, trainer.last_record, trainer.scorer
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    trainer.scorer = scorer
    try:
        yield
    finally:
        with torch.no_grad():
            for p, w in zip(params, weights):
                p.copy_(w)
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer.optimizer.load_state_dict(optimizer)
        trainer.prompt_order, trainer.last_record, trainer.scorer = order, record, real_scorer
        trainer.load_state_dict(state)
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def measure_step(trainer, scorer) -> dict:
    """Seconds and peak memory of a full step on the P longest training prompts: two steps run,
    the first warms up (first-call allocations; on the demo it takes ~4x a later step), the
    second is timed; the peak covers both."""
    P = trainer.cfg.rollout.prompts_per_step
    longest = sorted(range(len(trainer.examples)), key=lambda i: -prompt_tokens(trainer, i))[:P]
    longest = (longest * P)[:P]  # fewer examples than P: repeat them, as the order would
    with restored(trainer, scorer):
        trainer.prompt_order = FixedOrder(longest)
        with PeakMemory(trainer.device) as memory:
            start = time.perf_counter()
            trainer.step()
            first = time.perf_counter()
            trainer.step()
            seconds = time.perf_counter() - first
    return {"seconds": seconds, "first_seconds": first - start, "prompt_tokens_max": prompt_tokens(trainer, longest[0]),
            "peak_rss_gib": memory.rss_peak / GIB,
            "peak_cuda_gib": None if memory.cuda_peak is None else memory.cuda_peak / GIB}


def projection(cfg, step_seconds: float | None, eval_seconds: float | None) -> dict:
    """Projected wall time of the whole run: train.steps x one step + every evaluation."""
    t = cfg.train
    evals = 2 + ((t.steps - 1) // t.eval_every if t.eval_every and t.steps > 1 else 0)
    total = None if step_seconds is None else t.steps * step_seconds + evals * (eval_seconds or 0.0)
    return {"steps": t.steps, "evals": evals, "eval_seconds": eval_seconds, "total_seconds": total}


def timed_eval(evaluate, eval_examples: list[dict]) -> tuple[float | None, str | None]:
    """(seconds of one whole held-out evaluation, from EVAL_SAMPLE of its problems; or None and
    why the evaluation failed: the run would stop there)."""
    if not eval_examples or evaluate is None:
        return None, None
    part = eval_examples[:EVAL_SAMPLE]
    start = time.perf_counter()
    try:
        evaluate(part)
    except Exception as exc:  # the accuracy reward raised: named by the report
        return None, f"{type(exc).__name__}: {exc}"
    return (time.perf_counter() - start) * len(eval_examples) / len(part), None


def diagnose(trainer, scorer, judge_name: str, judge, *, prompts: int, evaluate=None,
             eval_examples: list[dict] | None = None, measure: bool = True) -> dict:
    """The doctor's findings (a JSON-able dict) for the run `trainer` is about to make.

    scorer: the run's rewards with max_fail_share 1 (failures are measured, not fatal);
    judge/judge_name: the accuracy reward; evaluate(examples): the run's held-out evaluation
    (timed on a sample to project the run's wall time). Every rank calls it (sharded models
    gather for sampling); rank 0's findings are returned on every rank."""
    cfg = trainer.cfg
    indices = first_prompts(trainer, prompts)
    with torch.no_grad():
        drawn = sample(trainer, indices)
    first = scorer.score(drawn["texts"], drawn["records"])
    second = scorer.score(drawn["texts"], drawn["records"])
    passes = passes_of(first, judge_name, judge, drawn["texts"], drawn["records"])
    findings = {
        "prompts": len(indices), "group_size": cfg.rollout.group_size, "completions": len(drawn["texts"]),
        "length": length_findings(drawn, trainer.tokenizer, [trainer.examples[i] for i in indices],
                                  cfg.rollout.max_new_tokens),
        "rewards": reward_findings(first, dict(zip(scorer.names, scorer.weights))),
        "groups": group_findings(first, passes, cfg.rollout.group_size),
        "pass_rule": f"reward {judge_name!r} > 0",
        "nondeterministic_rewards": disagreeing_rewards(first, second),
        "max_fail_share": cfg.reward.max_fail_share, "mask_truncated": cfg.algo.mask_truncated,
        "multi_turn": bool(cfg.env.name),
    }
    findings["step"] = measure_step(trainer, scorer) if measure else None
    eval_seconds, findings["eval_error"] = timed_eval(evaluate, eval_examples or [])
    findings["projection"] = projection(cfg, findings["step"] and findings["step"]["seconds"], eval_seconds)
    return trainer.dist.broadcast_object(findings)
