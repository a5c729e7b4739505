"""Throughput of the demo with 1 process vs 2 processes (torchrun, gloo, CPU).

    .venv/bin/python benchmarks/bench_dist.py [--steps 60] [--out /tmp/grpokit_bench_dist.json]

Each configuration runs the same global batch (P prompts x G per step) for --steps steps with
evaluation off; the figure is the median step time read from metrics.jsonl (rank 0's clock,
which includes waiting for the other rank in the collectives). Runs alternate 1, 2, 1, 2.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(procs: int, threads: int, steps: int, model_dir: str) -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"bench-dist-{procs}-")) / "run"
    flags = ["-m", "grpokit", "train", "--output-dir", str(out), "--model.name-or-path", model_dir,
             "--train.steps", str(steps), "--train.eval-every", "0", "--log.no-progress", "--log.no-tensorboard",
             "--log.no-plot", "--data.eval-size", "20"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if procs == 1:
        cmd = [sys.executable, *flags]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs),
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *flags]
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    step_s = [r["time/generation"] + r["time/reward"] + r["time/update"] for r in rows if "time/update" in r][5:]
    return {"median_step_s": statistics.median(step_s), "min_step_s": min(step_s), "max_step_s": max(step_s)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default="/tmp/grpokit_bench_dist.json")
    args = ap.parse_args()
    from grpokit.tasks.arithmetic import load_or_build

    model_dir = str(load_or_build())
    cores = os.cpu_count() or 1
    layouts = {"1 process x %d threads" % cores: (1, cores), "2 processes x %d thread(s)" % max(1, cores // 2): (2, max(1, cores // 2))}
    results: dict[str, list[dict]] = {k: [] for k in layouts}
    for _ in range(args.repeats):  # alternate A B A B
        for name, (procs, threads) in layouts.items():
            results[name].append(run(procs, threads, args.steps, model_dir))
    table = {name: {"median_step_s": statistics.median(r["median_step_s"] for r in runs),
                    "min_step_s": min(r["min_step_s"] for r in runs), "max_step_s": max(r["max_step_s"] for r in runs)}
             for name, runs in results.items()}
    base = next(iter(table.values()))["median_step_s"]
    print(f"{'layout':32}{'median s/step':>15}{'min':>9}{'max':>9}{'speed-up':>10}")
    for name, r in table.items():
        print(f"{name:32}{r['median_step_s']:>15.4f}{r['min_step_s']:>9.4f}{r['max_step_s']:>9.4f}"
              f"{base / r['median_step_s']:>9.2f}x")
    Path(args.out).write_text(json.dumps({"cores": cores, "steps": args.steps, "table": table}, indent=2))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
