"""The verdict of a finished sandboxed run: which Status it gets and why.

The status comes from what the trusted harness reported and what the supervisor saw (limits hit,
time expired, the sandbox failing to start), in a fixed order of precedence; the program's own
output is only compared with the expected output (io mode), never believed.
"""

from __future__ import annotations

import signal

from .compare import DEFAULT_TOLERANCE, same_output
from .result import Limits, Result, Status


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _classify(run, verdict: dict, mode: str, expected: str | None, stdout: str, limits: Limits,
              tolerance: float) -> tuple[Status, str]:
    if run.spawn_error:
        return Status.SANDBOX_ERROR, f"could not start the sandbox: {run.spawn_error}"
    if run.over_limit:
        return Status.OUTPUT_LIMIT, f"{run.over_limit} exceeded {limits.max_output_bytes} bytes"
    if run.hello_at is None:
        why = verdict.get("harness_error") or (
            "the sandbox did not come up in time" if run.expired else "the sandbox exited before starting the program"
        )
        return Status.SANDBOX_ERROR, why
    if run.expired:
        return Status.TIMEOUT, f"wall-clock limit of {limits.timeout:g}s reached"
    if not verdict:
        return Status.CRASH, "the harness died before reporting (killed by the program?)"
    if "harness_error" in verdict:
        return Status.SANDBOX_ERROR, str(verdict["harness_error"])
    sig, code, detail = verdict.get("signal"), verdict.get("exit_code"), str(verdict.get("detail") or "")
    if sig == signal.SIGXCPU:
        return Status.TIMEOUT, f"CPU-time limit of {limits.cpu}s reached"
    if mode == "tests" and verdict.get("passed") is True:
        return Status.PASS, detail
    if mode == "io" and verdict.get("loaded") is True and code == 0 and sig is None:
        if expected is None or same_output(stdout, expected, tolerance):
            return Status.PASS, "exited 0" + ("" if expected is None else " with the expected output")
        return Status.FAIL, "the output differs from the expected output"
    if verdict.get("memory") is True:
        return Status.MEMORY, f"memory limit of {limits.memory_mb} MiB reached ({detail})"
    if sig:
        return Status.CRASH, f"the program was killed by {_signal_name(int(sig))}"
    if mode == "io" and verdict.get("loaded") is True:
        error = verdict.get("error_type")
        return Status.FAIL, f"exited with code {code}" + (f" ({error})" if error else "")
    return Status.FAIL, detail


def decide(run, mode: str, expected: str | None, limits: Limits, isolation: str,
           tolerance: float = DEFAULT_TOLERANCE) -> Result:
    """The Result of a finished run (runner._Run): its status by the rules of _classify, which
    trust only the harness's verdict and the supervisor's observations, never the program's output."""
    verdict = run.verdict or {}
    stdout = run.out.decode("utf-8", errors="replace")
    status, detail = _classify(run, verdict, mode, expected, stdout, limits, tolerance)
    return Result(
        status=status,
        stdout=stdout,
        stderr=run.err.decode("utf-8", errors="replace"),
        elapsed=run.elapsed,
        loaded=run.loaded or verdict.get("loaded") is True,
        exit_code=verdict.get("exit_code"),
        signal=verdict.get("signal"),
        detail=detail,
        isolation=isolation,
        uid=run.uid,
        pid_namespace=run.pid_namespace,
    )
