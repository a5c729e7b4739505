"""Learning, not speed: greedy held-out accuracy against training wall time, grpokit vs TRL.

    .venv/bin/python benchmarks/bench_learning.py --out bench_learning.json --plot bench_learning.png

Every system starts from the same warm-started demo model (grpokit/tasks/arithmetic.py builds and
caches it), trains on the same prompts in the same order (the demo's training split, shuffled by
the run's seed; TRL is given that order with its own shuffle off), with the same shared
hyperparameters: P = 8 prompts x G = 16 completions per step, at most 8 new tokens, temperature 1,
AdamW lr 2e-4 (betas 0.9/0.99), 10 warm-up steps then cosine to 0.1 x lr, gradient-norm clip 1.0,
no KL. Each system keeps its own loss and advantage scaling:

* grpokit: its defaults (`grpokit train` on the demo); grpokit_ds: the same with
  algo.dynamic_sampling (DAPO's dynamic sampling, grpokit/train/dynamic_sampling.py);
* trl: TRL's GRPOTrainer with its own defaults for loss (loss_type, epsilon, scale_rewards),
  configured for the CPU as benchmarks/trl_runner.py explains (fp32, no gradient checkpointing).

Every `--eval-every` steps the model's greedy accuracy on the demo's 200 held-out problems is
measured; that time is left out of the training time and reported on its own. Each run is a
process of its own (`--worker`) with one torch thread (`--threads`); `--parallel` runs start
together (the order rotates per seed), so load from other processes hits all systems alike.
Training time is measured twice: wall seconds, and the process's CPU seconds. On a machine
shared with other work the wall time of a run mostly measures its neighbours; the CPU seconds of
a one-thread process are what it would take alone on one core, so the summary and the plot use
them, and give the wall time beside them.

For each seed the summary gives every system's start and final accuracy, training seconds, and
the training seconds at which it first reached TRL's final accuracy of that seed (its "target");
`ds_vs_trl_cpu` (`_wall`) is grpokit_ds's time to the target over TRL's whole training time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SYSTEMS = ("grpokit", "trl", "grpokit_ds")
P, G, MAX_NEW, LR, WARMUP, MIN_LR_RATIO, CLIP = 8, 16, 8, 2e-4, 10, 0.1, 1.0


# ----------------------------------------------------------------------------- shared setup


def demo_data(tokenizer, seed: int, steps: int):
    """(training examples, held-out examples, the prompt order's first steps * P * 4 indices)."""
    from grpokit.config import Config
    from grpokit.data.order import ShuffledOrder
    from grpokit.data.records import load_examples

    train, held_out = load_examples(Config().data, tokenizer, log=lambda *a: None)
    order = ShuffledOrder(len(train), seed).next_indices(steps * P * 4)  # room for extra rounds
    return train, held_out, order


class Clock:
    """Training time with evaluation left out, as wall time and as the process's CPU time; the
    curve of [step, train wall s, train CPU s, accuracy]."""

    def __init__(self, model, tokenizer, held_out):
        self.model, self.tok, self.held_out = model, tokenizer, held_out
        self.curve, self.eval_s, self.eval_cpu_s = [], 0.0, 0.0
        self.start, self.start_cpu = time.perf_counter(), time.process_time()

    def train_s(self) -> float:
        return time.perf_counter() - self.start - self.eval_s

    def train_cpu_s(self) -> float:
        return time.process_time() - self.start_cpu - self.eval_cpu_s

    def evaluate(self, step: int) -> None:
        from grpokit.data.arithmetic import arithmetic_reward
        from grpokit.eval.evaluate import greedy_accuracy

        t, c = self.train_s(), self.train_cpu_s()
        t0, c0 = time.perf_counter(), time.process_time()
        acc = greedy_accuracy(self.model, self.tok, self.held_out, arithmetic_reward, max_new_tokens=MAX_NEW)
        self.eval_s += time.perf_counter() - t0
        self.eval_cpu_s += time.process_time() - c0
        self.curve.append([step, round(t, 3), round(c, 3), acc])

    def result(self) -> dict:
        return {"curve": self.curve, "eval_s": self.eval_s, "train_s": self.train_s(), "train_cpu_s": self.train_cpu_s()}


# ----------------------------------------------------------------------------- the systems


def run_grpokit(seed: int, steps: int, eval_every: int, dynamic: bool) -> dict:
    import torch

    from benchmarks.grpokit_runner import SequentialOrder
    from benchmarks.workloads import load
    from grpokit.cli.main import apply_process_settings
    from grpokit.config import Config, validate
    from grpokit.rewards import RewardScorer
    from grpokit.train.trainer import Trainer

    cfg = Config()  # the demo's defaults: P = 8, G = 16, 8 new tokens, lr 2e-4, warm-up + cosine
    cfg.train.steps, cfg.train.seed, cfg.algo.dynamic_sampling = steps, seed, dynamic
    cfg.log.rollouts = False
    assert (cfg.rollout.prompts_per_step, cfg.rollout.group_size, cfg.rollout.max_new_tokens) == (P, G, MAX_NEW)
    assert (cfg.train.lr, cfg.train.warmup_steps, cfg.train.min_lr_ratio, cfg.train.max_grad_norm) == (
        LR, WARMUP, MIN_LR_RATIO, CLIP)
    cfg = validate(cfg)
    apply_process_settings(cfg, log=lambda *a: None)
    torch.manual_seed(seed)
    model, tok = load("tiny")
    train, held_out, order = demo_data(tok, seed, steps)
    scorer = RewardScorer(cfg.reward.names, cfg.reward.weights)
    trainer = Trainer(cfg, model, tok, train, scorer, prompt_order=SequentialOrder(order))
    clock, rows = Clock(model, tok, held_out), []
    clock.evaluate(0)
    for step in range(1, steps + 1):
        rows.append(trainer.step())
        if step % eval_every == 0 or step == steps:
            clock.evaluate(step)
    scorer.close()
    extra = {k: sum(r.get(k, 0) for r in rows) for k in ("rollout/groups_generated", "rollout/groups_used",
                                                        "rollout/rounds", "time/extra_rounds")}
    return {**clock.result(), **extra}


def trl_args(seed: int, steps: int, out_dir: str):
    """GRPOConfig with the shared hyperparameters; loss, epsilon and reward scaling TRL's own."""
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=out_dir, use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
        per_device_train_batch_size=P * G, gradient_accumulation_steps=1, num_generations=G,
        max_completion_length=MAX_NEW, temperature=1.0, top_p=1.0, top_k=0,
        learning_rate=LR, adam_beta1=0.9, adam_beta2=0.99, weight_decay=0.0, max_grad_norm=CLIP,
        lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": MIN_LR_RATIO},
        warmup_steps=WARMUP, optim="adamw_torch", beta=0.0, num_iterations=1,
        max_steps=steps, logging_steps=10_000, save_strategy="no", report_to=[], disable_tqdm=True,
        shuffle_dataset=False, dataloader_num_workers=0, dataloader_pin_memory=False, seed=seed,
        log_completions=False,
    )


def run_trl(seed: int, steps: int, eval_every: int) -> dict:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOTrainer

    from benchmarks.workloads import load
    from grpokit.data.arithmetic import arithmetic_reward

    torch.manual_seed(seed)
    model, tok = load("tiny")
    train, held_out, order = demo_data(tok, seed, steps)
    rows = [{"prompt": [{"role": "user", "content": train[i]["prompt"]}], "answer": str(train[i]["answer"])}
            for i in order[: steps * P]]

    def reward(prompts, completions, answer, **kw):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [arithmetic_reward(t, {"answer": a}) for t, a in zip(texts, answer)]

    class Evaluate(TrainerCallback):
        clock = None

        def on_train_begin(self, args, state, control, model=None, **kw):
            Evaluate.clock = Clock(model, tok, held_out)
            Evaluate.clock.evaluate(0)

        def on_step_end(self, args, state, control, model=None, **kw):
            if state.global_step % eval_every == 0 or state.global_step == steps:
                Evaluate.clock.evaluate(state.global_step)

    with tempfile.TemporaryDirectory() as out_dir:
        trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=trl_args(seed, steps, out_dir),
                              train_dataset=Dataset.from_list(rows), processing_class=tok, callbacks=[Evaluate()])
        trainer.train()
    return Evaluate.clock.result()


def worker(system: str, seed: int, steps: int, eval_every: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    if system == "trl":
        return run_trl(seed, steps, eval_every)
    return run_grpokit(seed, steps, eval_every, dynamic=system == "grpokit_ds")


# ----------------------------------------------------------------------------- the driver


def time_to_reach(curve: list, target: float) -> float | None:
    """Training seconds of the first evaluation at or above target (None: never)."""
    return next((t for step, t, acc in curve if step > 0 and acc >= target - 1e-9), None)


def reached(curve: list, target: float, column: int) -> float | None:
    """time_to_reach on one clock of the curve (1: wall, 2: CPU)."""
    return time_to_reach([[c[0], c[column], c[-1]] for c in curve], target)


def summarise(runs: dict) -> dict:
    """Per seed: each system's accuracies, training time (wall and CPU) and the time at which it
    first reached TRL's final accuracy of that seed; grpokit_ds's time to it over TRL's training
    time (`ds_vs_trl_cpu`, `ds_vs_trl_wall`)."""
    out = {}
    for seed, systems in runs.items():
        target = systems["trl"]["curve"][-1][-1]
        row = {"target": target}
        for name, r in systems.items():
            steps = r["curve"][-1][0]
            row[name] = {"start": r["curve"][0][-1], "final": r["curve"][-1][-1], "train_s": round(r["train_s"], 1),
                         "train_cpu_s": round(r["train_cpu_s"], 1), "eval_s": round(r["eval_s"], 1),
                         "cpu_to_target": reached(r["curve"], target, 2), "wall_to_target": reached(r["curve"], target, 1),
                         "step_to_target": reached(r["curve"], target, 0)}
            if r.get("rollout/rounds"):
                row[name]["rounds_per_step"] = round(r["rollout/rounds"] / steps, 2)
                row[name]["extra_rounds_s"] = round(r["time/extra_rounds"], 1)
        ds, trl = row["grpokit_ds"], row["trl"]
        for clock, key in (("cpu", "train_cpu_s"), ("wall", "train_s")):
            reach = ds[f"{clock}_to_target"]
            row[f"ds_vs_trl_{clock}"] = None if reach is None else round(reach / trl[key], 3)
        out[seed] = row
    return out


def markdown(summary: dict) -> str:
    """The summary as a Markdown table: one row per seed and system."""
    lines = ["| seed | system | accuracy start → final | training CPU s (wall s) | CPU s (wall s) to TRL's final "
             "accuracy, and the step | dynamic sampling: rounds/step, extra rounds' wall s |", "| --- | --- | --- | --- | --- | --- |"]
    for seed, row in summary.items():
        for name in [n for n in ("trl", "grpokit", "grpokit_ds") if n in row]:  # the systems that ran
            r = row[name]
            cpu, wall = r["cpu_to_target"], r["wall_to_target"]
            reach = "never" if cpu is None else f"{cpu:.1f} ({wall:.0f}), step {r['step_to_target']}"
            ds = f"{r['rounds_per_step']}, {r['extra_rounds_s']}" if "rounds_per_step" in r else ""
            lines.append(f"| {seed} | {name} | {r['start']:.3f} → {r['final']:.3f} | {r['train_cpu_s']} ({r['train_s']}) "
                         f"| {reach} | {ds} |")
        lines.append(f"| {seed} | grpokit_ds / TRL time | | | {row['ds_vs_trl_cpu']} ({row['ds_vs_trl_wall']}) | |")
    return "\n".join(lines)


def plot(runs: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"grpokit": "tab:blue", "grpokit_ds": "tab:green", "trl": "tab:red"}
    labels = {"grpokit": "grpokit (defaults)", "grpokit_ds": "grpokit + dynamic sampling", "trl": "TRL GRPOTrainer"}
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    for k, (seed, systems) in enumerate(runs.items()):
        for name, r in systems.items():
            xs, ys = [c[2] for c in r["curve"]], [c[-1] for c in r["curve"]]
            ax.plot(xs, ys, color=colours[name], linestyle=["-", "--", ":"][k % 3], alpha=0.8,
                    label=f"{labels[name]}" if k == 0 else None)
    ax.set_xlabel("training time, CPU seconds of a 1-thread process (evaluation excluded)")
    ax.set_ylabel("greedy held-out accuracy")
    ax.set_title(f"demo task, {P} prompts x G={G}; one line per seed")
    ax.legend()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def launch(system: str, seed: int, args, out: str) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--worker", system, "--seed", str(seed), "--steps", str(args.steps),
           "--eval-every", str(args.eval_every), "--threads", str(args.threads), "--out", out]
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


def drive(args) -> dict:
    """Every (seed, system) run, --parallel at a time, in seed order with the systems' order
    rotated per seed; runs started together share the machine's load alike."""
    jobs = []
    for k, seed in enumerate(args.seeds):
        order = SYSTEMS[k % 3:] + SYSTEMS[: k % 3]  # rotate, so no system always runs first
        jobs += [(seed, s) for s in order if s in args.systems]
    runs: dict = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench_learning-"))
    while jobs:
        batch, jobs = jobs[: args.parallel], jobs[args.parallel:]
        procs = [(seed, system, launch(system, seed, args, str(tmp / f"{system}-{seed}.json")))
                 for seed, system in batch]
        for seed, system, proc in procs:
            _, err = proc.communicate()
            if proc.returncode:
                raise SystemExit(f"{system} seed {seed} failed:\n{err[-3000:]}")
            r = runs.setdefault(str(seed), {})[system] = json.loads((tmp / f"{system}-{seed}.json").read_text())
            print(f"seed {seed} {system:10s} {r['curve'][0][-1]:.3f} -> {r['curve'][-1][-1]:.3f}  train "
                  f"{r['train_cpu_s']:6.1f} CPU s, {r['train_s']:6.1f} wall s  eval {r['eval_s']:5.1f} s", flush=True)
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--eval-every", type=int, default=20)
    ap.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--parallel", type=int, default=3, help="runs at once (3: a seed's three systems together)")
    ap.add_argument("--out", default="bench_learning.json")
    ap.add_argument("--plot", default="")
    ap.add_argument("--report", default="", help="re-summarise a finished run's JSON (and --plot it)")
    ap.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.report:  # a finished run's JSON: its summary and table again, and the plot
        result = json.loads(Path(args.report).read_text())
        result["summary"] = summarise(result["runs"])
        print(markdown(result["summary"]))
        Path(args.report).write_text(json.dumps(result, indent=1))
        if args.plot:
            plot(result["runs"], Path(args.plot))
        return
    if args.worker:
        Path(args.out).write_text(json.dumps(worker(args.worker, args.seed, args.steps, args.eval_every, args.threads)))
        return
    runs = drive(args)
    result = {"settings": {"P": P, "G": G, "max_new_tokens": MAX_NEW, "lr": LR, "warmup": WARMUP,
                           "min_lr_ratio": MIN_LR_RATIO, "clip": CLIP, "steps": args.steps,
                           "eval_every": args.eval_every, "threads": args.threads}, "runs": runs}
    if "trl" in args.systems and "grpokit_ds" in args.systems:
        result["summary"] = summarise(runs)
    Path(args.out).write_text(json.dumps(result, indent=1))  # before anything else can fail
    if "summary" in result:
        print(markdown(result["summary"]))
    if args.plot:
        plot(runs, Path(args.plot))


if __name__ == "__main__":
    main()
