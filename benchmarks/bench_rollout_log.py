"""What the rollouts log (log.rollouts) costs per step: step time with the log on and off, side
by side, and the bytes it adds per step; on the demo (`grpokit train`'s defaults) or on
bench_grpo.py's "reasoning" workload (32k vocabulary, 128-token completions).

Two trainers start from the same demo model and seed and step in turn (on, off, on, off, ...),
each writing its own metrics.jsonl (and rollouts.jsonl when on) into a temporary folder; both
sample the same tokens (the sampling RNG depends on seed and step only). The "on" step includes
the per-token log-probs kept while sampling, building the record and writing the line.

    .venv/bin/python benchmarks/bench_rollout_log.py --steps 30 --out rollout_log.json
    .venv/bin/python benchmarks/bench_rollout_log.py --workload reasoning --steps 6
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_trainer(workload: str, rollouts: bool):
    """(trainer, step function) with the log on or off."""
    if workload == "demo":
        trainer = demo_trainer(rollouts)
        return trainer, trainer.step
    from benchmarks.grpokit_runner import GrpokitSession

    session = GrpokitSession(workload)
    session.trainer.cfg.log.rollouts = rollouts
    return session.trainer, session.step


def demo_trainer(rollouts: bool):
    from grpokit.config import Config, validate
    from grpokit.data.records import load_examples
    from grpokit.models.loading import load_model, load_tokenizer, model_path, prepare_model
    from grpokit.train.run import build_scorer
    from grpokit.train.trainer import Trainer

    cfg = Config()  # the demo: builtin arithmetic model, 8 prompts x 16 completions per step
    cfg.log.rollouts = rollouts
    cfg = validate(cfg)
    path = model_path(cfg.model, log=lambda *_: None)
    tokenizer = load_tokenizer(path, cfg.model)
    train, _ = load_examples(cfg.data, tokenizer, log=lambda *_: None)
    torch.manual_seed(cfg.train.seed)
    model = prepare_model(load_model(path, cfg.model), cfg.model)
    return Trainer(cfg, model, tokenizer, train, build_scorer(cfg))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", choices=["demo", "reasoning"], default="demo")
    ap.add_argument("--steps", type=int, default=30, help="steps per setting (after 2 warm-up steps each)")
    ap.add_argument("--out", default="", help="write the figures as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from grpokit.train.logs import MetricsLog

    tmp = Path(tempfile.mkdtemp(prefix="bench_rollout_log-"))
    runs = {}
    for name, on in (("on", True), ("off", False)):
        (tmp / name).mkdir()
        runs[name] = (*make_trainer(args.workload, on), MetricsLog(tmp / name, tensorboard=False, rollouts=on), [])
    for i in range(args.steps + 2):
        for name, (trainer, step, log, times) in runs.items():
            t0 = time.perf_counter()
            step()
            log.write({"step": trainer.step_idx}, rollout=trainer.last_record)
            if i >= 2:
                times.append(time.perf_counter() - t0)
    for run in runs.values():
        run[2].close()
    on, off = statistics.median(runs["on"][3]), statistics.median(runs["off"][3])
    trainer = runs["on"][0]
    size = (tmp / "on" / "rollouts.jsonl").stat().st_size
    result = {
        "workload": args.workload, "steps": args.steps, "step_s_median_on": round(on, 5), "step_s_median_off": round(off, 5),
        "ratio_on_over_off": round(on / off, 3), "rollouts_bytes_per_step": round(size / (args.steps + 2)),
        "completions_per_step": trainer.cfg.rollout.prompts_per_step * trainer.cfg.rollout.group_size,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
