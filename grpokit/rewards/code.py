"""Code-execution reward: run the completion's code in the sandbox against the example's tests.

Examples come in two shapes:
- HumanEval style: keys `prompt`, `test` (defines `check(candidate)`), `entry_point`;
- stdin/stdout style: key `io_cases`, a list of {"stdin": str, "stdout": str}.

Scores: pass = 1, anything else = 0. With `tiers=True`, the textbook's three tiers: +1 passes,
-0.5 runs but fails (wrong answer, exception during the tests, timeout...), -1 does not run (no
code, syntax error, or its top level fails). None when the sandbox itself could not judge
(SANDBOX_ERROR), so the trainer can leave the sample out instead of punishing it.

Deviation from the textbook: it runs `python -c` in the trainer's own environment; here the code
runs in `grpokit.sandbox` (bubblewrap + rlimits) and the verdict comes from a trusted harness.
"""

from __future__ import annotations

import ast
import builtins
import functools
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from grpokit.sandbox import Limits, Result, Sandbox, Status
from grpokit.sandbox.compare import DEFAULT_TOLERANCE, check_tolerance

from .fences import fenced_blocks

_PY_LANGS = ("python", "python3", "py", "py3")
_BUILTIN_NAMES = frozenset(dir(builtins)) | {"__name__", "__file__", "__doc__", "__builtins__"}


def _defines(code: str, name: str) -> bool:
    return re.search(rf"^[ \t]*(?:async[ \t]+)?def[ \t]+{re.escape(name)}[ \t]*\(", code, re.M) is not None


def _bound_names(tree: ast.AST) -> set[str]:
    """Every name the code binds anywhere (flat over scopes: a generous reading)."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            bound.update(node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            bound.add(node.rest)
    return bound


def is_complete_program(code: str) -> bool:
    """True when `code` parses, does something (not only literals) and uses no name it does not
    define, import or get from builtins: a program, not a snippet calling names defined elsewhere."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    if all(isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) for s in tree.body):
        return False  # empty, or data/docstrings only (e.g. a block showing the expected output)
    if any(isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names) for node in ast.walk(tree)):
        return True  # star imports bind names we cannot see
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return used <= _bound_names(tree) | _BUILTIN_NAMES


def _solution_block(codes: list[str], entry_point: str | None) -> str:
    """Assert tasks: the last block defining `entry_point`; io tasks: the last complete program;
    the last block when none qualifies."""
    if entry_point:
        chosen = [c for c in codes if _defines(c, entry_point)]
    else:
        chosen = [c for c in codes if is_complete_program(c)]
    return (chosen or codes)[-1]


def extract_code(completion: str, entry_point: str | None = None) -> str | None:
    """The code of a completion: of its fenced blocks (read as Markdown reads them, see
    `grpokit.rewards.fences`) the python-labeled ones, else the unlabeled ones; among those the
    solution (`_solution_block`). The whole text when there are no fences; None when there is no
    code (only blocks in other languages, or empty). Text up to the last `</think>` is reasoning,
    never code."""
    text = completion.rsplit("</think>", 1)[-1]
    blocks = fenced_blocks(text)
    if not blocks:
        return text if text.strip() else None
    codes = [b.code for b in blocks if b.lang in _PY_LANGS and b.code.strip()]
    codes = codes or [b.code for b in blocks if not b.lang and b.code.strip()]
    return _solution_block(codes, entry_point) if codes else None


def build_program(code: str, example: dict) -> str:
    """For HumanEval-style examples, put the prompt (imports, helpers, signature) before the code:
    an indented body continues the prompt's function; a full definition replaces the stub."""
    prompt = example.get("prompt") or ""
    if not prompt or "test" not in example:
        return code
    first = next((line for line in code.splitlines() if line.strip()), "")
    if first[:1] in (" ", "\t"):
        return prompt.rstrip("\n") + "\n" + code
    return prompt.rstrip("\n") + "\n\n\n" + code


@functools.cache
def _default_sandbox(allow_unsafe: bool) -> Sandbox:
    return Sandbox(allow_unsafe=allow_unsafe)


def _score(result: Result | None, tiers: bool) -> float | None:
    if result is None:  # no code at all
        return -1.0 if tiers else 0.0
    if result.status is Status.SANDBOX_ERROR:
        return None
    if result.status is Status.PASS:
        return 1.0
    if not tiers:
        return 0.0
    return -0.5 if result.loaded else -1.0


@functools.lru_cache(maxsize=4096)
def count_tests(test: str) -> int:
    """How many tests a `check()` source holds: its `assert` statements (one inside a loop counts
    once), at least 1."""
    try:
        tree = ast.parse(test)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return 1  # the harness reports the broken test itself
    return max(1, sum(isinstance(node, ast.Assert) for node in ast.walk(tree)))


def run_example(completion: str, example: dict, *, limits: Limits | None = None,
                sandbox: Sandbox | None = None, allow_unsafe: bool = False,
                tolerance: float = DEFAULT_TOLERANCE) -> Result | None:
    """Sandbox result of a completion on one example (the first failing case for io examples);
    None when the completion holds no code. `limits.timeout` (and `cpu_seconds`) is per test: each
    io case runs with it; a `check()` runs with it times `count_tests` of its source. io outputs
    are compared with `grpokit.sandbox.same_output` within `tolerance`."""
    limits = limits or Limits()
    code = extract_code(completion, example.get("entry_point"))
    if code is None:
        return None
    box = sandbox or _default_sandbox(allow_unsafe)
    program = build_program(code, example)
    if "test" in example:
        if not example.get("entry_point"):
            raise ValueError("a HumanEval-style example needs `entry_point` next to `test`")
        return box.run_tests(program, test=example["test"], entry_point=example["entry_point"],
                             prompt=example.get("prompt") or "", limits=limits.scaled(count_tests(example["test"])))
    cases = example.get("io_cases")
    if not cases:
        raise ValueError("code_reward needs an example with `test` + `entry_point` or with `io_cases`")
    result = None
    for case in cases:
        result = box.run_io(program, case.get("stdin", ""), expected_stdout=case["stdout"], limits=limits,
                            tolerance=tolerance)
        if result.status is not Status.PASS:
            break
    return result


def code_reward(completion: str, example: dict, *, tiers: bool = False, timeout: float = 5.0,
                max_output_bytes: int = 1 << 20, tolerance: float = DEFAULT_TOLERANCE,
                limits: Limits | None = None, sandbox: Sandbox | None = None,
                allow_unsafe: bool = False) -> float | None:
    """1.0 if the completion's code passes the example's tests, else 0.0 (see module doc for
    `tiers`); None if the sandbox could not judge.

    `timeout`: wall-clock seconds per test (per io case; per `assert` of a `check()`, whose run
    gets `timeout` times their number). `max_output_bytes`: stdout/stderr cap per run, raised for
    an io case to twice its expected output plus 64 KiB. `tolerance`: absolute-or-relative error
    allowed on non-integer numbers of an io output (docs/rewards.md). `limits`, when given,
    replaces `timeout` and `max_output_bytes` (its timeout is per test too). Raises
    SandboxUnavailable when bubblewrap is unusable and `allow_unsafe` is False; ValueError for a
    bad `timeout`, `max_output_bytes` or `tolerance`."""
    check_tolerance(tolerance)
    limits = limits or Limits(timeout=timeout, max_output_bytes=max_output_bytes)
    result = run_example(completion, example, limits=limits, sandbox=sandbox, allow_unsafe=allow_unsafe,
                         tolerance=tolerance)
    return _score(result, tiers)


def code_reward_batch(completions: Sequence[str], examples: Sequence[dict], *, workers: int = 2,
                      **kwargs) -> list[float | None]:
    """`code_reward` for many completions, at most `workers` sandboxes at a time, in input order."""
    if len(completions) != len(examples):
        raise ValueError(f"got {len(completions)} completions but {len(examples)} examples")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="code-reward") as pool:
        return list(pool.map(lambda pair: code_reward(pair[0], pair[1], **kwargs), zip(completions, examples)))
