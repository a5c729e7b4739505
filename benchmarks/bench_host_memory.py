"""train.keep_freed_memory on and off: page faults and step time of grpokit on "reasoning".

    .venv/bin/python benchmarks/bench_host_memory.py [--pairs 3] [--steps 10] [--out bench_host_memory.json]

The setting is process-wide and one-way, so each side runs in a fresh process (this script
re-runs itself with --side on|off), alternating on off on off ..., each for --steps steps after
2 warm-up steps, grpokit at its defaults as in bench_grpo.py. Reported per process:
median step, generation and update seconds, minor page faults per step (getrusage), peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def side(keep: bool, steps: int) -> dict:
    from benchmarks.grpokit_runner import GrpokitSession

    session = GrpokitSession("reasoning", "default" if keep else "no_keep_freed_memory")
    for _ in range(2):
        session.step()
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    recs = [session.step() for _ in range(steps)]
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
    med = {k: statistics.median(r[k] for r in recs) for k in ("step_s", "gen_s", "update_s")}
    return {"keep_freed_memory": keep, **med, "faults_per_step": faults / steps,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--side", choices=["on", "off"], help=argparse.SUPPRESS)
    ap.add_argument("--out", default="bench_host_memory.json")
    args = ap.parse_args()
    if args.side:
        print(json.dumps(side(args.side == "on", args.steps)))
        return
    rows = []
    for _ in range(args.pairs):
        for s in ("on", "off"):
            out = subprocess.run([sys.executable, __file__, "--side", s, "--steps", str(args.steps)],
                                 capture_output=True, text=True, check=True, cwd=ROOT)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"keep_freed_memory {s:3}: step {r['step_s']:.3f} s  generation {r['gen_s']:.3f}  update "
                  f"{r['update_s']:.3f}  faults/step {r['faults_per_step']:8.0f}  peak RSS {r['peak_rss_mb']:.0f} MB")
    Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
