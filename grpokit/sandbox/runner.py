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
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .bwrap import MINIMAL_PATH, base_interpreter, build_argv, find_bwrap
from .compare import DEFAULT_TOLERANCE, check_tolerance, same_output
from .result import Limits, Result, Status

logger = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent
_RANDOM_UID_BASE = 2_000_000_000  # root mode: each run gets its own uid from this range
_RANDOM_UID_SPAN = 1_000_000_000
_RESULT_PIPE_CAP = 1 << 20
_EXIT_GRACE = 1.0  # seconds for the sandbox to wind down by itself after the verdict
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


@dataclass
class _Run:
    """What the supervisor saw of one run."""

    uid: int | None = None
    out: bytearray = field(default_factory=bytearray)
    err: bytearray = field(default_factory=bytearray)
    over_limit: str | None = None
    expired: bool = False
    hello_at: float | None = None
    loaded: bool = False
    ended_at: float | None = None
    verdict: dict | None = None
    spawn_error: str | None = None
    pid1: int | None = None
    pid_namespace: str | None = None

    @property
    def elapsed(self) -> float:
        if self.hello_at is None:
            return 0.0
        return max(0.0, (self.ended_at or time.monotonic()) - self.hello_at)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except OSError:
        return []


class _Supervisor:
    """Feeds the request and stdin, reads stdout/stderr/result without blocking, keeps deadlines."""

    def __init__(self, proc: subprocess.Popen, run: _Run, limits: Limits, nonce: str, isolation: str):
        self.proc, self.run, self.limits, self.nonce = proc, run, limits, nonce
        self.isolation = isolation
        self.sel = selectors.DefaultSelector()
        self.pending: dict[int, memoryview] = {}
        self.result_buf = bytearray()
        self.open_reads: set[str] = set()

    def start(self, req_w: int, request: bytes, res_r: int, stdin: bytes | None) -> None:
        self._add_writer(req_w, request)
        if stdin:
            self._add_writer(self.proc.stdin.fileno(), stdin)
        for fd, name in ((self.proc.stdout.fileno(), "stdout"), (self.proc.stderr.fileno(), "stderr"), (res_r, "result")):
            os.set_blocking(fd, False)
            self.sel.register(fd, selectors.EVENT_READ, name)
            self.open_reads.add(name)

    def _add_writer(self, fd: int, data: bytes) -> None:
        os.set_blocking(fd, False)
        self.pending[fd] = memoryview(data)
        self.sel.register(fd, selectors.EVENT_WRITE, "write")

    def _finished(self) -> bool:
        run = self.run
        return run.verdict is not None or run.over_limit is not None or "result" not in self.open_reads

    def watch(self, t_spawn: float) -> None:
        deadline = t_spawn + self.limits.startup_timeout
        while not self._finished():
            now = time.monotonic()
            if now >= deadline:
                self.run.expired = True
                break
            had_hello = self.run.hello_at is not None
            for key, _ in self.sel.select(deadline - now):
                if key.data == "write":
                    self._write(key.fd)
                else:
                    self._read(key.fd, key.data)
            if not had_hello and self.run.hello_at is not None:
                deadline = self.run.hello_at + self.limits.timeout
                self._note_sandbox()
        self.run.ended_at = time.monotonic()

    def _note_sandbox(self) -> None:
        """Remember the sandbox's init process and pid namespace (to kill it; for audits)."""
        if self.isolation != "bwrap":
            return
        kids = _children(self.proc.pid)
        if kids:
            self.run.pid1 = kids[0]
            try:
                self.run.pid_namespace = os.readlink(f"/proc/{kids[0]}/ns/pid")
            except OSError:
                pass

    def _close_writer(self, fd: int) -> None:
        self.sel.unregister(fd)
        del self.pending[fd]
        if self.proc.stdin is not None and fd == self.proc.stdin.fileno():
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        else:
            os.close(fd)

    def _write(self, fd: int) -> None:
        view = self.pending[fd]
        try:
            written = os.write(fd, view[: 1 << 16])
        except BlockingIOError:
            return
        except OSError:  # EPIPE: the reader is gone; the rest does not matter
            self._close_writer(fd)
            return
        self.pending[fd] = view[written:]
        if not self.pending[fd]:
            self._close_writer(fd)

    def _read(self, fd: int, name: str) -> None:
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.sel.unregister(fd)
            self.open_reads.discard(name)
            return
        if name == "result":
            self._on_result(data)
            return
        buf = self.run.out if name == "stdout" else self.run.err
        room = self.limits.max_output_bytes - len(buf)
        buf += data[: max(room, 0)]
        if len(data) > room and self.run.over_limit is None:
            self.run.over_limit = name

    def _on_result(self, data: bytes) -> None:
        self.result_buf += data
        while b"\n" in self.result_buf:
            line, _, rest = bytes(self.result_buf).partition(b"\n")
            self.result_buf = bytearray(rest)
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if not isinstance(message, dict) or message.get("nonce") != self.nonce:
                continue  # only the harness knows the nonce
            if message.get("event") == "hello" and self.run.hello_at is None:
                self.run.hello_at = time.monotonic()
            elif message.get("event") == "loaded":
                self.run.loaded = True
            elif message.get("event") == "verdict" and self.run.verdict is None:
                self.run.verdict = message
        if len(self.result_buf) > _RESULT_PIPE_CAP:
            self.result_buf.clear()

    def drain(self, budget: float) -> None:
        """After the kill: collect what is still in the stdout/stderr pipes, until EOF."""
        end = time.monotonic() + budget
        for fd in list(self.pending):
            self._close_writer(fd)
        while self.open_reads & {"stdout", "stderr"}:
            remaining = end - time.monotonic()
            if remaining <= 0:
                break
            for key, _ in self.sel.select(remaining):
                if key.data == "result":
                    self.sel.unregister(key.fd)
                    self.open_reads.discard("result")
                else:
                    self._read(key.fd, key.data)
        self.sel.close()


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _stop(proc: subprocess.Popen, run: _Run) -> None:
    """End the sandbox for sure. Killing the sandbox's init (pid 1 of its pid namespace) makes the
    kernel kill every process in that namespace, daemons included; bwrap then exits and we reap it."""
    if run.verdict is not None and run.over_limit is None:
        try:
            proc.wait(timeout=_EXIT_GRACE)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None and run.pid1 is not None:
        try:
            os.kill(run.pid1, signal.SIGKILL)
            proc.wait(timeout=_EXIT_GRACE)
        except (OSError, subprocess.TimeoutExpired):
            pass
    if proc.poll() is None:
        _kill_group(proc.pid)
        proc.wait()
    _kill_group(proc.pid)  # process mode: whatever is left in the session's group


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


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _classify(run: _Run, verdict: dict, mode: str, expected: str | None, stdout: str, limits: Limits,
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


def decide(run: _Run, mode: str, expected: str | None, limits: Limits, isolation: str,
           tolerance: float = DEFAULT_TOLERANCE) -> Result:
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
