"""The demo's problems: two-number sums ("37+58" -> "95") and their exact-answer reward.

The problem set is fixed by a ProblemSpec; the warm-started demo model (grpokit/tasks/arithmetic.py)
carries the same fields in its own spec, so either can be passed where a ProblemSpec is expected.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ProblemSpec:
    """terms operands in [0, max_operand] joined by operators drawn from ops."""

    terms: int = 2
    max_operand: int = 99
    ops: str = "+"


def make_problem(rng: random.Random, spec: ProblemSpec) -> dict:
    """terms operands in [0, max_operand] joined by operators from spec.ops, left to right."""
    value = rng.randint(0, spec.max_operand)
    text = str(value)
    for _ in range(spec.terms - 1):
        op, x = rng.choice(spec.ops), rng.randint(0, spec.max_operand)
        value = {"+": value + x, "-": value - x, "*": value * x}[op]
        text += f"{op}{x}"
    return {"prompt": text, "answer": str(value)}


def make_problems(n: int, seed: int, spec: ProblemSpec, exclude: set[str] = frozenset()) -> list[dict]:
    """n distinct problems drawn with a seed, none of whose prompts are in `exclude`."""
    rng, seen, out = random.Random(seed), set(exclude), []
    while len(out) < n:
        p = make_problem(rng, spec)
        if p["prompt"] not in seen:
            seen.add(p["prompt"])
            out.append(p)
    return out


ANSWER_RE = re.compile(r"^\s*(-?\d+)\s*$")


def arithmetic_reward(completion: str, example: dict) -> float:
    """1.0 when the completion is exactly the right integer, else 0.0."""
    m = ANSWER_RE.match(completion)
    return 1.0 if m is not None and int(m.group(1)) == int(example["answer"]) else 0.0


def split_problems(spec: ProblemSpec, eval_size: int = 200, dev_size: int = 200, train_size: int = 20000):
    """Held-out eval problems, a dev set used by the warm start, and training prompts, disjoint."""
    evals = make_problems(eval_size, 1, spec)
    dev = make_problems(dev_size, 2, spec, exclude={p["prompt"] for p in evals})
    taken = {p["prompt"] for p in evals + dev}
    space = (spec.max_operand + 1) ** spec.terms * len(spec.ops) ** (spec.terms - 1) - len(taken)
    train = make_problems(min(train_size, space), 3, spec, exclude=taken)
    return {"eval": evals, "dev": dev, "train": train}
