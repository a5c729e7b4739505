"""How fast are the math rewards? Numeric (GSM8K-style) and LaTeX (MATH-500) grading rates.

    .venv/bin/python benchmarks/bench_rewards.py [--out results.json] [--workers 2]

Rows:
* gsm8k numeric, 1 core: the ``math`` reward on GSM8K test completions in four shapes
  (reference ``#### x`` solution, think block + "The answer is x", ``\\boxed{x}``, wrong
  number), in one process pinned to one CPU. Target: >= 5,000 completions/s.
* 100 kB completion: one long completion per call, to show extraction stays linear.
* math500 latex, cold / warm: the ``math`` reward on MATH-500 reference solutions against
  their own and a neighbour's answer; cold clears the parsed-gold cache first.
* math500 non-numeric warm: only the pairs whose reference is not a plain number.
* math500 latex, N workers: the same through ``RewardScorer(workers=N)``, pool and caches warm
  (compare with the warm 1-core row; the speed-up is bounded by the cores really available).

Data is read from ../shared/data relative to the repository root.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grpokit.rewards import RewardScorer, math_answer_reward, parse_number  # noqa: E402
from grpokit.rewards import latex as latex_module  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def _read(relative: str) -> list[dict]:
    path = DATA / relative
    if not path.exists():
        sys.exit(f"data not found: {path}")
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def gsm8k_batch() -> tuple[list[str], list[dict]]:
    completions, examples = [], []
    for i, row in enumerate(_read("gsm8k/test.jsonl")):
        body, answer = row["answer"].rsplit("####", 1)
        answer = answer.strip()
        shapes = [
            row["answer"],
            f"<think>{body}</think>\nThe answer is {answer}.",
            f"{body}\nSo the result is \\boxed{{{answer}}}.",
            f"{body}\nThe answer is {int(answer.replace(',', '')) + 3}.",
        ]
        completions.append(shapes[i % 4])
        examples.append({"answer": answer})
    return completions, examples


def math500_batch() -> tuple[list[str], list[dict]]:
    rows = _read("math500/test.jsonl")
    completions = [r["solution"] for r in rows] * 2
    answers = [r["answer"] for r in rows] + [r["answer"] for r in rows[1:] + rows[:1]]
    return completions, [{"answer": a} for a in answers]


def rate(fn, completions, examples, min_seconds: float = 1.0) -> tuple[float, int]:
    """Completions per second of ``fn`` over the batch, repeated for at least min_seconds."""
    done, start = 0, time.perf_counter()
    while True:
        for c, e in zip(completions, examples):
            fn(c, e)
        done += len(completions)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed, done


def pinned_to_one_core() -> bool:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        return True
    return False


def run(workers: int) -> list[dict]:
    rows = []
    all_cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None

    # Parallel row first, before this process pins itself to one core.
    if workers > 0:
        completions, examples = math500_batch()
        with RewardScorer(["math"], [1.0], workers=workers, parallel_min=1) as scorer:
            scorer.score(completions, examples)  # start the pool, import sympy, parse golds
            start = time.perf_counter()
            for _ in range(2):
                scorer.score(completions, examples)
            per_s = 2 * len(completions) / (time.perf_counter() - start)
        rows.append(dict(name=f"math500 latex, {workers} workers", per_s=per_s,
                         n=2 * len(completions), cores=workers))

    pinned = pinned_to_one_core()
    completions, examples = gsm8k_batch()
    per_s, n = rate(math_answer_reward, completions, examples, min_seconds=2.0)
    rows.append(dict(name="gsm8k numeric, 1 core", per_s=per_s, n=n, cores=1, target=5000))

    line = "Step: 12 + 7 = 19, then 19 * 3 = 57; carry the 1, so we keep going.\n"
    long_text = (line * (100_000 // len(line) + 1))[:100_000] + "\nThe answer is 57."
    per_s, n = rate(math_answer_reward, [long_text], [{"answer": "57"}], min_seconds=1.0)
    rows.append(dict(name="100 kB completion, 1 core", per_s=per_s, n=n, cores=1))

    completions, examples = math500_batch()
    latex_module._parse_gold.cache_clear()
    start = time.perf_counter()
    for c, e in zip(completions, examples):
        math_answer_reward(c, e)
    cold = len(completions) / (time.perf_counter() - start)
    rows.append(dict(name="math500 latex cold, 1 core", per_s=cold, n=len(completions), cores=1))
    per_s, n = rate(math_answer_reward, completions, examples, min_seconds=2.0)
    rows.append(dict(name="math500 latex warm, 1 core", per_s=per_s, n=n, cores=1))
    # Only pairs where the reference is not a plain number: every call reaches math-verify
    # unless the texts match after normalisation.
    pairs = [(c, e) for c, e in zip(completions, examples) if parse_number(e["answer"]) is None]
    per_s, n = rate(math_answer_reward, *zip(*pairs), min_seconds=2.0)
    rows.append(dict(name="math500 non-numeric warm, 1 core", per_s=per_s, n=n, cores=1))

    if all_cores is not None and pinned:
        os.sched_setaffinity(0, all_cores)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(),
                                                      "grpokit_bench_rewards.json"))
    parser.add_argument("--workers", type=int, default=2, help="0 skips the parallel row")
    args = parser.parse_args()

    rows = run(args.workers)
    print(f"{'benchmark':<34} {'completions/s':>14} {'calls':>8}  target")
    for row in rows:
        target = f">= {row['target']:,}" if "target" in row else ""
        verdict = ("ok" if row["per_s"] >= row["target"] else "MISSED") if target else ""
        print(f"{row['name']:<34} {row['per_s']:>14,.0f} {row['n']:>8}  {target} {verdict}")
    report = dict(
        rows=rows,
        python=platform.python_version(),
        machine=platform.machine(),
        cpu_count=os.cpu_count(),
        time=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
