"""GRPO step speed: grpokit against TRL's GRPOTrainer and the textbook loop, on one machine.

    .venv/bin/python benchmarks/bench_grpo.py [--quick] [--out bench_grpo.json]
        [--workloads tiny reasoning] [--systems grpokit trl textbook] [--no-ablations]
        [--wait-quiet 600]

Every system runs the same GRPO workload (benchmarks/workloads.py) in a process of its own
(benchmarks/worker.py), started one after another before anything is measured; then the
driver alternates them, A B C A B C, a few steps at a time, so a change in machine load hits
all of them alike. Reported per system: seconds per step (median, min, max over the measured
steps, after warm-up steps), completions/s, generated tokens/s, the generation and update
phases, peak RSS of its process, and the fraction of the machine's fp32 matmul rate that each
phase reaches on the FLOPs it needs (benchmarks/flops.py). Then each grpokit optimisation is
switched off in turn (grpokit_runner.VARIANTS) and timed against grpokit at its defaults,
alternating the two. Before each round the driver waits (--settle) for other processes to
leave the cores idle; "others" is the most cores they kept busy during a system's measured
steps (/proc/stat minus the benchmark's own processes): numbers taken above ~0.2 are disturbed.

TRL is a benchmark-only dependency (pip install trl, or the `bench` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_report import ablation_summary, machine, ratios, summarize, tables  # noqa: E402
from benchmarks.grpokit_runner import VARIANTS  # noqa: E402

SYSTEMS = ("grpokit", "trl", "textbook")


@dataclass(frozen=True)
class Plan:
    warmup: dict  # system -> warm-up steps (not measured)
    rounds: int  # A B C rounds
    per_round: int  # steps per system per round
    ablation_rounds: int
    ablation_per_round: int
    variants: tuple[str, ...]
    # pick each system's faster thread count, 1 or one per core, on 2 x 2 x per_round extra steps;
    # off where steps are long and every system is known to gain from all cores
    calibrate_threads: bool = False


ALL_VARIANTS = tuple(v for v in VARIANTS if v != "default") + ("threads",)
PLANS = {  # full: <= 15 min on 2 cores, quick: <= 3 min (TRL's and the textbook's reasoning steps dominate)
    "full": {
        "tiny": Plan({"grpokit": 3, "trl": 3, "textbook": 1}, 5, 3, 2, 4, ALL_VARIANTS, calibrate_threads=True),
        # no padding in this workload (fixed prompt and completion lengths): no_trim has nothing to trim
        # grpokit's warm-up lets the allocator's heap grow to a 24-row update's peak (host_memory.py)
        "reasoning": Plan({"grpokit": 3, "trl": 1, "textbook": 0}, 5, 2, 3, 1,
                          tuple(v for v in ALL_VARIANTS if v != "no_trim")),
    },
    "quick": {
        # no thread calibration (its trial steps would take half the budget): one thread per core
        "tiny": Plan({"grpokit": 2, "trl": 2, "textbook": 1}, 2, 3, 0, 0, ()),
        "reasoning": Plan({"grpokit": 1, "trl": 0, "textbook": 0}, 1, 1, 0, 0, ()),
    },
}
CORES = len(os.sched_getaffinity(0))


# ----------------------------------------------------------------------------- processes


class Worker:
    """One system (and variant) in its own process, answering "run N steps" over a pipe."""

    threads = 0  # intra-op threads for every worker (0: torch's default, one per core)

    def __init__(self, system: str, workload: str, variant: str, log_dir: Path):
        self.name = f"{workload}-{system}-{variant}"
        self.log = log_dir / f"{self.name}.log"
        env = dict(os.environ, **({"OMP_NUM_THREADS": str(self.threads)} if self.threads else {}))
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / "worker.py"), system, workload, variant],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log.open("w"), text=True, cwd=ROOT, env=env)
        self.info = self._recv()
        self.steps_run = 0  # steps taken so far: the prompt position, in steps

    def _recv(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            tail = self.log.read_text()[-3000:]
            raise RuntimeError(f"worker {self.name} stopped; its log ({self.log}) ends with:\n{tail}")
        return json.loads(line)

    def set_threads(self, n: int) -> int:
        self.proc.stdin.write(f"threads {n}\n")
        self.proc.stdin.flush()
        self.info["threads"] = self._recv()["threads"]
        return self.info["threads"]

    def run(self, steps: int) -> list[dict]:
        if steps <= 0:
            return []
        self.proc.stdin.write(f"{steps}\n")
        self.proc.stdin.flush()
        self.steps_run += steps
        return self._recv()["records"]

    def seek(self, step: int) -> None:
        """Make the next step sample for the prompts of step `step` (not for TRL's worker)."""
        self.proc.stdin.write(f"seek {step}\n")
        self.proc.stdin.flush()
        self._recv()
        self.steps_run = step

    def quit(self) -> dict:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.info.update(self._recv())
        self.proc.wait(timeout=120)
        return self.info

    def cpu_seconds(self) -> float:
        return _proc_cpu(self.proc.pid)


def _proc_cpu(pid: int) -> float:
    """utime + stime of a process (and its reaped children), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


class OthersMeter:
    """Cores kept busy by processes other than ours, averaged over an interval (/proc/stat)."""

    def __init__(self, workers: list[Worker]):
        self.workers = workers
        self.t0, self.busy0, self.ours0 = time.perf_counter(), self._busy(), self._ours()

    @staticmethod
    def _busy() -> float:
        """CPU seconds spent busy by everything (user, nice, system, irq, softirq; not steal)."""
        vals = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return (vals[0] + vals[1] + vals[2] + vals[5] + vals[6]) / os.sysconf("SC_CLK_TCK")

    def _ours(self) -> float:
        return _proc_cpu(os.getpid()) + sum(w.cpu_seconds() for w in self.workers)

    def cores(self) -> float:
        dt = time.perf_counter() - self.t0
        return max(0.0, (self._busy() - self.busy0) - (self._ours() - self.ours0)) / max(dt, 1e-9)


def matmul_gflops() -> float:
    """The machine's fp32 matmul rate, measured now in a fresh process on every core."""
    code = "import sys; sys.path.insert(0, sys.argv[1]); from benchmarks.flops import matmul_rate; print(matmul_rate())"
    out = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1]) / 1e9


def wait_quiet(limit_s: float, threshold: float = 1.5) -> float:
    """Wait (up to limit_s) until the 1-minute load average is below threshold; return it."""
    end = time.time() + limit_s
    while os.getloadavg()[0] >= threshold and time.time() < end:
        time.sleep(10)
    return os.getloadavg()[0]


def settle(limit_s: float, threshold: float = 0.25, window_s: float = 0.5) -> float:
    """Before a round, while our workers sit idle: wait (up to limit_s) for a window in which
    other processes keep fewer than `threshold` cores busy. Returns the last window's figure."""
    end = time.perf_counter() + limit_s
    while True:
        meter = OthersMeter([])
        time.sleep(window_s)
        cores = meter.cores()
        if cores < threshold or time.perf_counter() >= end:
            return cores
        window_s = 2.0  # busy: look again over a longer window


# ----------------------------------------------------------------------------- measuring


def measure_systems(workload: str, plan: Plan, systems, log_dir: Path, log, settle_s: float
                    ) -> tuple[dict, Worker | None]:
    """The A B C rounds. Returns per-system results and grpokit's worker, kept for ablations."""
    workers = {}
    for s in systems:  # one at a time, so no start-up overlaps a measurement
        workers[s] = Worker(s, workload, "default", log_dir)
        log(f"  {workload}/{s}: ready in {workers[s].info['setup_s']:.1f} s")
    for s in systems:
        workers[s].run(plan.warmup[s])
    if plan.calibrate_threads and not Worker.threads and CORES > 1:
        for s in systems:
            calibrate_threads(workers[s], plan.per_round, settle_s, log)
    # measured step k of every system samples for the same prompts (so the same share of
    # all-equal groups, the same number of update rows): TRL cannot rewind, the others follow it
    align = workers["trl"].steps_run if "trl" in workers else max(w.steps_run for w in workers.values())
    for s in systems:
        if s != "trl":
            workers[s].seek(align)
    records = {s: [] for s in systems}
    others = {s: [] for s in systems}
    for r in range(plan.rounds):
        settle(settle_s)
        for s in systems:
            meter = OthersMeter(list(workers.values()))
            got = [{**x, "round": r} for x in workers[s].run(plan.per_round)]
            records[s] += got
            others[s] += [meter.cores()] * len(got)
        log(f"  {workload} round {r + 1}/{plan.rounds}: " + ", ".join(
            f"{s} {statistics.median(x['step_s'] for x in records[s][-plan.per_round:]):.3f} s "
            f"(others {others[s][-1]:.2f})" for s in systems))
    results = {}
    for s in systems:
        info = workers[s].info if s == "grpokit" else workers[s].quit()
        for rec, o in zip(records[s], others[s]):
            rec["others_cores"] = o
        results[s] = {"records": records[s], "info": info}
    return results, workers.get("grpokit")


def calibrate_threads(worker: Worker, steps: int, settle_s: float, log) -> int:
    """Give a worker the faster of 1 thread and one per core, on alternating trial steps."""
    trial = {1: [], CORES: []}
    for _ in range(2):
        settle(settle_s)
        for n in trial:
            worker.set_threads(n)
            trial[n] += [r["step_s"] for r in worker.run(steps)]
    best = min(trial, key=lambda n: statistics.median(trial[n]))
    worker.info["thread_trial"] = {str(n): statistics.median(v) for n, v in trial.items()}
    log(f"  {worker.name}: {best} thread(s) " + ", ".join(f"{n}: {statistics.median(v):.3f} s" for n, v in trial.items()))
    return worker.set_threads(best)


def measure_ablations(workload: str, variants, rounds: int, per_round: int, warmup: int, base: Worker,
                      log_dir: Path, log, settle_s: float) -> list[dict]:
    """Each variant against grpokit at its defaults, alternating the two."""
    out = []
    for variant in variants:
        other = Worker("grpokit", workload, "default" if variant == "threads" else variant, log_dir)
        if variant == "threads":  # the thread count grpokit's run did not use
            other.set_threads(1 if base.info["threads"] > 1 else CORES)
        else:
            other.set_threads(base.info["threads"])
        other.run(warmup)
        other.seek(base.steps_run)  # both sides sample for the same prompts, step by step
        on, off, others = [], [], []
        for _ in range(rounds):
            settle(settle_s)
            meter = OthersMeter([base, other])
            on += base.run(per_round)
            off += other.run(per_round)
            others.append(meter.cores())
        info = other.quit()
        what = (f"{other.info['threads']} intra-op thread(s) instead of {base.info['threads']}" if variant == "threads"
                else VARIANTS[variant][2])
        row = {"variant": variant, "off": what, "records_on": on, "records_off": off,
               "peak_rss_mb_off": info["peak_rss_mb"], "others_cores": max(others)}
        row.update(ablation_summary(on, off))
        log(f"  {workload} without {variant}: {row['step_s_off']:.3f} s vs {row['step_s_on']:.3f} s "
            f"-> x{row['gain']:.2f}  (others {row['others_cores']:.2f} cores)")
        out.append(row)
    return out


# ----------------------------------------------------------------------------- main


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few steps, no ablations (<= 3 min on 2 cores)")
    ap.add_argument("--workloads", nargs="+", default=["tiny", "reasoning"], choices=["tiny", "reasoning"])
    ap.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    ap.add_argument("--no-ablations", action="store_true")
    ap.add_argument("--variants", nargs="+", choices=ALL_VARIANTS, help="ablations to run (default: the plan's)")
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="S",
                    help="first wait up to S seconds for the 1-minute load average to fall below 1.5")
    ap.add_argument("--settle", type=float, default=20, metavar="S",
                    help="before each round wait up to S seconds for other processes to leave the cores idle")
    ap.add_argument("--threads", type=int, default=0,
                    help="OMP_NUM_THREADS for every system (default: one per core, or on workloads that "
                         "calibrate, each system's faster of 1 and one per core)")
    ap.add_argument("--out", default="bench_grpo.json")
    args = ap.parse_args(argv)
    Worker.threads = args.threads
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    start = time.perf_counter()
    load0 = wait_quiet(args.wait_quiet) if args.wait_quiet else os.getloadavg()[0]
    if load0 >= 1.5:
        log(f"warning: load average {load0:.2f} at start; timings may be disturbed")
    plans = PLANS["quick" if args.quick else "full"]
    report = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine(),
              "grpokit_config": "defaults", "threads": args.threads or "default", "load_at_start": load0,
              "workloads": {}, "matmul_gflops": []}
    log_dir = Path(tempfile.mkdtemp(prefix="bench_grpo-"))
    report["matmul_gflops"].append(matmul_gflops())
    for wl in args.workloads:
        plan = plans[wl]
        log(f"{wl}: measuring {', '.join(args.systems)}")
        t0 = time.perf_counter()
        results, base = measure_systems(wl, plan, args.systems, log_dir, log, args.settle)
        t1 = time.perf_counter()
        variants = args.variants if args.variants is not None else plan.variants
        ablations = []
        if base is not None and not args.no_ablations and variants:
            ablations = measure_ablations(wl, variants, max(plan.ablation_rounds, 2), max(plan.ablation_per_round, 1),
                                          plan.warmup["grpokit"], base, log_dir, log, args.settle)
        if base is not None:
            results["grpokit"]["info"] = base.quit()
        report["workloads"][wl] = {"plan": plan.__dict__, "results": results, "ablations": ablations,
                                   "seconds": {"systems": t1 - t0, "ablations": time.perf_counter() - t1}}
        report["matmul_gflops"].append(matmul_gflops())
    gflops = max(report["matmul_gflops"])
    for wl, data in report["workloads"].items():
        data["systems"] = {s: summarize(res, gflops) for s, res in data["results"].items()}
        data["ratios"] = ratios(data["systems"], data["results"])
    report["seconds"] = time.perf_counter() - start
    report["logs"] = str(log_dir)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(tables(report))
    print(f"\nfp32 matmul rate (best of {len(report['matmul_gflops'])}): {gflops:.0f} GFLOP/s; "
          f"{report['seconds']:.0f} s in all; load average at start {load0:.2f}; JSON: {args.out}")
    return report


if __name__ == "__main__":
    main()
