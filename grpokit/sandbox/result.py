"""Value types of the sandbox: what a run may cost (`Limits`) and what came of it (`Result`)."""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass


class Status(str, enum.Enum):
    """Outcome of one sandboxed run. Only PASS is a success; SANDBOX_ERROR means "could not judge"."""

    PASS = "PASS"  # tests passed (test mode) / exited 0 with the expected output (io mode)
    FAIL = "FAIL"  # ran, but a test failed, the output differs, it raised, or it did not compile
    TIMEOUT = "TIMEOUT"  # wall-clock deadline or CPU-seconds limit reached
    MEMORY = "MEMORY"  # address-space limit reached (MemoryError)
    OUTPUT_LIMIT = "OUTPUT_LIMIT"  # wrote more than the stdout/stderr cap
    CRASH = "CRASH"  # killed by a signal (segfault, abort...) or killed its own harness
    SANDBOX_ERROR = "SANDBOX_ERROR"  # the sandbox or the test harness failed; not the program's fault


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run. Memory and CPU limits apply per process inside the sandbox."""

    timeout: float = 5.0  # wall-clock seconds, counted from the moment the sandbox is up
    cpu_seconds: int | None = None  # RLIMIT_CPU per process; default ceil(timeout) + 1
    memory_mb: int = 512  # RLIMIT_AS per process
    max_processes: int = 16  # RLIMIT_NPROC: processes and threads of the sandbox user
    max_open_files: int = 64  # RLIMIT_NOFILE
    max_file_mb: int = 16  # RLIMIT_FSIZE: largest file the program may write
    tmpfs_mb: int = 64  # size of the private writable /tmp (also the working directory)
    max_output_bytes: int = 1 << 20  # per stream (stdout, stderr); more is OUTPUT_LIMIT
    startup_timeout: float = 20.0  # seconds for the sandbox to come up, else SANDBOX_ERROR
    site_packages: bool = False  # let the program import the base interpreter's site-packages

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError(f"Limits.timeout must be > 0 seconds, got {self.timeout!r}")
        for name in ("memory_mb", "max_processes", "max_open_files", "max_file_mb", "tmpfs_mb"):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.max_output_bytes < 1:
            raise ValueError(f"Limits.max_output_bytes must be >= 1, got {self.max_output_bytes!r}")

    def fitting_output(self, expected_bytes: int) -> "Limits":
        """These limits with an output cap that admits a correct answer of `expected_bytes` with
        room for other spacing: at least twice that plus 64 KiB (a flood still ends at the cap)."""
        needed = 2 * expected_bytes + (64 << 10)
        return self if needed <= self.max_output_bytes else dataclasses.replace(self, max_output_bytes=needed)

    def scaled(self, tests: int) -> "Limits":
        """These limits for a run of `tests` tests, each allowed `timeout` (and `cpu_seconds`)."""
        if tests < 1:
            raise ValueError(f"tests must be >= 1, got {tests!r}")
        cpu = None if self.cpu_seconds is None else self.cpu_seconds * tests
        return dataclasses.replace(self, timeout=self.timeout * tests, cpu_seconds=cpu)

    @property
    def cpu(self) -> int:
        return self.cpu_seconds if self.cpu_seconds is not None else math.ceil(self.timeout) + 1

    def rlimits(self) -> dict[str, int]:
        """The numbers the in-sandbox harness passes to setrlimit (sent as plain data)."""
        mib = 1 << 20
        return {
            "as": self.memory_mb * mib,
            "cpu": self.cpu,
            "fsize": self.max_file_mb * mib,
            "nofile": self.max_open_files,
            "nproc": self.max_processes,
        }


@dataclass
class Result:
    """What the parent observed. `detail` is for people (logs); decisions use `status` and `loaded`."""

    status: Status
    stdout: str = ""
    stderr: str = ""
    elapsed: float = 0.0  # seconds from "sandbox up" to the end of the run
    loaded: bool = False  # the code compiled and its top level ran without raising
    exit_code: int | None = None  # of the program's process, when it exited on its own
    signal: int | None = None  # the signal that killed the program's process, if any
    detail: str = ""
    isolation: str = ""  # "bwrap" or "process" (the weaker, explicitly allowed mode)
    uid: int | None = None  # host uid the program ran as, when the sandbox chose one
    pid_namespace: str | None = None  # e.g. "pid:[4026532301]", for leftover-process checks

    @property
    def passed(self) -> bool:
        return self.status is Status.PASS
