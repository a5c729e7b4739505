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

import functools
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from grpokit.sandbox import Limits, Result, Sandbox, Status

_FENCE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_PY_LANGS = ("python", "python3", "py", "py3")


def _defines(code: str, name: str) -> bool:
    return re.search(rf"^[ \t]*(?:async[ \t]+)?def[ \t]+{re.escape(name)}[ \t]*\(", code, re.M) is not None


def extract_code(completion: str, entry_point: str | None = None) -> str | None:
    """The code in a completion: a ```python block (the last one defining `entry_point` if any,
    else the last), an unlabeled block, or the whole text when there are no fences. None if empty."""
    text = completion.rsplit("</think>", 1)[-1]  # reasoning before the answer is not code
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(text)]
    if blocks:
        chosen = [b for lang, b in blocks if lang in _PY_LANGS] or [b for lang, b in blocks if not lang]
        if not chosen:
            return None
        if entry_point:
            defining = [b for b in chosen if _defines(b, entry_point)]
            chosen = defining or chosen
        code = chosen[-1]
    else:
        code = text
    return code if code.strip() else None


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


def run_example(completion: str, example: dict, *, limits: Limits | None = None,
                sandbox: Sandbox | None = None, allow_unsafe: bool = False) -> Result | None:
    """Sandbox result of a completion on one example (the first failing case for io examples);
    None when the completion holds no code."""
    code = extract_code(completion, example.get("entry_point"))
    if code is None:
        return None
    box = sandbox or _default_sandbox(allow_unsafe)
    program = build_program(code, example)
    if "test" in example:
        if not example.get("entry_point"):
            raise ValueError("a HumanEval-style example needs `entry_point` next to `test`")
        return box.run_tests(program, test=example["test"], entry_point=example["entry_point"],
                             prompt=example.get("prompt") or "", limits=limits)
    cases = example.get("io_cases")
    if not cases:
        raise ValueError("code_reward needs an example with `test` + `entry_point` or with `io_cases`")
    result = None
    for case in cases:
        result = box.run_io(program, case.get("stdin", ""), expected_stdout=case["stdout"], limits=limits)
        if result.status is not Status.PASS:
            break
    return result


def code_reward(completion: str, example: dict, *, tiers: bool = False, timeout: float = 5.0,
                limits: Limits | None = None, sandbox: Sandbox | None = None,
                allow_unsafe: bool = False) -> float | None:
    """1.0 if the completion's code passes the example's tests, else 0.0 (see module doc for
    `tiers`); None if the sandbox could not judge. Raises SandboxUnavailable when bubblewrap is
    unusable and `allow_unsafe` is False."""
    limits = limits or Limits(timeout=timeout)
    result = run_example(completion, example, limits=limits, sandbox=sandbox, allow_unsafe=allow_unsafe)
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
