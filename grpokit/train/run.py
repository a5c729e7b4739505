"""A whole training run: validate, load, evaluate before, train (checkpointing, resumable,
stoppable by a signal), evaluate after, report."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import signal
import time
from datetime import datetime
from pathlib import Path

import torch

from grpokit.train import checkpoint as ckpt
from grpokit.models.adapters import adapter_start
from grpokit.config import Config, ConfigError, check_whole_groups, to_dict, validate
from grpokit.eval.evaluate import evaluate_examples
from grpokit.parallel.dist import Dist, init_distributed
from grpokit.train.logs import MetricsLog, NullLog, plot_run, truncate_lines
from grpokit.data.chat import describe_ids
from grpokit.models.loading import load_model, load_tokenizer, model_path, prepare_model, save_outputs
from grpokit.models.locate import locate_model, naming_the_model
from grpokit.policy.reference import build_reference
from grpokit.rewards import resolve_reward
from grpokit.parallel.sharding import full_model_state, full_state, gathered, load_full_state, reads_weights, shard_for_training
from grpokit.train.trainer import Trainer

# Config fields that may change between a run and its resumption.
RESUME_FREE = {"output_dir", "train.resume", "train.stop_at_step", "train.allow_config_change", "log", "model.device"}


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


def prepare_output_dir(cfg: Config) -> tuple[Path, Path | None]:
    """(output folder, checkpoint to resume from). A folder that already holds a run is refused
    unless resuming, so nothing saved is overwritten."""
    out = Path(cfg.output_dir or f"runs/{datetime.now():%Y%m%d-%H%M%S}")
    resume = cfg.train.resume
    if resume:
        found = ckpt.latest_checkpoint(out / "checkpoints") if resume == "auto" else Path(resume)
        if found is None and resume == "auto" and _same_run_without_checkpoint(out, cfg):
            out.mkdir(parents=True, exist_ok=True)
            for name in ("metrics.jsonl", "rollouts.jsonl"):
                truncate_lines(out / name, 0)  # logs of steps that were never checkpointed
            return out, None  # nothing to resume yet: a fresh start
        if found is None:
            raise ConfigError(f"train.resume: no complete checkpoint in {out / 'checkpoints'}")
        if not (found / "manifest.json").is_file():
            raise ConfigError(f"train.resume: {found} is not a complete checkpoint")
        return out, found
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"output_dir: {out} already holds files from another run; choose another "
                          "--output-dir, or continue it with --train.resume auto")
    out.mkdir(parents=True, exist_ok=True)
    return out, None


def _same_run_without_checkpoint(out: Path, cfg: Config) -> bool:
    """True for an empty/missing folder, or one holding only this same config's early logs."""
    if not out.exists() or not any(out.iterdir()):
        return True
    saved = out / "config.json"
    if not saved.is_file():
        return False
    return not _binding_differences(json.loads(saved.read_text()), cfg)


def _binding_differences(saved: dict, cfg: Config) -> list[str]:
    """Config differences that would change the run's result (RESUME_FREE fields excluded)."""
    diffs = ckpt.config_differences(saved, to_dict(cfg))
    return [d for d in diffs if not any(d.startswith(f + ".") or d.startswith(f + ":") for f in RESUME_FREE)]


def data_fingerprint(examples: list[dict]) -> str:
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps([ex.get("prompt"), ex.get("answer")], default=str).encode())
    return h.hexdigest()[:16]


def build_scorer(cfg: Config):
    from grpokit.rewards import RewardScorer

    return RewardScorer(list(cfg.reward.names), list(cfg.reward.weights), kwargs=reward_kwargs(cfg, cfg.reward.names),
                        max_fail_share=cfg.reward.max_fail_share, workers=cfg.reward.workers)


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


def _check_resume(saved: dict, cfg: Config, fingerprint: str) -> None:
    diffs = _binding_differences(saved["config"], cfg)
    if saved["manifest"].get("data_fingerprint") != fingerprint:
        diffs.append(f"data: fingerprint {saved['manifest'].get('data_fingerprint')} in the checkpoint, "
                     f"{fingerprint} now")
    if diffs and not cfg.train.allow_config_change:
        raise ConfigError("train.resume: the checkpoint was made with a different config or data:\n  "
                          + "\n  ".join(diffs) + "\n(--train.allow-config-change resumes anyway)")


def _setup_output(cfg: Config, d: Dist) -> tuple[Path, Path | None]:
    """Rank 0 decides the folder and the checkpoint to resume; every rank gets the same answer."""
    result = None
    if d.is_main:
        try:
            result = prepare_output_dir(cfg)
        except ConfigError as exc:
            result = exc
    result = d.broadcast_object(result)
    if isinstance(result, Exception):
        raise result
    return result


def _load(cfg: Config, d: Dist, log):
    """Tokenizer, training and eval examples (data problems surface here, before the model),
    then the model prepared for cfg.model.mode."""
    from grpokit.data.records import load_examples

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


def run_training(cfg: Config, log=print) -> dict:
    from grpokit.data.order import make_sampler
    from grpokit.data.records import validate_data_config

    cfg = validate(cfg)
    validate_data_config(cfg.data)
    scorer = build_scorer(cfg)  # unknown reward names fail here, before any model loads
    d = init_distributed(cfg.model.device, cfg.train.dist_timeout_s)
    try:
        check_whole_groups(cfg.rollout.prompts_per_step, d.world)
    except ConfigError:
        d.shutdown(clean=False)
        raise
    log = log if d.is_main else _quiet
    clean = False
    try:
        result = _run(cfg, d, scorer, log, make_sampler)
        clean = True
        return result
    finally:
        scorer.close()
        d.shutdown(clean=clean)


def _run(cfg: Config, d: Dist, scorer, log, make_sampler) -> dict:
    out, resume_from = _setup_output(cfg, d)
    start = time.perf_counter()
    torch.manual_seed(cfg.train.seed)
    tokenizer, model, train_examples, eval_examples = _load(cfg, d, log)
    judge = accuracy_judge(cfg)

    def accuracy() -> dict:
        """Greedy evaluation on the held-out examples by rank 0: accuracy and its companions.
        Every rank calls it (a sharded model is gathered on all of them first)."""
        with gathered(model):
            if not d.is_main or not eval_examples:
                return {"eval_accuracy": math.nan}
            s = evaluate_examples(model, tokenizer, eval_examples, judge,
                                  max_new_tokens=cfg.rollout.max_new_tokens,
                                  stop_token_ids=cfg.rollout.stop_token_ids).summary
        return {"eval_accuracy": s["accuracy"], "eval_truncated_share": s["truncated_share"],
                "eval_completion_len_mean": s["mean_completion_tokens"], "eval_think_share": s["think_share"]}

    reference = build_reference(model, cfg)  # a frozen copy is made before sharding, then sharded too
    shard_for_training(model, reference, cfg.train.sharding, d, log)
    trainer = Trainer(cfg, model, tokenizer, train_examples, scorer, ref_logprobs=reference,
                      dist=d, sampler=make_sampler(cfg.data, len(train_examples)))
    log(f"rollout: a completion ends at any of {describe_ids(tokenizer, trainer.stop_ids)}")
    fingerprint = data_fingerprint(train_examples)
    if resume_from is not None:
        saved = ckpt.load_checkpoint(resume_from, weights=reads_weights(model, d))
        _check_resume(saved, cfg, fingerprint)
        load_full_state(model, trainer.optimizer, saved["trainable"],
                        ckpt.optimizer_state(saved["optimizer_tensors"], saved["optimizer_layout"]), d)
        trainer.load_state_dict(saved["state"]["trainer"])
        ckpt.set_rng_state(saved["rng_tensors"], saved["state"]["rng"], rank=d.rank)
        acc_before = saved["state"]["accuracy_before"]
        if d.is_main:
            for name, rows in saved["state"]["log_rows"].items():
                truncate_lines(out / name, rows)
        log(f"resumed from {resume_from} at step {trainer.step_idx}")
    else:
        if d.is_main:
            (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
        before = accuracy()
        acc_before = before["eval_accuracy"]
        log(f"greedy accuracy before training: {acc_before:.3f} on {len(eval_examples)} held-out problems")
    metrics = MetricsLog(out, tensorboard=cfg.log.tensorboard, rollouts=cfg.log.rollouts) if d.is_main else NullLog()
    if resume_from is None:
        metrics.write({"step": 0, **before})

    def save() -> Path:
        rng = d.gather_objects(ckpt.rng_state())  # every rank's generators
        tensors = full_state(model, trainer.optimizer, d)  # at rank 0; gathered from every rank's shards
        path = None
        if d.is_main:
            state = {"trainer": trainer.state_dict(), "accuracy_before": acc_before, "log_rows": metrics.line_counts()}
            manifest = {"data_fingerprint": fingerprint, "versions": _versions(), "world_size": d.world}
            path = ckpt.save_checkpoint(out / "checkpoints", trainer.step_idx, trainable=tensors[0],
                                        optimizer_state=tensors[1], state=state, config=to_dict(cfg),
                                        manifest=manifest, keep_last=cfg.train.keep_last, rng=rng)
        d.barrier()
        return path or out / "checkpoints" / f"step-{trainer.step_idx:08d}"

    try:
        with StopRequested(log) as stop:
            stopped = _loop(trainer, metrics, accuracy, cfg, save, stop)
        if stopped:
            path = save()
            log(f"stopped ({stopped}) after step {trainer.step_idx}; checkpoint {path}. "
                f"Continue with: grpokit train --output-dir {out} --train.resume auto")
            return {"stopped": stopped, "steps": trainer.step_idx, "checkpoint": str(path), "output_dir": str(out)}
        save()
    finally:
        metrics.close()
    summary = {"steps": trainer.step_idx, "output_dir": str(out)}
    acc_after = accuracy()["eval_accuracy"]
    weights = full_model_state(model)  # a sharded model's full weights, at rank 0
    if d.is_main:
        summary = _finish(cfg, out, model, tokenizer, metrics, acc_before, acc_after, trainer, start, log, weights)
    d.barrier()
    return summary


def _finish(cfg, out: Path, model, tokenizer, metrics, acc_before, acc_after, trainer, start, log,
            weights=None) -> dict:
    """Rank 0: final model (`weights`: its full state dict when the model is sharded), summary.json,
    the plot, the console table."""
    save_outputs(model, tokenizer, cfg, out / "model", state_dict=weights)
    summary = {"accuracy_before": acc_before, "accuracy_after": acc_after, "steps": trainer.step_idx,
               "wall_seconds": round(time.perf_counter() - start, 2), "nonfinite_steps": trainer.nonfinite_total,
               "output_dir": str(out)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    with open(out / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"step": trainer.step_idx, "eval_accuracy": acc_after}) + "\n")
    if cfg.log.plot:
        plot_run(metrics.all_rows(), out / "plot.png", title=f"grpokit: {cfg.algo.advantage} / {cfg.algo.aggregation}")
    log(summary_table(summary))
    log(f"see what the model wrote: grpokit view {out}")
    return summary


def _versions() -> dict:
    import transformers

    from grpokit.version import __version__

    return {"grpokit": __version__, "torch": torch.__version__, "transformers": transformers.__version__}


def _loop(trainer: Trainer, metrics: MetricsLog, accuracy, cfg: Config, save, stop: StopRequested) -> str | None:
    """Steps until the end; returns why it stopped early (a signal, stop_at_step) or None."""
    from tqdm import tqdm

    t = cfg.train
    bar = tqdm(total=t.steps, initial=trainer.step_idx, disable=not cfg.log.progress, desc="GRPO", dynamic_ncols=True)
    recent: list[float] = []
    try:
        while trainer.step_idx < t.steps:
            row = trainer.step()
            if t.eval_every and row["step"] % t.eval_every == 0 and row["step"] < t.steps:
                row.update(accuracy())
            if hasattr(trainer.sampler, "stats"):
                row.update(trainer.sampler.stats())
            metrics.write(row, rollout=trainer.last_record)
            if trainer.nonfinite_in_a_row >= t.max_nonfinite_steps:
                raise FloatingPointError(
                    f"{trainer.nonfinite_in_a_row} steps in a row had a non-finite loss or gradient norm "
                    f"(last at step {row['step']}); stopping. The last checkpoint is intact.")
            recent = (recent + [row["reward_mean"]])[-20:]
            bar.set_postfix(reward=f"{sum(recent) / len(recent):.3f}", zero_std=f"{row['frac_zero_std']:.2f}")
            bar.update(1)
            if trainer.dist.sum_floats(1.0 if stop.reason else 0.0)[0] > 0:  # any rank asked to stop
                return stop.reason or "a signal on another rank"
            if t.stop_at_step and trainer.step_idx >= t.stop_at_step and trainer.step_idx < t.steps:
                return f"train.stop_at_step={t.stop_at_step}"
            if t.save_every and trainer.step_idx % t.save_every == 0 and trainer.step_idx < t.steps:
                save()
    finally:
        bar.close()
    return None


def summary_table(summary: dict) -> str:
    gain = summary["accuracy_after"] - summary["accuracy_before"]
    return "\n".join([
        "",
        f"{'':24}{'before':>10}{'after':>10}{'change':>10}",
        f"{'held-out accuracy':24}{summary['accuracy_before']:>10.3f}{summary['accuracy_after']:>10.3f}{gain:>+10.3f}",
        f"steps: {summary['steps']}   wall time: {summary['wall_seconds']:.1f} s   output: {summary['output_dir']}",
    ])
