"""The sandbox's contract: statuses, limits, the plain-data codec, and refusing to degrade silently."""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import real_sandbox

from grpokit.sandbox import Limits, Sandbox, SandboxUnavailable, Status, same_output, sandbox_problem
from grpokit.sandbox import _codec as codec
from grpokit.sandbox import runner

FAST = Limits(timeout=3.0, memory_mb=256)
ADD_TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"


@pytest.fixture(scope="module")
def box() -> Sandbox:
    return real_sandbox(FAST)


# --- the codec: only plain data crosses from the program to the harness ------------------------

ROUND_TRIP = [
    None, True, False, 0, -7, 2**53, -(2**200), 1.5, -0.0, math.inf, "", "héllo\x00\ud800",
    [1, [2, [3]]], (1, "a", None), {"k": [1, 2], 3: (4,)}, {1, 2}, frozenset({"a"}), b"\x00\xff",
    bytearray(b"ab"), complex(1, -2), range(2, 10, 3), [], (), {},
]


@pytest.mark.parametrize("value", ROUND_TRIP, ids=repr)
def test_codec_round_trips_plain_values_exactly(value):
    back = codec.decode_value(json.loads(json.dumps(codec.encode_value(value))))
    assert type(back) is type(value) and back == value
    if isinstance(value, float):
        assert math.copysign(1, back) == math.copysign(1, value)


def test_codec_nan_survives():
    assert math.isnan(codec.decode_value(codec.encode_value(float("nan"))))


def test_codec_turns_lying_subclasses_into_plain_values():
    class AlwaysEqual(str):
        def __eq__(self, other):
            return True

        __hash__ = str.__hash__

    back = codec.decode_value(codec.encode_value(AlwaysEqual("x")))
    assert type(back) is str and back == "x" and back != "y"


@pytest.mark.parametrize("value", [object(), lambda: 1, {1: object()}, [iter([])]], ids=["object", "lambda", "nested", "iterator"])
def test_codec_refuses_non_plain_values(value):
    with pytest.raises(TypeError):
        codec.encode_value(value)


@pytest.mark.parametrize("node", [{"obj": 1}, {"t": 1}, 1.5, {"d": [[1]]}, {"i": 5}, {"x": "1", "t": []}, 2**60])
def test_codec_rejects_malformed_input(node):
    with pytest.raises((codec.ProtocolError, TypeError, ValueError)):
        codec.decode_value(node)


def test_codec_rejects_deep_nesting():
    node = []
    for _ in range(codec.MAX_DEPTH + 5):
        node = [node]
    with pytest.raises(codec.ProtocolError):
        codec.decode_value(node)


def test_frames_round_trip_and_cap():
    r, w = os.pipe()
    try:
        codec.send_frame(w, {"a": [1, 2]})
        assert codec.recv_frame(r) == {"a": [1, 2]}
        codec.send_frame(w, {"a": "x" * 100})
        with pytest.raises(codec.ProtocolError):
            codec.recv_frame(r, max_bytes=50)
    finally:
        os.close(r)
        os.close(w)


# --- statuses ------------------------------------------------------------------------------------


def test_io_pass_compares_output_in_the_parent(box):
    result = box.run_io("a, b = map(int, input().split())\nprint(a + b)\n", "2 40\n", expected_stdout="42\n")
    assert result.status is Status.PASS and result.loaded and result.exit_code == 0
    wrong = box.run_io("print(41)\n", "", expected_stdout="42\n")
    assert wrong.status is Status.FAIL and wrong.loaded and "differs" in wrong.detail


def test_output_comparison_is_token_by_token():
    assert same_output("1 2  \n3\n\n\n", "1 2\n3")
    assert same_output("a\r\nb\r\n", "a\nb\n")
    assert same_output("1  2\n", "1 2\n") and same_output("1\n\n2\n", "1 2")
    assert not same_output("1 2\n", "1 2 3\n") and not same_output("12\n", "1 2\n")


def test_io_without_expected_output_passes_on_exit_zero(box):
    assert box.run_io("print('hi')\n").status is Status.PASS
    failed = box.run_io("import sys\nsys.exit(3)\n")
    assert failed.status is Status.FAIL and failed.exit_code == 3 and failed.loaded


def test_large_stdin_goes_through(box):
    data = "x" * (3 << 20)
    result = box.run_io("import sys\nprint(len(sys.stdin.read()))\n", data, expected_stdout=f"{len(data)}\n")
    assert result.status is Status.PASS


def test_syntax_error_does_not_load(box):
    result = box.run_io("def broken(:\n", "")
    assert result.status is Status.FAIL and not result.loaded
    tests = box.run_tests("def add(a, b) return a + b\n", test=ADD_TEST, entry_point="add")
    assert tests.status is Status.FAIL and not tests.loaded and "SyntaxError" in tests.detail


def test_tests_pass_and_fail(box):
    ok = box.run_tests("def add(a, b):\n    print('debug line')\n    return a + b\n", test=ADD_TEST, entry_point="add")
    assert ok.status is Status.PASS and ok.loaded and "debug line" in ok.stdout
    bad = box.run_tests("def add(a, b):\n    return a - b\n", test=ADD_TEST, entry_point="add")
    assert bad.status is Status.FAIL and bad.loaded and "assert candidate(2, 3) == 5" in bad.detail


def test_exception_at_load_time_is_not_loaded(box):
    result = box.run_tests("raise ValueError('nope')\n", test=ADD_TEST, entry_point="add")
    assert result.status is Status.FAIL and not result.loaded and "ValueError" in result.detail


def test_missing_entry_point_fails(box):
    result = box.run_tests("def plus(a, b):\n    return a + b\n", test=ADD_TEST, entry_point="add")
    assert result.status is Status.FAIL and result.loaded and "NameError" in result.detail


def test_returned_iterators_behave_like_iterators(box):
    test = "def check(candidate):\n    assert tuple(candidate(3)) == (0, 1, 2)\n    assert candidate(3) != [0, 1, 2]\n"
    result = box.run_tests("def upto(n):\n    return (i for i in range(n))\n", test=test, entry_point="upto")
    assert result.status is Status.PASS, result.detail


def test_exceptions_raised_by_the_candidate_reach_the_test(box):
    test = "def check(candidate):\n    try:\n        candidate(0)\n    except Exception as exc:\n        assert 'ZeroDivisionError' in str(exc)\n    else:\n        assert False\n"
    result = box.run_tests("def inv(x):\n    return 1 / x\n", test=test, entry_point="inv")
    assert result.status is Status.PASS, result.detail


def test_broken_test_code_is_a_sandbox_error_not_a_failure(box):
    broken = box.run_tests("def add(a, b):\n    return a + b\n", test="def check(candidate)\n", entry_point="add")
    assert broken.status is Status.SANDBOX_ERROR and "test code" in broken.detail
    no_check = box.run_tests("def add(a, b):\n    return a + b\n", test="x = 1\n", entry_point="add")
    assert no_check.status is Status.SANDBOX_ERROR


def test_timeout_is_counted_from_sandbox_start(box):
    start = time.monotonic()
    result = box.run_tests("def add(a, b):\n    while True:\n        pass\n", test=ADD_TEST, entry_point="add",
                           limits=Limits(timeout=1.0))
    assert result.status is Status.TIMEOUT and result.loaded
    assert 1.0 <= result.elapsed < 1.5
    assert time.monotonic() - start < 4.0


def test_memory_error_in_a_call_is_memory(box):
    result = box.run_tests("def add(a, b):\n    return len(bytearray(2 ** 40))\n", test=ADD_TEST, entry_point="add")
    assert result.status is Status.MEMORY


def test_limits_validate():
    with pytest.raises(ValueError, match="timeout"):
        Limits(timeout=0)
    with pytest.raises(ValueError, match="memory_mb"):
        Limits(memory_mb=0)
    assert Limits(timeout=2.5).cpu == 4 and Limits(cpu_seconds=9).cpu == 9


def test_parallel_runs_stay_separate(box):
    # Four runs at once, each writing a file into its /tmp while the others do the same: each
    # must see only its own file (private tmpfs per run) and print its own answer.
    code = "import os, time\nopen('/tmp/mark-{i}', 'w').close()\ntime.sleep(0.5)\nprint(sorted(os.listdir('/tmp')), {i} * {i})\n"

    def one(i):
        return box.run_io(code.format(i=i), expected_stdout=f"['mark-{i}'] {i * i}\n")

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(8)))
    assert [r.status for r in results] == [Status.PASS] * 8, [r.stdout for r in results]


# --- refusing to degrade silently -----------------------------------------------------------------


def test_missing_bwrap_is_refused_with_a_clear_message(tmp_path):
    sandbox = Sandbox(bwrap=str(tmp_path / "no-such-bwrap"))
    with pytest.raises(SandboxUnavailable) as info:
        sandbox.run_io("print(1)\n")
    message = str(info.value)
    assert "no bwrap executable" in message and "bubblewrap" in message and "allow_unsafe=True" in message


def test_bwrap_that_cannot_create_namespaces_is_refused(tmp_path):
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(SandboxUnavailable, match="No permissions to create new namespace"):
        Sandbox(bwrap=str(fake)).run_tests("def f():\n    return 1\n", test="def check(c):\n    assert c() == 1\n", entry_point="f")


def test_availability_is_checked_once_per_bwrap(tmp_path, monkeypatch):
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    calls = []
    real_probe = runner._probe
    monkeypatch.setattr(runner, "_probe", lambda path: calls.append(path) or real_probe(path))
    for _ in range(3):
        assert sandbox_problem(str(fake)) is not None
    assert len(calls) == 1


def test_weak_mode_needs_explicit_consent():
    with pytest.raises(ValueError, match="allow_unsafe"):
        Sandbox(isolation="process")


def test_weak_mode_warns_on_every_run(tmp_path, caplog):
    sandbox = Sandbox(FAST, allow_unsafe=True, bwrap=str(tmp_path / "no-such-bwrap"))
    with caplog.at_level(logging.WARNING, logger="grpokit.sandbox"):
        first = sandbox.run_io("print(6 * 7)\n", expected_stdout="42\n")
        second = sandbox.run_tests("def add(a, b):\n    return a + b\n", test=ADD_TEST, entry_point="add")
    assert first.status is Status.PASS and second.status is Status.PASS
    assert first.isolation == second.isolation == "process"
    warnings = [r for r in caplog.records if "WITHOUT bubblewrap" in r.getMessage()]
    assert len(warnings) == 2 and "no bwrap executable" in warnings[0].getMessage()


def test_weak_mode_still_enforces_deadline_and_limits(caplog):
    sandbox = Sandbox(Limits(timeout=1.0, memory_mb=256), isolation="process", allow_unsafe=True)
    start = time.monotonic()
    assert sandbox.run_io("while True:\n    pass\n").status is Status.TIMEOUT
    assert sandbox.run_io("x = bytearray(2 ** 34)\n").status is Status.MEMORY
    assert time.monotonic() - start < 6.0
    env = sandbox.run_io("import os\nprint(sorted(os.environ))\n")
    assert eval(env.stdout) == ["LC_CTYPE", "PATH"] or eval(env.stdout) == ["PATH"]


def test_harness_runs_untrusted_code_in_a_separate_process(box):
    # The program's process is not the harness: its parent is pid 1 (the harness) and the
    # harness cannot be inspected (not dumpable).
    code = (
        "import os\nprint(os.getpid() != 1, os.getppid())\n"
        "for name in ('mem', 'environ'):\n    try:\n        open(f'/proc/1/{name}', 'rb').read(1)\n        print('read', name)\n"
        "    except OSError as exc:\n        print('denied', name, type(exc).__name__)\n"
    )
    result = box.run_io(code)
    assert result.status is Status.PASS
    assert result.stdout.splitlines()[0] == "True 1"
    assert "read" not in result.stdout and result.stdout.count("denied") == 2


def test_thread_safety_of_the_probe():
    results = []
    threads = [threading.Thread(target=lambda: results.append(sandbox_problem())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
