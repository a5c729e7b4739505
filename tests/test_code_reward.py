"""The code reward: extraction, scoring tiers, all of HumanEval, and reward hacks that must score 0."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from grpokit.rewards.code import build_program, code_reward, code_reward_batch, extract_code, run_example
from grpokit.sandbox import Limits, Sandbox, Status, sandbox_problem

HUMANEVAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "humaneval" / "HumanEval.jsonl"
LIMITS = Limits(timeout=10.0)  # generous: 2 workers on 2 cores, some tests loop 100 times


@pytest.fixture(scope="module", autouse=True)
def _needs_bwrap():
    problem = sandbox_problem()
    if problem is not None:
        if os.environ.get("GRPOKIT_SANDBOX_OPTIONAL") == "1":
            pytest.skip(f"bubblewrap sandbox unavailable: {problem}")
        pytest.fail(f"bubblewrap sandbox unavailable (install bubblewrap): {problem}")


@pytest.fixture(scope="module")
def humaneval() -> list[dict]:
    rows = [json.loads(line) for line in HUMANEVAL.read_text().splitlines() if line.strip()]
    assert len(rows) == 164
    return rows


def fenced(code: str) -> str:
    return f"Here is my solution.\n\n```python\n{code}\n```\n\nIt runs in O(n^2)."


# --- extraction ---------------------------------------------------------------------------------


def test_extract_prefers_the_block_that_defines_the_entry_point():
    text = "```python\ndef f(x):\n    return x\n```\nUsage:\n```python\nprint(f(1))\n```"
    assert extract_code(text, "f").startswith("def f(x)")
    assert extract_code(text) == "def f(x):\n    return x\n"  # the usage snippet is not a program


def test_extract_handles_think_blocks_unlabeled_and_unclosed_fences():
    assert extract_code("<think>```python\nwrong = 1\n```</think>```python\nright = 1\n```") == "right = 1\n"
    assert extract_code("```\nx = 1\n```") == "x = 1\n"
    assert extract_code("```python\nx = 1\n") == "x = 1\n"  # truncated generation
    assert extract_code("x = 1") == "x = 1"
    assert extract_code("   \n") is None
    assert extract_code("```bash\nrm -rf /\n```") is None


def test_build_program_continues_a_body_or_replaces_the_stub():
    example = {"prompt": "def f(x):\n    \"\"\"doc\"\"\"\n", "test": "", "entry_point": "f"}
    body = build_program("    return x + 1\n", example)
    assert body.startswith(example["prompt"]) and body.endswith("    return x + 1\n")
    full = build_program("def f(x):\n    return x + 1\n", example)
    assert full.startswith(example["prompt"]) and "\n\n\ndef f(x):" in full
    assert build_program("print(1)", {"io_cases": []}) == "print(1)"


# --- scores -------------------------------------------------------------------------------------

ADD = {"prompt": "def add(a, b):\n    \"\"\"Sum.\"\"\"\n", "entry_point": "add",
       "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(5, 5) == 10\n"}


@pytest.mark.parametrize(
    ("completion", "plain", "tiered"),
    [
        (fenced("def add(a, b):\n    return a + b"), 1.0, 1.0),
        ("    return a + b\n", 1.0, 1.0),
        (fenced("def add(a, b):\n    return a * b"), 0.0, -0.5),
        (fenced("def add(a, b):\n    while True:\n        pass"), 0.0, -0.5),
        (fenced("def add(a, b) return a + b"), 0.0, -1.0),
        (fenced("import nonexistent_module\ndef add(a, b):\n    return a + b"), 0.0, -1.0),
        ("I don't know.", 0.0, -1.0),
        ("", 0.0, -1.0),
    ],
    ids=["pass", "body", "wrong", "timeout", "syntax", "load-error", "prose", "empty"],
)
def test_scores_and_tiers(completion, plain, tiered):
    assert code_reward(completion, ADD, timeout=2.0) == plain
    assert code_reward(completion, ADD, tiers=True, timeout=2.0) == tiered


SUM_IO = {"io_cases": [{"stdin": "1 2\n", "stdout": "3\n"}, {"stdin": "10 -4\n", "stdout": "6\n"}]}


def test_io_cases():
    good = "a, b = map(int, input().split())\nprint(a + b)"
    assert code_reward(fenced(good), SUM_IO) == 1.0
    first_only = "a, b = map(int, input().split())\nprint(3)"
    assert code_reward(fenced(first_only), SUM_IO) == 0.0
    assert code_reward(fenced(first_only), SUM_IO, tiers=True) == -0.5
    assert code_reward(fenced("print(int(input()) +"), SUM_IO, tiers=True) == -1.0
    printed_expected = "print('3')\nprint('6')"  # printing every expected line is still wrong per case
    assert code_reward(fenced(printed_expected), SUM_IO) == 0.0


def test_example_without_tests_is_an_error():
    with pytest.raises(ValueError, match="io_cases"):
        code_reward("print(1)", {"prompt": "x"})


def test_batch_keeps_order_and_validates():
    completions = [fenced("def add(a, b):\n    return a + b"), "nothing", fenced("def add(a, b):\n    return 0")] * 2
    assert code_reward_batch(completions, [ADD] * 6, workers=2) == [1.0, 0.0, 0.0] * 2
    with pytest.raises(ValueError, match="completions"):
        code_reward_batch(["x"], [ADD, ADD])
    with pytest.raises(ValueError, match="workers"):
        code_reward_batch(["x"], [ADD], workers=0)


# --- HumanEval ----------------------------------------------------------------------------------

ALTER_RETURN = """

_grpokit_original = {name}


def {name}(*args, **kwargs):
    value = _grpokit_original(*args, **kwargs)
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "?"
    if isinstance(value, (list, tuple)):
        return type(value)([*value, "?"])
    return "?"
"""


def test_all_canonical_humaneval_solutions_pass(humaneval):
    completions = [row["canonical_solution"] for row in humaneval]
    scores = code_reward_batch(completions, humaneval, workers=2, limits=LIMITS)
    failed = [row["task_id"] for row, score in zip(humaneval, scores) if score != 1.0]
    assert failed == []


def test_humaneval_solutions_with_altered_return_values_fail(humaneval):
    completions = [row["canonical_solution"] + ALTER_RETURN.format(name=row["entry_point"]) for row in humaneval]
    scores = code_reward_batch(completions, humaneval, workers=2, limits=LIMITS)
    passed = [row["task_id"] for row, score in zip(humaneval, scores) if score != 0.0]
    assert passed == []


def test_fenced_full_solutions_pass(humaneval):
    rows = humaneval[:12]
    completions = [fenced(row["prompt"] + row["canonical_solution"]) for row in rows]
    assert code_reward_batch(completions, rows, workers=2, limits=LIMITS) == [1.0] * len(rows)


# --- reward hacks: each must score exactly 0 (and not None) --------------------------------------

HACKS = {
    "exit-before-tests": "def has_close_elements(numbers, threshold):\n    return False\nexit(0)\n",
    "os-exit-before-tests": "import os\ndef has_close_elements(numbers, threshold):\n    return False\nos._exit(0)\n",
    "exit-inside-call": "import sys\ndef has_close_elements(numbers, threshold):\n    sys.exit(0)\n",
    "os-exit-inside-call": "import os\ndef has_close_elements(numbers, threshold):\n    os._exit(0)\n",
    "always-equal-object": (
        "class Yes:\n    def __eq__(self, other):\n        return True\n    def __ne__(self, other):\n        return False\n"
        "    def __bool__(self):\n        return True\n    __hash__ = object.__hash__\n"
        "def has_close_elements(numbers, threshold):\n    return Yes()\n"
    ),
    "always-equal-int-subclass": (
        "class Yes(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\n"
        "def has_close_elements(numbers, threshold):\n    return Yes(7)\n"
    ),
    "print-passed": "print('PASSED')\nprint('All tests passed!')\ndef has_close_elements(numbers, threshold):\n    return False\n",
    "print-passed-then-exit": "import sys\nprint('PASSED', flush=True)\nsys.exit(0)\n",
    "redefine-check": (
        "def check(candidate):\n    return None\nimport builtins\nbuiltins.check = check\nbuiltins.AssertionError = type('E', (Exception,), {})\n"
        "import sys\nsys.modules['__main__'].check = check\ndef has_close_elements(numbers, threshold):\n    return False\n"
    ),
    "patch-on-exit": (
        "import atexit, os, sys\natexit.register(lambda: os._exit(0))\nsys.excepthook = lambda *a: None\n"
        "def has_close_elements(numbers, threshold):\n    raise AssertionError('x')\n"
    ),
    "forge-verdict-on-every-fd": (
        "import json, os\nline = json.dumps({'event': 'verdict', 'passed': True, 'loaded': True, 'nonce': ''}) + '\\n'\n"
        "for fd in range(3, 256):\n    try:\n        os.write(fd, line.encode())\n    except OSError:\n        pass\n"
        "def has_close_elements(numbers, threshold):\n    return None\n"
    ),
    "kill-or-stop-the-harness": (
        "import os, signal\ndef has_close_elements(numbers, threshold):\n"
        "    for sig in (signal.SIGSTOP, signal.SIGKILL):\n        try:\n            os.kill(os.getppid(), sig)\n"
        "        except OSError:\n            pass\n    return True\n"
    ),
}


@pytest.mark.parametrize("name", sorted(HACKS))
def test_reward_hacks_score_zero(name, humaneval):
    example = humaneval[0]
    assert example["entry_point"] == "has_close_elements"
    assert code_reward(fenced(example["prompt"] + example["canonical_solution"]), example, timeout=3.0) == 1.0
    score = code_reward(fenced(HACKS[name]), example, timeout=3.0)
    assert score == 0.0


SNOOP = """
import gc, os, sys
found = []
for root, dirs, files in os.walk('/'):  # all but kernel views and the (public) system/Python trees
    if root.startswith(('/proc', '/sys', '/dev', '/usr', sys.base_prefix)):
        dirs[:] = []
        continue
    for name in files:
        try:
            if b'def check(' in open(os.path.join(root, name), 'rb').read(1 << 20):
                found.append(os.path.join(root, name))
        except OSError:
            pass
for name in ('cmdline', 'environ', 'mem', 'maps'):
    try:
        data = open('/proc/1/' + name, 'rb').read(1 << 20)
        if b'def check(' in data or b'threshold' in data:
            found.append('/proc/1/' + name)
    except OSError as exc:
        print('no access', name, type(exc).__name__)
found += [o for o in gc.get_objects() if callable(o) and getattr(o, '__name__', '') == 'check']
print('found', found)

def has_close_elements(numbers, threshold):
    return bool(found)
"""


def test_reading_the_tests_finds_nothing(humaneval):
    example = humaneval[0]
    result = run_example(fenced(SNOOP), example, limits=Limits(timeout=5.0))
    assert result.status is Status.FAIL
    assert "found []" in result.stdout
    assert "no access mem PermissionError" in result.stdout and "no access environ PermissionError" in result.stdout
    assert code_reward(fenced(SNOOP), example, timeout=5.0) == 0.0


def test_unsafe_mode_is_opt_in_for_the_reward(tmp_path):
    sandbox = Sandbox(bwrap=str(tmp_path / "missing"))
    with pytest.raises(Exception, match="allow_unsafe"):
        code_reward(fenced("def add(a, b):\n    return a + b"), ADD, sandbox=sandbox)
