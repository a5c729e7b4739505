"""How many trivial programs per second does the sandbox run?

    .venv/bin/python benchmarks/bench_sandbox.py [--n 200] [--workers 2] [--out results.json]

Rows (each: N runs through a thread pool of --workers, after one warm-up run):
* bare python: `python -I -S -c <program>` as a plain subprocess, no sandbox at all (the floor);
* io, bwrap: a trivial script (`print(sum(range(10)))`) with its output compared, full sandbox;
* tests, bwrap: a trivial HumanEval-style function and a 2-assert check(), full sandbox
  (two interpreters per run: the trusted harness and the program's worker);
* io / tests, process: the same without bubblewrap (the weaker, opt-in mode), to show what the
  namespaces cost.
Latency percentiles are per run, measured around each call (sandbox start, run, kill, cleanup).
"cpu ms/run" is the CPU time of this process and of all reaped descendants (bwrap, harness,
worker) per program: it does not depend on what else the machine is doing, and
`cpus / cpu_s_per_run` bounds what an otherwise idle machine could do.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grpokit.sandbox import Limits, Sandbox, Status, sandbox_problem  # noqa: E402
from grpokit.sandbox.bwrap import base_interpreter, find_bwrap  # noqa: E402

IO_PROGRAM = "print(sum(range(10)))\n"
FUNCTION = "def add(a, b):\n    return a + b\n"
CHECK = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n"


def _timed(fn):
    start = time.perf_counter()
    ok = fn()
    return ok, time.perf_counter() - start


def _bare_python():
    python = base_interpreter()

    def once():
        out = subprocess.run([python, "-I", "-S", "-c", IO_PROGRAM], capture_output=True, text=True)
        return out.stdout == "45\n"

    return once


def _sandboxed(mode: str, isolation: str):
    box = Sandbox(Limits(timeout=10.0), isolation=isolation, allow_unsafe=isolation == "process")

    def once():
        if mode == "io":
            result = box.run_io(IO_PROGRAM, expected_stdout="45\n")
        else:
            result = box.run_tests(FUNCTION, test=CHECK, entry_point="add")
        return result.status is Status.PASS

    return once


def _cpu_seconds() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def measure(name: str, once, n: int, workers: int) -> dict:
    once()  # warm-up: availability probe, page cache
    cpu_before = _cpu_seconds()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(lambda _: _timed(once), range(n)))
    wall = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu_before
    latencies = sorted(seconds * 1000 for _, seconds in outcomes)
    failures = sum(1 for ok, _ in outcomes if not ok)
    return {
        "row": name, "programs": n, "workers": workers, "wall_s": round(wall, 3),
        "programs_per_s": round(n / wall, 1), "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 1), "failures": failures,
        "cpu_ms_per_run": round(cpu / n * 1000, 1),
    }


def _print_table(rows: list[dict]) -> None:
    header = (f"{'row':<18} {'programs':>8} {'workers':>7} {'wall s':>7} {'progs/s':>8} {'p50 ms':>7} "
              f"{'p95 ms':>7} {'cpu ms/run':>10} {'fail':>5}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['row']:<18} {r['programs']:>8} {r['workers']:>7} {r['wall_s']:>7.2f} {r['programs_per_s']:>8.1f} "
              f"{r['p50_ms']:>7.1f} {r['p95_ms']:>7.1f} {r['cpu_ms_per_run']:>10.1f} {r['failures']:>5}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200, help="programs per row")
    parser.add_argument("--workers", type=int, default=2, help="sandboxes running at once")
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "grpokit_bench_sandbox.json"))
    parser.add_argument("--skip-process", action="store_true", help="leave out the rows without bubblewrap")
    args = parser.parse_args()

    problem = sandbox_problem()
    if problem is not None:
        sys.exit(f"bubblewrap sandbox unavailable: {problem}")
    plan = [("bare python", _bare_python()), ("io, bwrap", _sandboxed("io", "bwrap")),
            ("tests, bwrap", _sandboxed("tests", "bwrap"))]
    if not args.skip_process:
        plan += [("io, process", _sandboxed("io", "process")), ("tests, process", _sandboxed("tests", "process"))]
    import logging

    logging.getLogger("grpokit.sandbox").setLevel(logging.ERROR)  # the process rows warn on every run
    rows = [measure(name, once, args.n, args.workers) for name, once in plan]
    _print_table(rows)
    bwrap_version = subprocess.run([find_bwrap(), "--version"], capture_output=True, text=True).stdout.strip()
    report = {
        "benchmark": "sandbox throughput", "rows": rows, "cpus": os.cpu_count(), "euid": os.geteuid(),
        "load_average_after": os.getloadavg(),
        "python": platform.python_version(), "bwrap": bwrap_version, "platform": platform.platform(),
    }
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
