"""Acceptance on real data: every reference solution earns +1 against its own answer and -0.5
against a different one (GSM8K test, MATH-500). Data: ../shared/data relative to the repo."""

import json
from pathlib import Path

import pytest

from grpokit.rewards import extract_gold, math_reward, parse_number
from grpokit.rewards.answers import normalize_text

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _rows(relative):
    path = DATA / relative
    if not path.exists():
        pytest.skip(f"data not found: {path}")
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def _different_answer(golds, i):
    """The next reference answer (cyclically) that differs from golds[i] as text and by value.

    Answers that are equal in another spelling (``x=5`` vs ``5``) are not filtered out here:
    judging those is the grader's job, and such a pair shows up as a failure.
    """
    gold, value = golds[i], parse_number(golds[i])
    for k in range(1, len(golds)):
        other = golds[(i + k) % len(golds)]
        if normalize_text(other) == normalize_text(gold):
            continue
        if value is not None and parse_number(other) == value:
            continue
        return other
    raise AssertionError("all answers are the same")


def _check(rows, solution_key, answer_key):
    golds = [extract_gold(r[answer_key]) for r in rows]
    failures = []
    for i, row in enumerate(rows):
        own = math_reward(row[solution_key], row[answer_key])
        if own != 1.0:
            failures.append(f"row {i}: own answer {golds[i]!r} scored {own}")
        other = _different_answer(golds, i)
        scored = math_reward(row[solution_key], other)
        if scored != -0.5:
            failures.append(f"row {i}: gold {golds[i]!r} vs other {other!r} scored {scored}")
    share = 1 - len(failures) / (2 * len(rows))
    print(f"\n{len(rows)} rows, pass share {share:.4f}; failures:", *failures, sep="\n  ")
    return share, failures


# The pairs the grader got "wrong" at dfb8ab6, before sign words, choices, equations and
# scientific notation were read (benchmarks/compare_grades.py diffs every grade). Anything graded
# right then must still be: the failures now are a subset of these.
FAILURES_BEFORE = {
    "gsm8k": set(),
    "math500": {"row 22: gold '5' vs other 'x=5' scored 1.0"},  # the same answer, as an equation
}


def test_gsm8k_reference_solutions_grade_correctly():
    rows = _rows("gsm8k/test.jsonl")
    assert len(rows) == 1319
    share, failures = _check(rows, "answer", "answer")
    assert share >= 0.99, failures
    assert set(failures) <= FAILURES_BEFORE["gsm8k"], failures


def test_math500_reference_boxed_answers_grade_correctly():
    rows = _rows("math500/test.jsonl")
    assert len(rows) == 500
    share, failures = _check(rows, "solution", "answer")
    assert share >= 0.99, failures
    assert set(failures) <= FAILURES_BEFORE["math500"], failures


def test_math500_in_worker_processes_matches_serial():
    # LaTeX grading in spawned workers: math-verify runs there under the signal time limit.
    from grpokit.rewards import RewardScorer

    rows = _rows("math500/test.jsonl")[:64]
    golds = [r["answer"] for r in rows]
    completions = [r["solution"] for r in rows] + [r["solution"] for r in rows[1:] + rows[:1]]
    examples = [{"answer": g, "unique_id": r["unique_id"]} for g, r in zip(golds, rows)] * 2
    slack = {"math": {"timeout_s": 30.0}}  # a generous per-check limit: a loaded machine must not turn answers into None
    serial = RewardScorer(["math"], [1.0], kwargs=slack).score(completions, examples)
    with RewardScorer(["math"], [1.0], kwargs=slack, workers=2, parallel_min=32) as scorer:
        parallel = scorer.score(completions, examples)
    assert parallel.total == serial.total
    assert serial.total[:64] == [1.0] * 64
    assert serial.total[64:].count(-0.5) >= 62  # neighbours' answers: almost all differ
