"""Do the math rewards of two commits grade the reference solutions the same way?

    .venv/bin/python benchmarks/compare_grades.py [--old dfb8ab6] [--limit N]

Loads ``grpokit/rewards/{answers,latex,math_rewards}.py`` (and any sibling module they import)
as of ``--old`` from git into a temporary package, and grades with both it and the working
tree's code: every GSM8K test and MATH-500 reference solution against its own answer (right:
+1) and against the next different answer (right: -0.5), plus the GSM8K answers in the
completion shapes of bench_rewards.py. Prints, per data set, how many were graded right before
and now and lists every pair whose grade changed; exits 1 if a pair graded right before is
graded differently now.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grpokit.rewards import math_reward  # noqa: E402
from bench_rewards import _read, gsm8k_batch  # noqa: E402

MODULES = ("answers", "latex", "math_rewards", "numbers", "choices")


def load_old(commit: str):
    """``math_reward`` of the rewards package at ``commit``, as a standalone temporary package."""
    folder = Path(tempfile.mkdtemp(prefix="grpokit_old_rewards_"))
    package = folder / "old_rewards"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in MODULES:
        shown = subprocess.run(["git", "show", f"{commit}:grpokit/rewards/{name}.py"], cwd=ROOT,
                               capture_output=True, text=True)
        if shown.returncode == 0:
            (package / f"{name}.py").write_text(shown.stdout)
    sys.path.insert(0, str(folder))
    return importlib.import_module("old_rewards.math_rewards").math_reward


def _neighbour(golds: list[str], i: int) -> str:
    for k in range(1, len(golds)):
        other = golds[(i + k) % len(golds)]
        if other.strip() != golds[i].strip():
            return other
    raise AssertionError("all answers are the same")


def pairs() -> dict[str, list[tuple[str, str, float]]]:
    """``{data set: [(completion, reference, right reward)]}``."""
    from grpokit.rewards import extract_gold

    gsm = _read("gsm8k/test.jsonl")
    math500 = _read("math500/test.jsonl")
    out = {}
    for name, rows, solution in (("gsm8k", gsm, "answer"), ("math500", math500, "solution")):
        golds = [extract_gold(r["answer"]) for r in rows]
        out[name] = [(r[solution], golds[i], 1.0) for i, r in enumerate(rows)]
        out[name] += [(r[solution], _neighbour(golds, i), -0.5) for i, r in enumerate(rows)]
    completions, examples = gsm8k_batch()
    out["gsm8k shapes"] = [(c, e["answer"], -0.5 if k % 4 == 3 else 1.0)
                           for k, (c, e) in enumerate(zip(completions, examples))]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old", default="dfb8ab6", help="the commit to compare with")
    parser.add_argument("--limit", type=int, default=0, help="only the first N pairs of each set")
    args = parser.parse_args()
    old_reward = load_old(args.old)
    broken = 0
    for name, items in pairs().items():
        items = items[: args.limit] if args.limit else items
        right_before = right_now = 0
        changed = []
        for completion, gold, right in items:
            before = old_reward(completion, gold, timeout_s=30.0)
            now = math_reward(completion, gold, timeout_s=30.0)
            right_before += before == right
            right_now += now == right
            if before != now:
                changed.append((gold, right, before, now))
                broken += before == right
        print(f"{name:<13} {len(items):>5} pairs: graded right before {right_before}, "
              f"now {right_now}; grade changed on {len(changed)}")
        for gold, right, before, now in changed:
            print(f"    gold {gold!r:.60} (right: {right}): {before} -> {now}")
    print(f"pairs graded right before and differently now: {broken}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
