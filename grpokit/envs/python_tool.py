"""The python tool: model-written code run as a script in grpokit's bubblewrap sandbox.

The observation is what the program printed (stdout, then stderr), cut to ``max_chars``; a
failure (a timeout, too much memory or output, a crash) puts an ``error: STATUS: detail`` line
first, and never raises in the trainer; an exception's traceback is in the printed stderr. The sandbox's limits apply per run
(grpokit.sandbox.Limits: wall clock, CPU, memory, processes, file size, no network).
"""

from __future__ import annotations

from grpokit.sandbox import Limits, Sandbox, Status

from .tools import Tool


def python_tool(limits: Limits | None = None, *, max_chars: int = 2000, sandbox: Sandbox | None = None) -> Tool:
    """A Tool named ``python`` that runs its ``code`` argument in the sandbox (see the module)."""
    box = sandbox or Sandbox(limits or Limits(timeout=5.0, memory_mb=512, max_output_bytes=64 << 10))

    def python(code: str) -> str:
        """Run a Python program and return what it printed.

        Args:
            code: the program's source; print the values you want to see
        """
        result = box.run_io(code)
        text = (result.stdout + (("\n" if result.stdout else "") + result.stderr if result.stderr else "")).strip()
        if result.status not in (Status.PASS, Status.FAIL) or (result.status is Status.FAIL and not text):
            text = f"error: {result.status.value}: {result.detail}\n{text}".strip()  # first: it survives the cut
        return text[:max_chars]

    tool = Tool.from_function(python)
    tool.timeout = box.limits.timeout + box.limits.startup_timeout + 5.0  # the sandbox keeps its own clock
    return tool
