"""`grpokit eval`: score a model on a preset or a data file, or compare two models on it.

    grpokit eval --model MODEL --data PRESET_OR_FILE [--eval.compare MODEL_AFTER] [options]

The options are EvalCommandConfig's (below): the model, data, rollout and reward
sections of a training config plus an eval section; `grpokit eval --help` lists them. Writes
results.json (summary) and samples.jsonl (one line per completion) to --output-dir; with
--eval.compare, the first model's files go to OUT/before/, the second's to OUT/after/, and the
table of both to OUT/comparison.json. See docs/data.md.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from grpokit.config import DataConfig, ModelConfig, RewardConfig, RolloutConfig

DESCRIPTION = """Evaluate a model: greedy (default) or rollout.group_size sampled completions per prompt
(with rollout.temperature > 0), scored by the preset's reward (math for gsm8k/math500, code for
humaneval, arithmetic for arithmetic) or reward.accuracy_reward / reward.names. Reports accuracy,
unbiased pass@k, mean completion length, truncated and think-block shares, a breakdown by column,
and problems/s. Of the model section, eval reads name_or_path, device, dtype and trust_remote_code
(a trained folder's grpokit_config.yaml says how to load the rest); of rollout, the sampling fields."""


@dataclass
class EvalConfig:
    """`grpokit eval`'s own settings (the model, data, sampling and reward are the sections train uses)."""

    compare: str = ""  # a second model (e.g. after training): both answer the same prompts and a before/after table is printed
    heldout: bool = False  # score what a training run with this data section evaluates: data.eval_size rows held out after the data.seed shuffle, or the first data.eval_size of its eval split
    limit: int = 0  # score only the first N prompts (0 = all)
    k: list[int] = field(default_factory=list)  # pass@k for these k, each <= rollout.group_size (empty = 1, 2, 4, .., G)
    by: list[str] | None = None  # break accuracy and pass@k down by these columns (default: the preset's, e.g. subject level for math500)
    batch_size: int = 256  # sequences per generate call
    seed: int = 0  # seed of sampling (with rollout.temperature > 0)


@dataclass
class EvalCommandConfig:
    """Everything `grpokit eval` reads: accuracy and pass@k of a model on a dataset."""

    output_dir: str = ""  # where results.json and samples.jsonl go ("" = runs/eval-DATE-TIME)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=lambda: RolloutConfig(group_size=1, max_new_tokens=0, temperature=0.0))
    reward: RewardConfig = field(default_factory=RewardConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def parse(argv: list[str]):
    from grpokit.cli.args import parse_command

    return parse_command(EvalCommandConfig, argv, prog="grpokit eval", description=DESCRIPTION)


def load_model_and_tokenizer(model_cfg, log=print, flag: str = "--model"):
    """(model in eval mode, tokenizer) for a folder, hub id or builtin:arithmetic."""
    from grpokit.models.loading import load_trained

    from grpokit.models.locate import locate_model

    name = model_cfg.name_or_path
    if not name.startswith("builtin:"):
        locate_model(name, model_cfg.revision, field=flag, flag=flag)
    return load_trained(name, device=model_cfg.device, dtype=model_cfg.dtype,
                        trust_remote_code=model_cfg.trust_remote_code, log=log)


def choose_examples(cfg, tokenizer, log=print) -> list[dict]:
    from grpokit.data.records import load_eval_examples, load_examples

    from grpokit.models.locate import naming_the_model

    with naming_the_model(cfg.model.name_or_path, "--model"):
        if cfg.eval.heldout:
            examples = load_examples(cfg.data, tokenizer, log=log)[1]
            return examples[: cfg.eval.limit] if cfg.eval.limit > 0 else examples
        return load_eval_examples(cfg.data, tokenizer, limit=cfg.eval.limit, log=log)


def max_new_tokens(cfg) -> int:
    """rollout.max_new_tokens, or (0) the preset's evaluation limit, else 512."""
    from grpokit.data.presets import get_preset

    preset = get_preset(cfg.data.source)
    return cfg.rollout.max_new_tokens or (preset.max_new_tokens if preset else 512)


def check(cfg):
    """Checks that need no model or data file; returns the rollout section evaluation samples
    with (its completion limit resolved). Raises ConfigError naming the field."""
    from grpokit.config import check_sampling
    from grpokit.errors import ConfigError
    from grpokit.data.records import validate_data_config

    rollout = dataclasses.replace(cfg.rollout, max_new_tokens=max_new_tokens(cfg))
    check_sampling(rollout, training=False)
    e, G = cfg.eval, rollout.group_size
    if any(not 1 <= k <= G for k in e.k):
        raise ConfigError(f"eval.k: pass@k needs 1 <= k <= rollout.group_size={G}, got {e.k}")
    if e.limit < 0:
        raise ConfigError(f"eval.limit: must be >= 0 (0 = all), got {e.limit}")
    if e.batch_size < 1:
        raise ConfigError(f"eval.batch_size: must be >= 1, got {e.batch_size}")
    validate_data_config(cfg.data)
    return rollout


def eval_settings(cfg, examples: list[dict]) -> dict:
    """Reward, completion limit and breakdown columns: the config first, then the preset's defaults."""
    from grpokit.data.presets import get_preset
    from grpokit.errors import DataError

    preset = get_preset(cfg.data.source)
    code = "test" in examples[0] or "io_cases" in examples[0]
    by = cfg.eval.by if cfg.eval.by is not None else [
        c for c in (preset.breakdown if preset else ()) if c in examples[0]]
    missing = [c for c in by if c not in examples[0]]
    if missing:
        columns = ", ".join(c for c in examples[0] if c != "prompt_ids")
        raise DataError(f"eval.by: no column {missing[0]!r} in the data; its columns are: {columns}")
    named = cfg.reward.accuracy_reward or (cfg.reward.names[0] if cfg.reward.names else "")
    return {
        "reward": named or (preset.reward if preset else "code" if code else "math"),
        "max_new_tokens": max_new_tokens(cfg),
        "by": by,
    }


def evaluate_model(name: str, cfg, examples: list[dict], settings: dict, tokenizer=None, model=None, log=print):
    from grpokit.data.chat import describe_ids, stop_token_ids
    from grpokit.eval.evaluate import evaluate_examples

    r, e = cfg.rollout, cfg.eval
    if model is None:
        from grpokit.data.records import encode_examples
        from grpokit.models.locate import naming_the_model

        model, tokenizer = load_model_and_tokenizer(dataclasses.replace(cfg.model, name_or_path=name), log=log,
                                                    flag="--eval.compare")
        with naming_the_model(name, "--eval.compare"):
            encode_examples(examples, tokenizer, cfg.data.chat_template_kwargs, cfg.data.source)
    stops = stop_token_ids(tokenizer, model, r.stop_token_ids)
    log(f"{name}: a completion ends at any of {describe_ids(tokenizer, stops)}")
    result = evaluate_examples(
        model, tokenizer, examples, settings["reward"], max_new_tokens=settings["max_new_tokens"],
        n=r.group_size, ks=e.k or None, by=settings["by"], batch_size=e.batch_size,
        reward_workers=cfg.reward.workers, seed=e.seed, temperature=r.temperature, top_p=r.top_p,
        top_k=r.top_k, min_new_tokens=r.min_new_tokens, stop_token_ids=r.stop_token_ids,
    )
    split = cfg.data.eval_split or ("heldout" if e.heldout else "default")
    result.summary = {
        "model": name, "data": cfg.data.source, "split": split,
        "reward": settings["reward"], "max_new_tokens": settings["max_new_tokens"],
        "temperature": r.temperature, "top_p": r.top_p, "top_k": r.top_k, "seed": e.seed,
        **result.summary,
    }
    return result


# ----------------------------------------------------------------------------- printing

_LABELS = [("accuracy", "accuracy"), ("mean_completion_tokens", "mean completion tokens"),
           ("truncated_share", "truncated share"), ("think_share", "think-block share"),
           ("unjudged_share", "unjudged share")]


def metric_rows(summary: dict) -> list[tuple[str, float]]:
    """(label, value) lines of a summary: the headline numbers, pass@k, then each breakdown group."""
    rows = [(label, summary[key]) for key, label in _LABELS[:1]]
    rows += [(key, value) for key, value in summary.items() if key.startswith("pass@")]
    rows += [(label, summary[key]) for key, label in _LABELS[1:]]
    for column, groups in summary.get("breakdown", {}).items():
        for value, part in groups.items():
            rows.append((f"{column}={value} ({part['problems']})", part["accuracy"]))
    return rows


def _fmt(value: float) -> str:
    return f"{value:10.1f}" if abs(value) >= 10 else f"{value:10.3f}"


def format_report(summary: dict) -> str:
    head = (f"{summary['model']} on {summary['data']}: {summary['problems']} problems x "
            f"{summary['samples_per_problem']} samples, reward {summary['reward']}")
    lines = [head] + [f"  {label:34}{_fmt(v)}" for label, v in metric_rows(summary)]
    return "\n".join(lines)


def throughput_line(summary: dict) -> str:
    return (f"throughput: {summary['problems']} problems x {summary['samples_per_problem']} samples in "
            f"{summary['seconds']:.2f} s = {summary['problems_per_second']:.1f} problems/s")


def comparison(before: dict, after: dict) -> list[dict]:
    b, a = dict(metric_rows(before)), dict(metric_rows(after))
    return [{"metric": k, "before": b[k], "after": a[k], "change": a[k] - b[k]} for k in b if k in a]


def format_comparison(rows: list[dict]) -> str:
    lines = [f"  {'':34}{'before':>10}{'after':>10}{'change':>10}"]
    for r in rows:
        lines.append(f"  {r['metric']:34}{_fmt(r['before'])}{_fmt(r['after'])}{r['change']:>+10.3f}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command


def run(cfg, log=print) -> dict:
    """Evaluate (and compare); write the files; return {'before': summary, 'after': summary?}."""
    check(cfg)
    out = Path(cfg.output_dir or f"runs/eval-{datetime.now():%Y%m%d-%H%M%S}")
    first_name, second_name = cfg.model.name_or_path, cfg.eval.compare
    model, tokenizer = load_model_and_tokenizer(cfg.model, log=log)
    examples = choose_examples(cfg, tokenizer, log=log)
    settings = eval_settings(cfg, examples)
    first = evaluate_model(first_name, cfg, examples, settings, tokenizer, model, log=log)
    del model
    if not second_name:
        paths = first.write(out)
        log(format_report(first.summary))
        log(throughput_line(first.summary))
        log(f"wrote {paths[0]} and {paths[1]}")
        return {"before": first.summary}
    fresh = [{k: v for k, v in ex.items() if k != "prompt_ids"} for ex in examples]  # its own tokenizer
    second = evaluate_model(second_name, cfg, fresh, settings, log=log)
    first.write(out / "before")
    second.write(out / "after")
    rows = comparison(first.summary, second.summary)
    (out / "comparison.json").write_text(json.dumps(
        {"before": first_name, "after": second_name, "rows": rows}, indent=2) + "\n")
    log(f"before: {first_name}\nafter:  {second_name}\n"
        f"{first.summary['problems']} problems of {cfg.data.source}, reward {settings['reward']}")
    log(format_comparison(rows))
    log(f"before {throughput_line(first.summary)}\nafter  {throughput_line(second.summary)}")
    log(f"wrote {out}/before/, {out}/after/ (results.json, samples.jsonl) and {out}/comparison.json")
    return {"before": first.summary, "after": second.summary}


def main(argv: list[str]) -> int:
    from grpokit.errors import ConfigError, RewardError

    try:
        run(parse(argv))
    except (ConfigError, RewardError, ValueError, OSError) as exc:
        print(f"grpokit eval: error: {exc}", file=sys.stderr)
        return 2
    return 0
