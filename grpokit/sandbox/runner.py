"""Trainer side of the sandbox: start it, feed it, watch it, kill it, and decide the status.

Everything that decides a verdict happens here or in the trusted harness; the program's own
output is only ever compared (io mode) or reported, never believed.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from .bwrap import MINIMAL_PATH, base_interpreter, build_argv, find_bwrap
from .compare import DEFAULT_TOLERANCE, check_tolerance
from .result import Limits, Result, Status
from .supervisor import _Run, _stop, _Supervisor
from .verdict import decide

logger = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent
_RANDOM_UID_BASE = 2_000_000_000  # root mode: each run gets its own uid from this range
_RANDOM_UID_SPAN = 1_000_000_000
_DRAIN_BUDGET = 2.0  # seconds to collect the last output after the kill
_ISOLATIONS = ("auto", "bwrap", "process")


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create namespaces here, and no weaker mode was allowed."""


@functools.cache
def harness_source() -> str:
    return (_HERE / "_codec.py").read_text() + "\n" + (_HERE / "_harness.py").read_text()


@functools.cache
def worker_source() -> str:
    return (_HERE / "_codec.py").read_text() + "\n" + (_HERE / "_worker.py").read_text()


def launch(request: dict, stdin: bytes | None, limits: Limits, isolation: str, bwrap: str | None) -> _Run:
    """Run one request in a fresh sandbox and return what was observed (no status yet)."""
    python = base_interpreter()
    privileged = isolation == "bwrap" and os.geteuid() == 0
    run = _Run(uid=_RANDOM_UID_BASE + secrets.randbelow(_RANDOM_UID_SPAN) if privileged else os.getuid())
    nonce = secrets.token_hex(16)
    request = dict(
        request,
        nonce=nonce,
        uid=run.uid if privileged else None,
        private_userns=privileged,
        rlimits=limits.rlimits(),
        worker_source=worker_source(),
        site_packages=limits.site_packages,
    )
    req_r, req_w = os.pipe()
    res_r, res_w = os.pipe()
    life_r, life_w = os.pipe()  # we hold life_w until the end: the harness exits when it closes
    command = [python, "-I", "-S", "-B", "-c", harness_source(), str(req_r), str(res_w), str(life_r)]
    workdir = None
    if isolation == "bwrap":
        argv, cwd = build_argv(bwrap, python, command, privileged=privileged, tmpfs_bytes=limits.tmpfs_mb << 20), "/"
    else:
        workdir = tempfile.mkdtemp(prefix="grpokit-sandbox-")
        argv, cwd = command, workdir
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, pass_fds=(req_r, res_w, life_r), cwd=cwd, env={"PATH": MINIMAL_PATH},
            start_new_session=True,
        )
    except OSError as exc:
        run.spawn_error = f"{argv[0]}: {exc}"
        for fd in (req_w, res_r, life_w):
            os.close(fd)
        return run
    finally:
        for fd in (req_r, res_w, life_r):
            os.close(fd)
        if workdir is not None and run.spawn_error:
            shutil.rmtree(workdir, ignore_errors=True)
    supervisor = _Supervisor(proc, run, limits, nonce, isolation)
    try:
        supervisor.start(req_w, json.dumps(request).encode(), res_r, stdin)
        supervisor.watch(time.monotonic())
    finally:
        _stop(proc, run)
        supervisor.drain(_DRAIN_BUDGET)
        for stream in (proc.stdout, proc.stderr):
            stream.close()
        for fd in (res_r, life_w):
            os.close(fd)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    return run


_PROBES: dict[str, str | None] = {}
_PROBE_LOCK = threading.Lock()


def sandbox_problem(bwrap: str | None = None, *, refresh: bool = False) -> str | None:
    """Why the bubblewrap sandbox cannot be used here, or None when it works.

    Checked once per bwrap path (a real trivial run through the full sandbox) and cached."""
    path = find_bwrap(bwrap)
    if path is None:
        where = bwrap if bwrap is not None else "on PATH"
        return f"no bwrap executable ({where}); install the bubblewrap package (Debian/Ubuntu: apt-get install bubblewrap)"
    with _PROBE_LOCK:
        if refresh or path not in _PROBES:
            _PROBES[path] = _probe(path)
        return _PROBES[path]


def _probe(path: str) -> str | None:
    try:
        base_interpreter()
    except FileNotFoundError as exc:
        return str(exc)
    run = launch({"mode": "io", "code": "print('ok')"}, None, Limits(timeout=10.0), "bwrap", path)
    result = decide(run, "io", "ok\n", Limits(), "bwrap")
    if result.status is Status.PASS:
        return None
    stderr = result.stderr.strip().splitlines()
    hint = f"; bwrap said: {' | '.join(stderr[-3:])}" if stderr else ""
    return f"{path} could not run a trivial program ({result.status.value}: {result.detail}){hint}"


class Sandbox:
    """Runs untrusted Python under bubblewrap; refuses to run without it unless told otherwise.

    isolation="auto" uses bubblewrap, and falls back to process-level isolation only when
    allow_unsafe=True (with a warning on every run). isolation="process" skips bubblewrap on
    purpose and also needs allow_unsafe=True.
    """

    def __init__(self, limits: Limits | None = None, *, allow_unsafe: bool = False,
                 isolation: str = "auto", bwrap: str | None = None):
        if isolation not in _ISOLATIONS:
            raise ValueError(f"isolation must be one of {_ISOLATIONS}, got {isolation!r}")
        if isolation == "process" and not allow_unsafe:
            raise ValueError("isolation='process' runs untrusted code without namespaces; pass allow_unsafe=True to confirm")
        self.limits = limits or Limits()
        self.allow_unsafe = allow_unsafe
        self._requested = isolation
        self._bwrap = bwrap
        self._weak_reason = "isolation='process' was requested"

    @property
    def isolation(self) -> str:
        """The isolation this sandbox uses: "bwrap" or "process". Raises SandboxUnavailable."""
        if self._requested == "process":
            return "process"
        problem = sandbox_problem(self._bwrap)
        if problem is None:
            return "bwrap"
        if self._requested == "bwrap" or not self.allow_unsafe:
            raise SandboxUnavailable(
                f"refusing to run untrusted code: the bubblewrap sandbox is unavailable: {problem}. "
                "Install bubblewrap and allow user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
                "user.max_user_namespaces > 0; in a container, a seccomp/AppArmor profile that permits "
                "unshare/mount), or pass allow_unsafe=True to accept process-level isolation only, "
                "which does NOT contain hostile code."
            )
        self._weak_reason = problem
        return "process"

    def run_tests(self, code: str, *, test: str, entry_point: str, prompt: str = "",
                  limits: Limits | None = None) -> Result:
        """Run `check(entry_point)` from `test` (HumanEval style) against `code`."""
        request = {"mode": "tests", "code": code, "test": test, "entry_point": entry_point, "prompt": prompt}
        return self._run(request, None, limits, None)

    def run_io(self, code: str, stdin: str = "", *, expected_stdout: str | None = None,
               limits: Limits | None = None, tolerance: float = DEFAULT_TOLERANCE) -> Result:
        """Run `code` as a script with `stdin`. PASS: exit 0 and (if given) the expected stdout,
        compared token by token with numbers within `tolerance` (`compare.same_output`). With an
        expected output the output cap is at least `Limits.fitting_output` of it."""
        check_tolerance(tolerance)
        limits = limits or self.limits
        if expected_stdout is not None:
            limits = limits.fitting_output(len(expected_stdout.encode()))
        return self._run({"mode": "io", "code": code}, stdin.encode(), limits, expected_stdout, tolerance)

    def _run(self, request: dict, stdin: bytes | None, limits: Limits | None, expected: str | None,
             tolerance: float = DEFAULT_TOLERANCE) -> Result:
        limits = limits or self.limits
        isolation = self.isolation
        if isolation == "process":
            logger.warning(
                "grpokit.sandbox: running untrusted code WITHOUT bubblewrap (process isolation only: "
                "rlimits, own session, temp dir, empty env); reason: %s", self._weak_reason)
        run = launch(request, stdin, limits, isolation, find_bwrap(self._bwrap))
        return decide(run, request["mode"], expected, limits, isolation, tolerance)
