"""A whole training run: validate, load, evaluate before, train, evaluate after, report."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import torch

from grpokit.config import Config, ConfigError, to_dict, validate
from grpokit.evaluate import greedy_accuracy
from grpokit.logs import MetricsLog, plot_run
from grpokit.rewards import resolve_reward
from grpokit.models import load_model, load_tokenizer, model_path, save_model
from grpokit.trainer import Trainer


def prepare_output_dir(cfg: Config) -> Path:
    """A fresh folder for this run; a folder that already holds a run is refused, not overwritten."""
    out = Path(cfg.output_dir or f"runs/{datetime.now():%Y%m%d-%H%M%S}")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"output_dir: {out} already holds files from another run; choose another --output-dir")
    out.mkdir(parents=True, exist_ok=True)
    return out


def build_scorer(cfg: Config):
    from grpokit.rewards import RewardScorer

    return RewardScorer(list(cfg.reward.names), list(cfg.reward.weights),
                        max_fail_share=cfg.reward.max_fail_share, workers=cfg.reward.workers)


def load_task(cfg: Config, tokenizer):
    """(train examples, eval examples, reward used to judge accuracy)."""
    from grpokit.data import load_examples

    return load_examples(cfg.data, tokenizer)


def run_training(cfg: Config, log=print) -> dict:
    validate(cfg)
    scorer = build_scorer(cfg)  # unknown reward names fail here, before any model loads
    out = prepare_output_dir(cfg)
    (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
    start = time.perf_counter()
    torch.manual_seed(cfg.train.seed)
    path = model_path(cfg.model, log=log)
    tokenizer = load_tokenizer(path)
    model = load_model(path, cfg.model)
    train_examples, eval_examples = load_task(cfg, tokenizer)
    judge = resolve_reward(cfg.reward.accuracy_reward or cfg.reward.names[0])
    accuracy = lambda: greedy_accuracy(model, tokenizer, eval_examples, judge,  # noqa: E731
                                       max_new_tokens=cfg.rollout.max_new_tokens)
    acc_before = accuracy()
    log(f"greedy accuracy before training: {acc_before:.3f} on {len(eval_examples)} held-out problems")
    trainer = Trainer(cfg, model, tokenizer, train_examples, scorer)
    metrics = MetricsLog(out, tensorboard=cfg.log.tensorboard)
    metrics.write({"step": 0, "eval_accuracy": acc_before})
    train_start = time.perf_counter()
    try:
        _loop(trainer, metrics, accuracy, cfg)
    finally:
        metrics.close()
        scorer.close()
    acc_after = accuracy()
    metrics.rows.append({"step": trainer.step_idx, "eval_accuracy": acc_after})
    save_model(model, tokenizer, out / "model")
    summary = {
        "accuracy_before": acc_before, "accuracy_after": acc_after, "steps": trainer.step_idx,
        "wall_seconds": round(time.perf_counter() - start, 2),
        "train_seconds": round(time.perf_counter() - train_start, 2), "output_dir": str(out),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    with open(out / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps(metrics.rows[-1]) + "\n")
    if cfg.log.plot:
        plot_run(metrics.rows, out / "plot.png", title=f"grpokit: {cfg.algo.advantage} / {cfg.algo.aggregation}")
    log(summary_table(summary))
    return summary


def _loop(trainer: Trainer, metrics: MetricsLog, accuracy, cfg: Config) -> None:
    from tqdm import tqdm

    bar = tqdm(total=cfg.train.steps, disable=not cfg.log.progress, desc="GRPO", dynamic_ncols=True)
    recent: list[float] = []
    for _ in range(cfg.train.steps):
        row = trainer.step()
        if cfg.train.eval_every and row["step"] % cfg.train.eval_every == 0 and row["step"] < cfg.train.steps:
            row["eval_accuracy"] = accuracy()
        metrics.write(row)
        recent = (recent + [row["reward_mean"]])[-20:]
        bar.set_postfix(reward=f"{sum(recent) / len(recent):.3f}", zero_std=f"{row['frac_zero_std']:.2f}")
        bar.update(1)
    bar.close()


def summary_table(summary: dict) -> str:
    gain = summary["accuracy_after"] - summary["accuracy_before"]
    lines = [
        "",
        f"{'':24}{'before':>10}{'after':>10}{'change':>10}",
        f"{'held-out accuracy':24}{summary['accuracy_before']:>10.3f}{summary['accuracy_after']:>10.3f}{gain:>+10.3f}",
        f"steps: {summary['steps']}   wall time: {summary['wall_seconds']:.1f} s   output: {summary['output_dir']}",
    ]
    return "\n".join(lines)
