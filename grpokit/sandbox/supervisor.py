"""Watching one sandboxed run: its pipes (stdout, stderr and the harness's result channel, each
capped), its wall-clock limit and process tree, and stopping it. What was seen is kept in a _Run;
verdict.py turns that into a Result.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass, field

from .result import Limits

_RESULT_PIPE_CAP = 1 << 20
_EXIT_GRACE = 1.0  # seconds for the sandbox to wind down by itself after the verdict


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
