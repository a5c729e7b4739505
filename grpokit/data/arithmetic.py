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


def make_problems(n: int, seed: int, spec, exclude: set[str] = frozenset(), draw=make_problem) -> list[dict]:
    """n distinct problems draw(rng, spec) drawn with a seed, none of whose prompts are in `exclude`."""
    rng, seen, out = random.Random(seed), set(exclude), []
    while len(out) < n:
        p = draw(rng, spec)
        if p["prompt"] not in seen:
            seen.add(p["prompt"])
            out.append(p)
    return out


ANSWER_RE = re.compile(r"^\s*(-?\d+)\s*$")


def arithmetic_reward(completion: str, example: dict) -> float:
    """1.0 when the completion is exactly the right integer, else 0.0."""
    m = ANSWER_RE.match(completion)
    return 1.0 if m is not None and int(m.group(1)) == int(example["answer"]) else 0.0


def split_problems(spec, eval_size: int = 200, dev_size: int = 200, train_size: int = 20000):
    """Held-out eval problems, a dev set used by the warm start, and training prompts, disjoint
    (a ProblemSpec's sums, or a ProductSpec's products)."""
    draw = make_product if isinstance(spec, ProductSpec) else make_problem
    evals = make_problems(eval_size, 1, spec, draw=draw)
    dev = make_problems(dev_size, 2, spec, exclude={p["prompt"] for p in evals}, draw=draw)
    taken = {p["prompt"] for p in evals + dev}
    train = make_problems(min(train_size, spec_size(spec) - len(taken)), 3, spec, exclude=taken, draw=draw)
    return {"eval": evals, "dev": dev, "train": train}


def spec_size(spec) -> int:
    """How many distinct problems the spec can draw."""
    if isinstance(spec, ProductSpec):
        return 9 * 10 ** (spec.digits_a - 1) * 9 * 10 ** (spec.digits_b - 1)
    return (spec.max_operand + 1) ** spec.terms * len(spec.ops) ** (spec.terms - 1)


@dataclass(frozen=True)
class ProductSpec:
    """Products of a digits_a-digit and a digits_b-digit number ("123*45" -> "5535"): the
    arithmetic-tools task, too hard for the demo-sized model in its head."""

    digits_a: int = 3
    digits_b: int = 2


def make_product(rng: random.Random, spec: ProductSpec) -> dict:
    a = rng.randint(10 ** (spec.digits_a - 1), 10 ** spec.digits_a - 1)
    b = rng.randint(10 ** (spec.digits_b - 1), 10 ** spec.digits_b - 1)
    return {"prompt": f"{a}*{b}", "answer": str(a * b)}
