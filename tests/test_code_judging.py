"""The code reward judges correct programs as correct: list-item fences, demo blocks, numbers with
a tolerance, long correct outputs, per-test time limits (real bubblewrap sandbox)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import real_sandbox

from grpokit.rewards.code import code_reward, run_example
from grpokit.sandbox import Limits, Status

HUMANEVAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "humaneval" / "HumanEval.jsonl"


@pytest.fixture(scope="module")
def box():
    return real_sandbox(Limits(timeout=5.0))


@pytest.fixture(scope="module")
def he0() -> dict:
    return json.loads(HUMANEVAL.read_text().splitlines()[0])


def fenced(code: str, prefix: str = "") -> str:
    body = "".join(prefix + line if line.strip() else line for line in code.splitlines(True))
    return f"{prefix}```python\n{body.rstrip()}\n{prefix}```\n"


def io(stdout: str, stdin: str = "") -> dict:
    return {"io_cases": [{"stdin": stdin, "stdout": stdout}]}


@pytest.mark.parametrize("form", ["numbered", "bullet", "quote", "column0"])
def test_humaneval0_in_a_list_item_scores_one(box, he0, form):
    solution = he0["prompt"] + he0["canonical_solution"]
    text = {
        "numbered": "1. Write the function:\n" + fenced(solution, "   ") + "2. Done.",
        "bullet": "- Write the function:\n" + fenced(solution, "  "),
        "quote": "> Solution:\n" + fenced(solution, "> "),
        "column0": fenced(solution),
    }[form]
    assert code_reward(text, he0, sandbox=box) == 1.0
    assert code_reward(text, he0, sandbox=box, tiers=True) == 1.0
    wrong = text.replace("< threshold", "> threshold")
    assert code_reward(wrong, he0, sandbox=box) == 0.0


SOLVE = "import sys\n\ndef solve(a, b):\n    return a + b\n\nprint(solve(*map(int, sys.stdin.read().split())))\n"


@pytest.mark.parametrize("after", ["Quick check:\n```python\nprint(solve(2, 3))  # 5\n```",
                                   "Output:\n```\n5\n```", "Also:\n```python\nassert solve(1, 1) == 2\n```"])
def test_io_program_followed_by_a_demo_block_scores_one(box, after):
    example = {"io_cases": [{"stdin": "2 3\n", "stdout": "5\n"}, {"stdin": "-4 4", "stdout": "0"}]}
    assert code_reward(fenced(SOLVE) + after, example, sandbox=box) == 1.0


@pytest.mark.parametrize(
    ("program", "expected", "score"),
    [
        ("print(f'{1/3:.6f}')", "0.333333333333\n", 1.0),  # the cases
        ("print(0.1 + 0.2)", "0.3\n", 1.0),
        ("print(2 ** 0.5 * 1e9)", "1414213562.37", 1.0),  # relative error 2e-12
        ("print('1.0000005 2')", "1 2", 1.0),  # absolute 5e-7
        ("print('  7\\t8\\r\\n\\n9  ')", "7 8\n9\n", 1.0),  # spacing and line layout
        ("print(10 ** 20 + 1)", "100000000000000000000", 0.0),  # integers: exact
        ("print(f'{1/3:.4f}')", "0.333333", 0.0),  # 3.3e-5 off
        ("print(1, 2, 3)", "1 2", 0.0),  # an extra token
        ("print('yes')", "YES", 0.0),  # words: exact
    ],
)
def test_io_outputs_compare_as_judges_do(box, program, expected, score):
    assert code_reward(fenced(program), io(expected), sandbox=box) == score


def test_tolerance_is_settable(box):
    assert code_reward(fenced("print(0.1 + 0.2)"), io("0.3"), sandbox=box, tolerance=0.0) == 0.0
    assert code_reward(fenced("print(0.31)"), io("0.3"), sandbox=box, tolerance=0.05) == 1.0
    with pytest.raises(ValueError, match="tolerance"):
        code_reward(fenced("print(1)"), io("1"), sandbox=box, tolerance=-1)


def test_long_integers_print_and_compare_without_the_digit_limit(box):
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        big = str(7 ** 20000)  # 16,902 digits, over Python's default 4,300
    finally:
        sys.set_int_max_str_digits(old)
    assert code_reward(fenced("print(7 ** 20000)"), io(big), sandbox=box) == 1.0
    assert code_reward(fenced("print(7 ** 20000 + 1)"), io(big), sandbox=box) == 0.0
    test = f"def check(candidate):\n    assert str(candidate()) == {big!r}\n"
    example = {"prompt": "", "test": test, "entry_point": "f"}
    assert code_reward(fenced("def f():\n    return 7 ** 20000"), example, sandbox=box) == 1.0


def test_output_cap_admits_a_long_correct_answer_and_stops_floods(box):
    expected = "".join(f"{i}\n" for i in range(1, 200001))
    assert len(expected) == 1_288_895 > 1 << 20
    correct = "for i in range(1, 200001):\n    print(i)"
    assert code_reward(fenced(correct), io(expected), sandbox=box) == 1.0
    flood = run_example(fenced("while True:\n    print('x' * 1000)"), io(expected), sandbox=box)
    assert flood.status is Status.OUTPUT_LIMIT and len(flood.stdout) <= 2 * len(expected) + (64 << 10)
    tripled = run_example(fenced("for i in range(3 * 200000):\n    print(i)"), io(expected), sandbox=box)
    assert tripled.status is Status.OUTPUT_LIMIT


def test_output_cap_is_settable(box):
    program = fenced("print('x' * 200_000)")
    small = run_example(program, io("x"), sandbox=box, limits=Limits(max_output_bytes=100_000))
    assert small.status is Status.OUTPUT_LIMIT
    assert code_reward(program, io("x"), sandbox=box, max_output_bytes=300_000) == 0.0  # ran, wrong answer
    assert run_example(program, io("x"), sandbox=box, limits=Limits(max_output_bytes=300_000)).status is Status.FAIL


SLOW = "import time\n\ndef slow(x):\n    time.sleep({pause})\n    return x * 2\n"


def test_time_limit_is_per_assert_of_check(box):
    asserts = "".join(f"    assert candidate({i}) == {2 * i}\n" for i in range(8))
    example = {"prompt": "", "test": "def check(candidate):\n" + asserts, "entry_point": "slow"}
    assert code_reward(fenced(SLOW.format(pause=1.0)), example, sandbox=box, timeout=5.0) == 1.0  # the case
    hung = run_example(fenced(SLOW.format(pause=1.0).replace("x * 2", "x * 2 if x < 7 else slow(x)")), example,
                       sandbox=box, limits=Limits(timeout=0.5))
    assert hung.status is Status.TIMEOUT and 4.0 <= hung.elapsed < 6.0  # 8 tests x 0.5 s


def test_time_limit_is_per_io_case(box):
    cases = [{"stdin": f"{i}\n", "stdout": f"{2 * i}\n"} for i in range(3)]
    program = "import time\ntime.sleep(0.6)\nprint(2 * int(input()))"
    assert code_reward(fenced(program), {"io_cases": cases}, sandbox=box, timeout=1.0) == 1.0
    assert code_reward(fenced(program), {"io_cases": cases}, sandbox=box, timeout=0.3) == 0.0
