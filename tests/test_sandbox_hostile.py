"""Hostile programs against the real sandbox (bubblewrap).

Each test asserts the status, a bounded wall time, that no process of the sandbox survives the
run (by pid namespace, by uid, and as a child of this process), and that the host is untouched.
Set GRPOKIT_SANDBOX_OPTIONAL=1 to skip (instead of fail) where bubblewrap cannot work.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

import psutil
import pytest

from tests.conftest import real_sandbox

from grpokit.sandbox import Limits, Result, Sandbox, Status, sandbox_problem

PROJECT = Path(__file__).resolve().parents[1]
LIMITS = Limits(timeout=2.0, memory_mb=256, max_processes=16, max_open_files=64, max_file_mb=16,
                tmpfs_mb=32, max_output_bytes=64 << 10)
SLACK = 3.0  # seconds on top of the timeout: sandbox start, kill, drain


@pytest.fixture(scope="module")
def box() -> Sandbox:
    return real_sandbox(LIMITS)


def _pid_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def assert_nothing_left(result: Result, children_before: set[int] = frozenset()) -> None:
    """No process of this run may exist any more, zombies included. Children this test process
    already had (reward worker pools of earlier tests in the same xdist worker) are not the run's."""
    assert result.pid_namespace, "the supervisor should have recorded the sandbox's pid namespace"
    assert result.pid_namespace != _pid_namespace(os.getpid())
    survivors = [p.pid for p in psutil.process_iter() if _pid_namespace(p.pid) == result.pid_namespace]
    assert survivors == [], f"processes left in the sandbox's pid namespace: {survivors}"
    if result.uid is not None and result.uid >= 2_000_000_000:  # root mode: a uid of its own
        owned = [p.pid for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == result.uid]
        assert owned == [], f"processes left with the sandbox uid {result.uid}: {owned}"
    new_children = [p.pid for p in psutil.Process().children(recursive=True) if p.pid not in children_before]
    assert new_children == [], f"the run left children of the test process: {new_children}"


def run(box: Sandbox, code: str, *, stdin: str = "", limits: Limits = LIMITS) -> tuple[Result, float]:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    start = time.monotonic()
    result = box.run_io(code, stdin, limits=limits)
    wall = time.monotonic() - start
    assert result.isolation == "bwrap"
    assert_nothing_left(result, before)
    return result, wall


def test_infinite_loop(box):
    result, wall = run(box, "while True:\n    pass\n")
    assert result.status is Status.TIMEOUT
    assert LIMITS.timeout <= result.elapsed < LIMITS.timeout + 1.0
    assert wall < LIMITS.timeout + SLACK


def test_sleep(box):
    result, wall = run(box, "import time\ntime.sleep(600)\n")
    assert result.status is Status.TIMEOUT
    assert wall < LIMITS.timeout + SLACK


def test_sigterm_ignored(box):
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.1)\n"
    result, wall = run(box, code)
    assert result.status is Status.TIMEOUT
    assert wall < LIMITS.timeout + SLACK


def test_huge_integer(box):
    result, wall = run(box, "x = 10 ** (10 ** 8)\nprint(x % 7)\n")
    assert result.status is Status.TIMEOUT
    assert wall < LIMITS.timeout + SLACK


def test_catastrophic_regex(box):
    result, wall = run(box, "import re\nprint(re.match(r'(a+)+$', 'a' * 64 + 'b'))\n")
    assert result.status is Status.TIMEOUT
    assert wall < LIMITS.timeout + SLACK


def test_cpu_limit_applies_per_process(box):
    limits = Limits(timeout=10.0, cpu_seconds=1, memory_mb=256)
    result, wall = run(box, "while True:\n    pass\n", limits=limits)
    assert result.status is Status.TIMEOUT and "CPU" in result.detail  # not the wall clock
    assert wall < limits.timeout


def test_fork_bomb(box):
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    result, wall = run(box, code)
    assert result.status is Status.TIMEOUT
    assert wall < LIMITS.timeout + SLACK


def test_fork_count_is_capped(box):
    code = (
        "import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
        "            time.sleep(600)\n            os._exit(0)\n        n += 1\n"
        "except OSError as exc:\n    print('forks', n, type(exc).__name__, flush=True)\ntime.sleep(600)\n"
    )
    result, wall = run(box, code)
    assert result.status is Status.TIMEOUT
    words = result.stdout.split()
    assert words[0] == "forks" and int(words[1]) < LIMITS.max_processes, result.stdout
    assert wall < LIMITS.timeout + SLACK


def test_setsid_daemon_does_not_survive(box, tmp_path):
    host_file = tmp_path / "written-by-daemon"
    code = (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        "        time.sleep(1.0)\n"
        f"        for path in ('/tmp/late', {str(host_file)!r}):\n"
        "            try:\n                open(path, 'w').write('late')\n            except OSError:\n                pass\n"
        "        time.sleep(600)\n    os._exit(0)\nprint('parent done')\n"
    )
    result, wall = run(box, code)  # run() proves the daemon is gone, so it can never write later
    assert result.status is Status.PASS and result.stdout == "parent done\n"
    assert wall < 1.0 + SLACK
    assert not host_file.exists()


def test_memory_bomb_one_process(box):
    result, wall = run(box, "blob = bytearray(8 * 1024 ** 3)\n")
    assert result.status is Status.MEMORY
    assert wall < SLACK


def test_memory_bomb_growing(box):
    result, wall = run(box, "chunks = []\nwhile True:\n    chunks.append(bytearray(10 ** 7))\n")
    assert result.status is Status.MEMORY
    assert wall < LIMITS.timeout + SLACK


def test_memory_bomb_many_processes(box):
    code = (
        "import os\npids = []\nfor _ in range(8):\n    pid = os.fork()\n    if pid == 0:\n        try:\n"
        "            blob = bytearray(1024 ** 3)\n            os._exit(0)\n        except MemoryError:\n            os._exit(3)\n"
        "    pids.append(pid)\nstarved = sum(os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) == 3 for p in pids)\n"
        "print('children out of memory:', starved, flush=True)\nblob = bytearray(1024 ** 3)\n"
    )
    result, wall = run(box, code)
    assert result.status is Status.MEMORY
    assert "children out of memory: 8" in result.stdout
    assert wall < LIMITS.timeout + SLACK


def test_endless_print(box):
    result, wall = run(box, "while True:\n    print('spam' * 100)\n")
    assert result.status is Status.OUTPUT_LIMIT
    assert len(result.stdout.encode()) <= LIMITS.max_output_bytes
    assert wall < LIMITS.timeout + SLACK


def test_endless_stderr(box):
    result, wall = run(box, "import sys\nwhile True:\n    sys.stderr.write('x' * 4096)\n")
    assert result.status is Status.OUTPUT_LIMIT
    assert len(result.stderr.encode()) <= LIMITS.max_output_bytes
    assert wall < LIMITS.timeout + SLACK


def test_huge_file_write(box):
    code = "with open('big.bin', 'wb') as fh:\n    for _ in range(200):\n        fh.write(b'x' * 2 ** 20)\n"
    result, wall = run(box, code)
    assert result.status is Status.FAIL and "File too large" in result.stderr
    assert wall < LIMITS.timeout + SLACK


def test_filling_the_tmpfs(box):
    code = "for i in range(100):\n    with open(f'part{i}', 'wb') as fh:\n        fh.write(b'x' * 8 * 2 ** 20)\n"
    result, wall = run(box, code)
    assert result.status is Status.FAIL and "No space left on device" in result.stderr
    assert wall < LIMITS.timeout + SLACK


def test_close_stdout_then_hang(box):
    result, wall = run(box, "import os, time\nos.close(1)\nos.close(2)\ntime.sleep(600)\n")
    assert result.status is Status.TIMEOUT
    assert wall < LIMITS.timeout + SLACK


WRITE_PROBE = (
    "import os\nfor path in {paths!r}:\n    try:\n        with open(os.path.expanduser(path), 'w') as fh:\n"
    "            fh.write('owned')\n        print('wrote', path)\n    except OSError as exc:\n"
    "        print('denied', path, type(exc).__name__)\n"
)


@pytest.mark.parametrize("where", ["home", "project", "tmp"])
def test_writes_do_not_reach_the_host(box, where):
    name = f"grpokit-hostile-{uuid.uuid4().hex}"
    targets = {
        "home": [f"~/{name}", f"{Path.home()}/{name}", f"/root/{name}"],
        "project": [f"{PROJECT}/{name}", f"{PROJECT}/grpokit/{name}", f"{PROJECT}/../shared/{name}"],
        "tmp": [f"/tmp/{name}", f"/var/tmp/{name}", f"/dev/shm/{name}"],
    }[where]
    result, wall = run(box, WRITE_PROBE.format(paths=targets))
    assert result.status is Status.PASS
    assert wall < SLACK
    for path in targets:
        host_path = Path(os.path.expanduser(path))
        assert not host_path.exists(), f"{path} reached the host"
    if where == "tmp":  # its own /tmp is writable; it is a private tmpfs, not the host's /tmp
        assert f"wrote /tmp/{name}" in result.stdout
    else:
        assert "wrote" not in result.stdout, result.stdout


def test_environment_is_empty(box, monkeypatch):
    secret = f"secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("GRPOKIT_TEST_SECRET", secret)
    code = "import os\nprint(sorted(os.environ))\nprint(open('/proc/self/environ', 'rb').read())\n"
    result, wall = run(box, code)
    assert result.status is Status.PASS
    assert secret not in result.stdout
    keys = eval(result.stdout.splitlines()[0])  # a list of names we printed ourselves
    assert set(keys) <= {"PATH", "PWD", "LC_CTYPE"}, keys  # PWD=/tmp from bwrap, LC_CTYPE from Python
    assert wall < SLACK


def test_parent_proc_is_invisible(box, monkeypatch):
    secret = f"secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("GRPOKIT_TEST_SECRET", secret)
    host_pid = os.getpid()
    code = (
        "import os\npids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\nprint('pids', pids)\n"
        f"for name in ('environ', 'cmdline', 'status'):\n    try:\n        print(open(f'/proc/{host_pid}/' + name, 'rb').read())\n"
        "    except OSError as exc:\n        print('hidden', name, type(exc).__name__)\n"
        "for pid in pids:\n    try:\n        print(pid, open(f'/proc/{pid}/environ', 'rb').read())\n    except OSError as exc:\n"
        "        print(pid, 'environ', type(exc).__name__)\n"
    )
    result, wall = run(box, code)
    assert result.status is Status.PASS
    assert secret not in result.stdout
    pids = eval(result.stdout.splitlines()[0][len("pids "):])
    assert len(pids) <= 4 and max(pids) < 10, pids  # bwrap's init, the harness, the worker
    assert result.stdout.count("hidden") == 3
    assert wall < SLACK


def test_network_loopback_is_cut(box):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'hi')\n"
        result, wall = run(box, code)
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert result.status is Status.FAIL and "ConnectionRefusedError" in result.stderr
    assert wall < SLACK


def test_network_outside_is_cut(box):
    code = "import socket\nsocket.create_connection(('192.0.2.1', 80), timeout=1)\n"  # TEST-NET-1
    result, wall = run(box, code)
    assert result.status is Status.FAIL and "Network is unreachable" in result.stderr
    assert wall < SLACK


def test_kill_the_parent(box):
    # The harness is pid 1 of the sandbox's pid namespace: signals from inside cannot kill it.
    result, wall = run(box, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint('harness still there')\n")
    assert result.status is Status.PASS and result.stdout == "harness still there\n"
    assert wall < SLACK


def test_kill_the_process_group(box):
    result, wall = run(box, "import os, signal\nos.killpg(0, signal.SIGKILL)\n")
    assert result.status is Status.CRASH and result.signal == 9  # only the program itself died
    assert wall < SLACK


def test_kill_everything_it_can(box):
    host_pid = os.getpid()
    code = (
        f"import os, signal\nfor target in ({host_pid}, 1, -1):\n    try:\n        os.kill(target, signal.SIGKILL)\n"
        "    except OSError as exc:\n        print('unreachable', target, type(exc).__name__, flush=True)\n"
        "print('done')\n"
    )
    result, wall = run(box, code)
    assert result.status is Status.PASS
    assert f"unreachable {host_pid} ProcessLookupError" in result.stdout and "done" in result.stdout
    assert wall < SLACK


def test_segfault(box):
    result, wall = run(box, "import ctypes\nctypes.string_at(0)\n")
    assert result.status is Status.CRASH and result.signal == 11
    assert wall < SLACK


def test_deep_recursion(box):
    result, wall = run(box, "def f(n):\n    return f(n + 1)\nf(0)\n")
    assert result.status is Status.FAIL and "RecursionError" in result.stderr
    assert wall < SLACK


def test_deep_recursion_past_the_c_stack(box):
    # Python-to-Python calls do not use the C stack in 3.11; nested reprs do.
    code = "import sys\nsys.setrecursionlimit(10 ** 8)\nx = []\nfor _ in range(10 ** 5):\n    x = [x]\nprint(repr(x))\n"
    limits = Limits(timeout=8.0, memory_mb=256)  # reaching the segfault takes ~1.7 s on an idle core
    result, wall = run(box, code, limits=limits)
    assert result.status is Status.CRASH and result.signal == 11
    assert wall < limits.timeout + SLACK


def test_100k_open_files(box):
    code = "handles = []\nfor _ in range(100_000):\n    handles.append(open('/dev/null'))\n"
    result, wall = run(box, code)
    assert result.status is Status.FAIL and "Too many open files" in result.stderr
    assert wall < SLACK


def test_lingering_thread_keeps_a_script_from_finishing(box):
    code = "import threading\nprint('answer', flush=True)\ndef spin():\n    while True:\n        pass\nthreading.Thread(target=spin).start()\n"
    result, wall = run(box, code)
    assert result.status is Status.TIMEOUT and result.stdout == "answer\n"
    assert wall < LIMITS.timeout + SLACK


def test_lingering_thread_after_tests_is_killed(box):
    code = (
        "import threading, time\ndef add(a, b):\n"
        "    threading.Thread(target=time.sleep, args=(600,)).start()\n    return a + b\n"
    )
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    start = time.monotonic()
    result = box.run_tests(code, test="def check(candidate):\n    assert candidate(2, 3) == 5\n", entry_point="add")
    assert result.status is Status.PASS
    assert time.monotonic() - start < SLACK
    assert_nothing_left(result, before)


def test_no_nested_user_namespaces(box):
    code = (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.unshare(0x10000000), ctypes.get_errno())\n"  # CLONE_NEWUSER
    )
    result, wall = run(box, code)
    assert result.status is Status.PASS
    rc, errno = map(int, result.stdout.split())
    assert rc == -1 and errno != 0
    assert wall < SLACK


def test_trainer_files_and_packages_are_invisible(box):
    code = (
        "import sys\nprint(any('.venv' in p or 'site-packages' in p for p in sys.path))\n"
        f"for path in ({str(PROJECT / 'pyproject.toml')!r}, '/etc/shadow', '/etc/passwd'):\n"
        "    try:\n        open(path).read()\n        print('read', path)\n"
        "    except OSError as exc:\n        print('missing', type(exc).__name__)\n"
        "try:\n    import torch\nexcept ImportError:\n    print('no torch')\n"
    )
    result, wall = run(box, code)
    assert result.status is Status.PASS
    assert result.stdout.splitlines()[0] == "False"
    assert "read" not in result.stdout and "no torch" in result.stdout
    assert wall < SLACK


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


TRAINER = """
import sys
sys.path.insert(0, {root!r})
from grpokit.sandbox import Limits, Sandbox
box = Sandbox(Limits(timeout=60), isolation={isolation!r}, allow_unsafe=True)
box.run_io("import time\\ntime.sleep(600)\\n")
"""


@pytest.mark.parametrize("isolation", ["bwrap", "process"])
def test_sandbox_dies_with_the_trainer(box, isolation, tmp_path):
    """SIGKILL the trainer mid-run: nothing it started may keep running (lifeline pipe)."""
    import subprocess
    import sys

    env = {**os.environ, "TMPDIR": str(tmp_path)}  # a killed trainer cannot remove its temp dir
    trainer = subprocess.Popen([sys.executable, "-c", TRAINER.format(root=str(PROJECT), isolation=isolation)], env=env)
    try:
        deadline = time.monotonic() + 20
        family: list[psutil.Process] = []
        expected = 3 if isolation == "bwrap" else 2  # (bwrap,) harness, worker
        while len(family) < expected and time.monotonic() < deadline:
            family = psutil.Process(trainer.pid).children(recursive=True)
            time.sleep(0.05)
        assert len(family) == expected, "the sandbox did not start"
    finally:
        trainer.kill()
        trainer.wait()
    gone_by = time.monotonic() + 3.0
    alive = family
    while alive and time.monotonic() < gone_by:
        alive = [p for p in family if _running(p)]
        time.sleep(0.05)
    assert alive == [], f"still running after the trainer died: {[p.pid for p in alive]}"
