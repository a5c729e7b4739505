"""Running untrusted, model-written Python: bubblewrap namespaces + rlimits + a trusted harness.

    from grpokit.sandbox import Sandbox, Limits
    result = Sandbox(Limits(timeout=3)).run_tests(code, test=row["test"], entry_point=row["entry_point"])
    result.status  # Status.PASS / FAIL / TIMEOUT / MEMORY / OUTPUT_LIMIT / CRASH / SANDBOX_ERROR

See docs/sandbox.md for the layers and the threat model.
"""

from .compare import same_output
from .result import Limits, Result, Status
from .runner import Sandbox, SandboxUnavailable, sandbox_problem

__all__ = ["Limits", "Result", "Sandbox", "SandboxUnavailable", "Status", "same_output", "sandbox_problem"]
