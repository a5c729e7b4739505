"""A whole training run: validate, load, evaluate before, train (checkpointing, resumable,
stoppable by a signal), evaluate after, report."""

from __future__ import annotations

import contextlib
import functools
import json
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from grpokit.config import Config, check_whole_groups, to_dict, validate
from grpokit.data.chat import describe_ids
from grpokit.data.order import make_prompt_order
from grpokit.data.records import load_examples, validate_data_config
from grpokit.errors import ConfigError
from grpokit.eval.evaluate import held_out_episode_metrics, held_out_metrics
from grpokit.models.adapters import adapter_start
from grpokit.models.loading import load_model, load_tokenizer, model_path, prepare_model, save_outputs
from grpokit.models.locate import locate_model, naming_the_model
from grpokit.parallel.dist import Dist, init_distributed
from grpokit.parallel.sharding import full_model_state, shard_for_training
from grpokit.policy.reference import build_reference
from grpokit.rewards import RewardScorer, resolve_reward
from grpokit.train import checkpoint as ckpt
from grpokit.train.alerts import AlertMonitor
from grpokit.train.doctor import diagnose
from grpokit.train.doctor_report import (VERDICTS, WillNotLearn, duration_text, exit_code, find_problems, format_report,
                                         write_report)
from grpokit.train.logs import MetricsLog, NullLog, plot_run, truncate_lines
from grpokit.train.trainer import Trainer


class StopRequested:
    """SIGINT/SIGTERM: the first asks the loop to finish its step and checkpoint; a second
    Ctrl-C stops at once (a checkpoint being written is then discarded, the last one kept)."""

    def __init__(self, log=print):
        self.reason, self.log, self._old = None, log, {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.reason is not None:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.reason = signal.Signals(signum).name
        self.log(f"\n{self.reason}: finishing the current step, then saving a checkpoint "
                 "(Ctrl-C again stops at once)")

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def build_scorer(cfg: Config, max_fail_share: float | None = None) -> RewardScorer:
    """The run's rewards (max_fail_share: reward.max_fail_share unless given)."""
    share = cfg.reward.max_fail_share if max_fail_share is None else max_fail_share
    return RewardScorer(list(cfg.reward.names), list(cfg.reward.weights), kwargs=reward_kwargs(cfg, cfg.reward.names),
                        max_fail_share=share, workers=cfg.reward.workers)


def reward_kwargs(cfg: Config, names) -> dict[str, dict]:
    """Keyword arguments of the rewards among `names`: reward.kwargs, and for the code reward its
    limits from reward.code_* (an explicit reward.kwargs entry wins)."""
    out = {name: dict(cfg.reward.kwargs[name]) for name in names if cfg.reward.kwargs.get(name)}
    if "code" in names:
        out["code"] = {**cfg.reward.code_kwargs(), **out.get("code", {})}
    return out


def accuracy_judge(cfg: Config):
    """The evaluation's reward function, with the config's settings bound."""
    name = cfg.reward.accuracy_reward or cfg.reward.names[0]
    fn, kwargs = resolve_reward(name), reward_kwargs(cfg, [name]).get(name)
    return functools.partial(fn, **kwargs) if kwargs else fn


def _load(cfg: Config, d: Dist, log):
    """Tokenizer, training and eval examples (data problems surface here, before the model),
    then the model prepared for cfg.model.mode."""
    if d.is_main:  # a builtin model is built (and cached) once, by rank 0
        path = model_path(cfg.model, log=log)
    d.barrier()
    path = model_path(cfg.model, log=log) if not d.is_main else path
    locate_model(path, cfg.model.revision)
    start = adapter_start(path, cfg.model)  # a saved adapter to continue (or a clear error), before any load
    own_tokenizer = start is None or (Path(path) / "tokenizer_config.json").is_file()
    tokenizer = load_tokenizer(path if own_tokenizer else start.base, cfg.model)
    with naming_the_model(cfg.model.name_or_path, "--model.name-or-path"):
        train_examples, eval_examples = load_examples(cfg.data, tokenizer, log=log if d.is_main else _quiet)
    if d.device is not None:
        cfg.model.device = str(d.device)  # one device per rank
    model = prepare_model(load_model(start.base if start else path, cfg.model), cfg.model, adapter=start)
    return tokenizer, model, train_examples, eval_examples


def _quiet(*args, **kwargs) -> None:
    return None


@contextlib.contextmanager
def _session(cfg: Config, log):
    """(checked config, process group, scorer, log) for a command that loads the run's model;
    every config, data and reward-name problem raises ConfigError before any model loads. On the
    way out the scorer's workers stop and the process group is left."""
    cfg = validate(cfg)
    validate_data_config(cfg.data)
    scorer = build_scorer(cfg)  # unknown reward names fail here, before any model loads
    d = init_distributed(cfg.model.device, cfg.train.dist_timeout_s)
    try:
        check_whole_groups(cfg.rollout.prompts_per_step, d.world)
    except ConfigError:
        d.shutdown(clean=False)
        raise
    clean = False
    try:
        yield cfg, d, scorer, (log if d.is_main else _quiet)
        clean = True
    finally:
        scorer.close()
        d.shutdown(clean=clean)


def run_training(cfg: Config, log=print) -> dict:
    """A whole run (module docstring); its summary, or why it stopped early. Raises ConfigError
    (bad config, data or output folder) before any model loads, and WillNotLearn (the doctor's
    table) when the pre-flight finds the run cannot learn, before step 1."""
    with _session(cfg, log) as (cfg, d, scorer, log):
        return _run(cfg, d, scorer, log)


def run_doctor(cfg: Config, log=print) -> int:
    """`grpokit doctor`: the doctor's table on the console and doctor.json (doctor.output, else
    output_dir/doctor.json, else ./doctor.json); nothing trains. Returns the exit status:
    0 = will learn, 1 = warnings, 2 = will not learn."""
    with _session(cfg, log) as (cfg, d, scorer, log):
        trainer, eval_examples = build_trainer(cfg, d, scorer, log)
        path = Path(cfg.doctor.output or Path(cfg.output_dir or ".") / "doctor.json")
        code, table, _ = check_run(trainer, eval_examples, cfg.doctor.prompts, path)
        log(table)
        log(f"details: {path}")
        return code


def check_run(trainer: Trainer, eval_examples: list[dict], prompts: int, path: Path) -> tuple[int, str, dict]:
    """The doctor (train/doctor.py) on the run `trainer` is about to make: (exit status, table,
    findings) on every rank; rank 0 writes doctor.json at `path`. Rewards are scored by a copy
    of the run's scorer whose failures are counted, not fatal."""
    cfg = trainer.cfg
    judge_name, judge = cfg.reward.accuracy_reward or cfg.reward.names[0], accuracy_judge(cfg)
    with build_scorer(cfg, max_fail_share=1.0) as lenient:
        findings = diagnose(trainer, lenient, judge_name, judge, prompts=prompts, eval_examples=eval_examples,
                            evaluate=lambda examples: evaluate_held_out(trainer, examples, judge),
                            measure=cfg.doctor.measure_step)
    problems = find_problems(findings, cfg.doctor)
    if trainer.dist.is_main:
        write_report(path, findings, problems)
    return exit_code(problems), format_report(findings, problems), findings


def _preflight(run: Run, log) -> None:
    """The quick doctor before step 1 (doctor.preflight): raises WillNotLearn with its table, or
    logs one line."""
    c = run.cfg.doctor
    path, start = Path(c.output or run.out / "doctor.json"), time.perf_counter()
    code, table, f = check_run(run.trainer, run.eval_examples, c.preflight_prompts, path)
    if code == 2:  # every rank stops (the findings are rank 0's); rank 0 says why
        raise WillNotLearn(f"{table}\nthe pre-flight stopped the run before step 1 ({path}; `grpokit doctor` "
                           "checks more prompts; --doctor.no-preflight skips the check)" if run.trainer.dist.is_main
                           else "")
    if code == 1:
        log("\n".join(line for line in table.splitlines() if line.startswith(("  WARN", "  FAIL"))))
    G, g = f["group_size"], f["groups"]
    total = f["projection"]["total_seconds"]
    log(f"pre-flight: {VERDICTS[code]} ({f['prompts']} prompts x {G}: truncated {f['length']['truncated_share']:.0%}, "
        f"equal-reward groups {g['equal_groups_share']:.0%}, pass@{G} {g[f'pass@{G}']:.2f}"
        + (f", whole run ~{duration_text(total)}" if total is not None else "")
        + f"; {time.perf_counter() - start:.1f} s; {path.name})")


def evaluate_held_out(trainer: Trainer, examples: list[dict], judge) -> dict:
    """Greedy evaluation on held-out examples by rank 0 (eval/accuracy NaN elsewhere). Every
    rank calls it (a sharded model is gathered on all of them first)."""
    t, r = trainer, trainer.cfg.rollout
    with t.sharding.gathered(t.model):
        if not t.dist.is_main:
            return {"eval/accuracy": math.nan}
        if t.env is not None:  # a tool task: greedy episodes
            return held_out_episode_metrics(t.model, t.tokenizer, t.env, examples, judge, t.cfg, t.stop_ids)
        return held_out_metrics(t.model, t.tokenizer, examples, judge, max_new_tokens=r.max_new_tokens,
                                stop_token_ids=r.stop_token_ids)


@dataclass
class Run:
    """What one training run holds between its phases (every rank has one)."""

    cfg: Config
    out: Path
    trainer: Trainer
    eval_examples: list[dict]
    judge: object  # the reward that judges held-out accuracy
    fingerprint: str
    metrics: MetricsLog | NullLog = field(default_factory=NullLog)
    accuracy_before: float = math.nan
    tool_call_rate_before: float = math.nan  # a tool task's (env.name) held-out tool-call rate

    def evaluate(self) -> dict:
        return evaluate_held_out(self.trainer, self.eval_examples, self.judge)

    def save(self) -> Path:
        return ckpt.save_run(self.trainer, self.out, fingerprint=self.fingerprint, state={
            "accuracy_before": self.accuracy_before, "tool_call_rate_before": self.tool_call_rate_before,
            "log_rows": self.metrics.line_counts()})


def build_trainer(cfg: Config, d: Dist, scorer, log) -> tuple[Trainer, list[dict]]:
    """Data, model (sharded when asked), reference and trainer; (trainer, held-out examples)."""
    torch.manual_seed(cfg.train.seed)
    tokenizer, model, train_examples, eval_examples = _load(cfg, d, log)
    reference = build_reference(model, cfg)  # a frozen copy is made before sharding, then sharded too
    sharding = shard_for_training(model, reference and reference.frozen_copy, cfg.train.sharding, d, log)
    trainer = Trainer(cfg, model, tokenizer, train_examples, scorer, reference=reference, dist=d,
                      prompt_order=make_prompt_order(cfg.data, len(train_examples)), sharding=sharding)
    log(f"rollout: a completion ends at any of {describe_ids(tokenizer, trainer.stop_ids)}")
    return trainer, eval_examples


def _start(cfg: Config, d: Dist, scorer, log) -> tuple[Run, Path | None]:
    """Output folder, then the trainer (build_trainer)."""
    out, resume_from = ckpt.agree_output_dir(cfg, d)
    trainer, eval_examples = build_trainer(cfg, d, scorer, log)
    judge = accuracy_judge(cfg)
    return Run(cfg, out, trainer, eval_examples, judge, ckpt.data_fingerprint(trainer.examples)), resume_from


def _begin(run: Run, resume_from: Path | None, log) -> None:
    """Resume from a checkpoint, or write the config and evaluate before training; open the logs."""
    cfg, d, out = run.cfg, run.trainer.dist, run.out
    before = None
    if resume_from is not None:
        state = ckpt.resume_run(resume_from, run.trainer, run.fingerprint)
        run.accuracy_before = state["accuracy_before"]
        run.tool_call_rate_before = state.get("tool_call_rate_before", math.nan)
        if d.is_main:
            for name, rows in state["log_rows"].items():
                truncate_lines(out / name, rows)
        log(f"resumed from {resume_from} at step {run.trainer.step_idx}")
    else:
        if d.is_main:
            (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
        before = run.evaluate()
        run.accuracy_before = before["eval/accuracy"]
        run.tool_call_rate_before = before.get("eval/tool_call_rate", math.nan)
        log(f"greedy accuracy before training: {run.accuracy_before:.3f} on {len(run.eval_examples)} held-out problems")
    if d.is_main:
        run.metrics = MetricsLog(out, tensorboard=cfg.log.tensorboard, rollouts=cfg.log.rollouts)
    if before is not None:
        run.metrics.write({"step": 0, **before})


def _run(cfg: Config, d: Dist, scorer, log) -> dict:
    start = time.perf_counter()
    run, resume_from = _start(cfg, d, scorer, log)
    trainer, out = run.trainer, run.out
    if resume_from is None and cfg.doctor.preflight:
        _preflight(run, log)
    _begin(run, resume_from, log)
    try:
        with StopRequested(log) as stop:
            stopped = _loop(run, stop, log)
        if stopped:
            path = run.save()
            log(f"stopped ({stopped}) after step {trainer.step_idx}; checkpoint {path}. "
                f"Continue with: grpokit train --output-dir {out} --train.resume auto")
            return {"stopped": stopped, "steps": trainer.step_idx, "checkpoint": str(path), "output_dir": str(out)}
        run.save()
    finally:
        run.metrics.close()
    summary = {"steps": trainer.step_idx, "output_dir": str(out)}
    after = run.evaluate()
    weights = full_model_state(trainer.model)  # a sharded model's full weights, at rank 0
    if d.is_main:
        summary = _finish(run, after, start, log, weights)
    d.barrier()
    return summary


def _finish(run: Run, after: dict, start: float, log, weights=None) -> dict:
    """Rank 0: final model (`weights`: its full state dict when the model is sharded), summary.json,
    the plot, the console table."""
    cfg, out, trainer = run.cfg, run.out, run.trainer
    acc_after = after["eval/accuracy"]
    save_outputs(trainer.model, trainer.tokenizer, cfg, out / "model", state_dict=weights)
    summary = {"accuracy_before": run.accuracy_before, "accuracy_after": acc_after, "steps": trainer.step_idx,
               "wall_seconds": round(time.perf_counter() - start, 2), "nonfinite_steps": trainer.nonfinite_total,
               "output_dir": str(out),
               "alerts": [a for row in run.metrics.all_rows() for a in row.get("alerts", [])]}
    if "eval/tool_call_rate" in after:
        summary.update(tool_call_rate_before=run.tool_call_rate_before, tool_call_rate_after=after["eval/tool_call_rate"])
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    with open(out / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"step": trainer.step_idx, **{k: v for k, v in after.items()
                                                           if k.startswith("eval/")}}) + "\n")
    if cfg.log.plot:
        plot_run(run.metrics.all_rows(), out / "plot.png", title=f"grpokit: {cfg.algo.advantage} / {cfg.algo.aggregation}")
    log(summary_table(summary))
    log(f"see what the model wrote: grpokit view {out}")
    return summary


def _loop(run: Run, stop: StopRequested, log) -> str | None:
    """Steps until the end; returns why it stopped early (a signal, stop_at_step) or None."""
    from tqdm import tqdm

    monitor = AlertMonitor(run.cfg.alerts) if run.cfg.alerts.enabled else None

    trainer, t = run.trainer, run.cfg.train
    bar = tqdm(total=t.steps, initial=trainer.step_idx, disable=not run.cfg.log.progress, desc="GRPO",
               dynamic_ncols=True)
    recent: list[float] = []
    try:
        while trainer.step_idx < t.steps:
            row = trainer.step()
            if t.eval_every and row["step"] % t.eval_every == 0 and row["step"] < t.steps:
                row.update(run.evaluate())
            for alert in monitor.update(row) if monitor else []:
                row.setdefault("alerts", []).append(alert.to_dict())
                with tqdm.external_write_mode():
                    log(alert.line())
            run.metrics.write(row, rollout=trainer.last_record)
            if trainer.nonfinite_in_a_row >= t.max_nonfinite_steps:
                raise FloatingPointError(
                    f"{trainer.nonfinite_in_a_row} steps in a row had a non-finite loss or gradient norm "
                    f"(last at step {row['step']}); stopping. The last checkpoint is intact.")
            recent = (recent + [row["reward/total/mean"]])[-20:]
            bar.set_postfix(reward=f"{sum(recent) / len(recent):.3f}", zero_std=f"{row['reward/zero_std_share']:.2f}")
            bar.update(1)
            if trainer.dist.sum_floats(1.0 if stop.reason else 0.0)[0] > 0:  # any rank asked to stop
                return stop.reason or "a signal on another rank"
            if t.stop_at_step and trainer.step_idx >= t.stop_at_step and trainer.step_idx < t.steps:
                return f"train.stop_at_step={t.stop_at_step}"
            if t.save_every and trainer.step_idx % t.save_every == 0 and trainer.step_idx < t.steps:
                run.save()
    finally:
        bar.close()
    return None


def summary_table(summary: dict) -> str:
    gain = summary["accuracy_after"] - summary["accuracy_before"]
    return "\n".join([
        "",
        f"{'':24}{'before':>10}{'after':>10}{'change':>10}",
        f"{'held-out accuracy':24}{summary['accuracy_before']:>10.3f}{summary['accuracy_after']:>10.3f}{gain:>+10.3f}",
        *([f"{'tool-call rate':24}{summary['tool_call_rate_before']:>10.3f}{summary['tool_call_rate_after']:>10.3f}"
           f"{summary['tool_call_rate_after'] - summary['tool_call_rate_before']:>+10.3f}"]
          if "tool_call_rate_after" in summary else []),
        f"steps: {summary['steps']}   wall time: {summary['wall_seconds']:.1f} s   output: {summary['output_dir']}",
    ])
