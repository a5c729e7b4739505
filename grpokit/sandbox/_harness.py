"""Trusted harness: the first process inside the sandbox (source text, run with `python -I -S -c`).

It receives one request from the trainer on a private pipe, takes on the sandbox identity (a fresh
uid, no capabilities, no further user namespaces, not ptrace-able, rlimits), reports "hello", and
then runs the untrusted code in a *separate* fresh interpreter (the worker), never in itself.

Test mode: the harness loads the prompt's helpers and the test, binds the entry point to a proxy,
and calls `check(proxy)`. Every call to the proxy is a round trip to the worker; the worker sends
back the return value as plain data (`_codec`). The asserts, the comparisons, the test source and
the verdict all live in this process, which the program cannot read, patch, or signal its way
into reporting success: at worst it kills the harness, which the trainer scores as a crash.

IO mode: the worker runs the program as `__main__` with the trainer's stdin; the harness reports
how it ended. The trainer compares stdout with the expected output itself.

The `_codec` source is prepended to this file when it is sent into the sandbox.
"""

import os
import resource
import subprocess
import sys

_CLONE_NEWUSER = 0x10000000
_PR_SET_DUMPABLE = 4
_SIGKILL = 9
_WORKER_GRACE = 1.0  # seconds a worker that closed its pipe gets to exit before it is killed


class HarnessError(Exception):
    """The test itself could not run. Not the program's fault: the trainer reports SANDBOX_ERROR."""


class CandidateDied(Exception):
    """The worker stopped answering (exited, crashed, closed its pipe, or broke the protocol)."""


class CandidateRaised(Exception):
    """The candidate function raised; carries the exception's type name and message."""


class _State:
    def __init__(self):
        self.broken = ""  # set once the worker broke the protocol: no PASS after that
        self.harness_error = ""
        self.memory = False
        self.error_type = None
        self.worker_started = False  # from here on, an unexpected failure may be the program's doing


class _Reporter:
    """Writes JSON lines to the trainer on a pipe the worker never inherits; each carries the nonce."""

    def __init__(self, fd, nonce):
        self._fd, self._nonce = fd, nonce

    def send(self, event, **fields):
        import json

        line = json.dumps({"nonce": self._nonce, "event": event, **fields}) + "\n"
        data = line.encode()
        while data:
            data = data[os.write(self._fd, data) :]


def _read_request(fd):
    import json

    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return json.loads(b"".join(chunks))


def _libc():
    import ctypes

    return ctypes, ctypes.CDLL(None, use_errno=True)


def _take_identity(request):
    """Drop root (when started as root) and forbid new user namespaces for everything below us."""
    uid = request.get("uid")
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    ctypes, libc = _libc()
    if request.get("private_userns"):
        # Same trick as bwrap --disable-userns: a user namespace of our own whose limit of nested
        # user namespaces is 0. Only possible after the uid switch (we map just our own uid).
        # The uid switch made us non-dumpable, which makes /proc/self/* root-owned: writable
        # by us again only while dumpable. Nothing untrusted runs yet; we end non-dumpable.
        libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)
        uid, gid = os.getuid(), os.getgid()  # read before unshare: unmapped ids read as 65534
        if libc.unshare(_CLONE_NEWUSER) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER) failed")
        for path, text in (
            ("/proc/self/setgroups", "deny"),
            ("/proc/self/uid_map", f"{uid} {uid} 1"),
            ("/proc/self/gid_map", f"{gid} {gid} 1"),
            ("/proc/sys/user/max_user_namespaces", "0"),
        ):
            with open(path, "w") as fh:
                fh.write(text)
    # Not dumpable: a process of the same uid cannot ptrace us or read /proc/<harness>/mem|environ|fd.
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def _watch_lifeline(fd):
    """End everything when the trainer goes away. bwrap's --die-with-parent cannot do it for us:
    its parent-death SIGKILL comes from a root process without CAP_KILL once we changed uid, and
    the kernel drops it. The trainer holds the other end of this pipe; EOF means it is gone."""
    import threading

    def wait_for_eof():
        while os.read(fd, 1):
            pass
        try:
            os.killpg(0, _SIGKILL)  # process mode: the worker and its group (we are pid 1 otherwise)
        finally:
            os._exit(5)  # bwrap mode: pid 1 exits, the kernel kills the whole pid namespace

    threading.Thread(target=wait_for_eof, daemon=True).start()


def _apply_rlimits(limits):
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu"], limits["cpu"] + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["fsize"], limits["fsize"]))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["nofile"], limits["nofile"]))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["nproc"], limits["nproc"]))
    resource.setrlimit(resource.RLIMIT_AS, (limits["as"], limits["as"]))


def _spawn_worker(request):
    to_w_r, to_w = os.pipe()
    from_w, from_w_w = os.pipe()
    argv = [sys.executable, "-I", "-S", "-B", "-c", request["worker_source"], str(to_w_r), str(from_w_w)]
    try:
        proc = subprocess.Popen(argv, pass_fds=(to_w_r, from_w_w), close_fds=True)
    except OSError as exc:
        raise HarnessError(f"could not start the worker interpreter: {exc}") from None
    os.close(to_w_r)
    os.close(from_w_w)
    return proc, to_w, from_w


def _receive(fd, state):
    try:
        return recv_frame(fd)  # noqa: F821 (from the prepended _codec source)
    except BaseException as exc:
        state.broken = f"the program stopped answering ({type(exc).__name__})"
        return None


def _end_worker(proc, state):
    """Stop the worker. Its exit status counts only if it ended on its own (state.broken)."""
    if state.broken:
        try:
            proc.wait(timeout=_WORKER_GRACE)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        proc.kill()
        proc.wait()
        return None
    return proc.returncode


class _Candidate:
    """Stands in for the entry point inside `check`: each call is a round trip to the worker."""

    def __init__(self, name, to_w, from_w, state):
        self._name, self._to, self._from, self._state = name, to_w, from_w, state
        self.__name__ = name

    def __call__(self, *args, **kwargs):
        state = self._state
        if state.broken:
            raise CandidateDied(state.broken)
        try:
            message = {"call": self._name, "args": encode_value(list(args)), "kwargs": encode_value(kwargs)}  # noqa: F821
        except (TypeError, ValueError) as exc:
            state.harness_error = f"the test passed an argument that cannot be sent: {exc}"
            raise HarnessError(state.harness_error) from None
        try:
            send_frame(self._to, message)  # noqa: F821
        except BaseException as exc:
            state.broken = f"the program stopped answering ({type(exc).__name__})"
            raise CandidateDied(state.broken) from None
        reply = _receive(self._from, state)
        if reply is None:
            raise CandidateDied(state.broken)
        return self._unpack(reply)

    def _unpack(self, reply):
        state = self._state
        if len(reply) == 1 and "ok" in reply:
            try:
                return decode_value(reply["ok"])  # noqa: F821
            except BaseException as exc:
                state.broken = f"the program sent back something that is not plain data ({type(exc).__name__})"
                raise CandidateDied(state.broken) from None
        kind, msg = reply.get("raise"), reply.get("msg", "")
        if type(kind) is str and type(msg) is str:
            kind, msg = kind[:100], msg[:300]
            state.error_type = kind
            state.memory = state.memory or kind == "MemoryError"
            raise CandidateRaised(f"{kind}: {msg}")
        state.broken = "the program broke the call protocol"
        raise CandidateDied(state.broken)


def _describe_failure(exc, test_source):
    """One line for people: the exception and, when it came from the test, the failing line."""
    import traceback

    where = ""
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename == "<test>":
            lines = test_source.splitlines()
            if 0 < lineno <= len(lines):
                where = f" at test line {lineno}: {lines[lineno - 1].strip()[:200]}"
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()
    return f"{text[-1][:300] if text else type(exc).__name__}{where}"


def _load_check(request):
    namespace = {"__name__": "__check__"}
    try:
        if request.get("prompt"):
            exec(compile(request["prompt"], "<prompt>", "exec"), namespace)
        exec(compile(request["test"], "<test>", "exec"), namespace)
        check = namespace["check"]
    except BaseException as exc:
        raise HarnessError(f"the test code failed to load: {exc!r}") from None
    if not callable(check):
        raise HarnessError("the test code defines no callable check(candidate)")
    return namespace, check


def _run_tests(request, loaded_check, to_w, from_w, state):
    namespace, check = loaded_check
    proxy = _Candidate(request["entry_point"], to_w, from_w, state)
    namespace[request["entry_point"]] = proxy  # some tests call the function by its own name
    try:
        check(proxy)
        error = None
    except BaseException as exc:
        error = exc
    if state.harness_error:
        raise HarnessError(state.harness_error)
    passed = error is None and not state.broken
    if passed:
        detail = "all tests passed"
    elif state.broken:
        detail = state.broken
    else:
        detail = _describe_failure(error, request["test"])
    return {"passed": passed, "detail": detail}


def _drain_messages(fd, state):
    """After the worker exited: read what it left in the pipe, without blocking."""
    os.set_blocking(fd, False)
    try:
        while True:
            message = recv_frame(fd)  # noqa: F821
            kind = message.get("exc")
            if type(kind) is str:
                state.error_type = kind[:100]
                state.memory = state.memory or kind == "MemoryError"
    except BaseException:
        pass


def _run(request, state, reporter):
    mode = request["mode"]
    loaded_check = _load_check(request) if mode == "tests" else None  # a broken test fails early
    proc, to_w, from_w = _spawn_worker(request)
    state.worker_started = True
    try:
        send_frame(to_w, {"mode": mode, "code": request["code"], "site": request["site_packages"]})  # noqa: F821
    except BaseException:
        pass  # the worker died before reading; the load report below notices
    load = _receive(from_w, state)
    loaded = load is not None and load.get("load") == "ok"
    if loaded:
        reporter.send("loaded")  # the trainer learns this even if the tests then time out
    verdict = {"loaded": loaded, "passed": False, "detail": ""}
    if not loaded:
        kind = load.get("type") if load is not None else None
        state.error_type = kind[:100] if type(kind) is str else None
        state.memory = state.error_type == "MemoryError"
        msg = load.get("msg") if load is not None else None
        verdict["detail"] = f"the code did not load: {state.error_type or state.broken}: {msg if type(msg) is str else ''}"[:400]
        state.broken = state.broken or "load failed"
    elif mode == "tests":
        verdict.update(_run_tests(request, loaded_check, to_w, from_w, state))
    else:
        proc.wait()
        _drain_messages(from_w, state)
        verdict["detail"] = "the program exited"
    returncode = _end_worker(proc, state) if mode == "tests" or not loaded else proc.returncode
    verdict.update(
        exit_code=returncode if returncode is not None and returncode >= 0 else None,
        signal=-returncode if returncode is not None and returncode < 0 else None,
        memory=state.memory,
        error_type=state.error_type,
    )
    return verdict


def main():
    request_fd, result_fd, lifeline_fd = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    request = _read_request(request_fd)
    reporter = _Reporter(result_fd, request["nonce"])
    try:
        _take_identity(request)  # first: unshare(CLONE_NEWUSER) needs a single-threaded process
        _watch_lifeline(lifeline_fd)
        _apply_rlimits(request["rlimits"])
    except BaseException as exc:
        import traceback

        step = traceback.extract_tb(exc.__traceback__)[-1]
        where = f" in {step.name}()"
        reporter.send("verdict", harness_error=f"could not set up the sandbox identity/limits: {exc!r}{where}")
        os._exit(3)
    reporter.send("hello")
    sys.set_int_max_str_digits(0)  # a test may str() a long integer; the time limit bounds the cost
    state = _State()
    try:
        verdict = _run(request, state, reporter)
    except HarnessError as exc:
        verdict = {"harness_error": str(exc)}
    except BaseException as exc:
        # Before the program ran this is our problem (SANDBOX_ERROR); after, it may be its doing,
        # and the program must never be able to turn a failure into "could not judge".
        detail = f"harness failure: {exc!r}"[:400]
        verdict = {"passed": False, "loaded": False, "detail": detail} if state.worker_started else {"harness_error": detail}
    reporter.send("verdict", **verdict)
    os._exit(0)


if __name__ == "__main__":
    main()
