"""`grpokit eval`: score a model on a preset or a data file, or compare two models on it.

    grpokit eval --model MODEL --data PRESET_OR_FILE [--compare MODEL_AFTER] [options]

Writes results.json (summary) and samples.jsonl (one line per completion) to --out; with
--compare, the first model's files go to OUT/before/, the second's to OUT/after/, and the table
of both to OUT/comparison.json. See docs/data.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

DESCRIPTION = """Evaluate a model: greedy (default) or --n sampled completions per problem, scored by
the preset's reward (math for gsm8k/math500, code for humaneval, arithmetic for arithmetic) or
--reward. Reports accuracy, unbiased pass@k, mean completion length, truncated and think-block
shares, a breakdown by column, and problems/s."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="grpokit eval", description=DESCRIPTION)
    p.add_argument("--model", required=True, help="model folder, hub id, or builtin:arithmetic")
    p.add_argument("--compare", default="", metavar="MODEL", help="a second model (e.g. after training): "
                   "both are evaluated on the same problems and a before/after table is printed")
    p.add_argument("--data", required=True, metavar="PRESET_OR_FILE",
                   help="arithmetic | gsm8k | math500 | humaneval, a .jsonl/.json/.csv/.parquet file, "
                   "a datasets folder, or a hub id")
    p.add_argument("--split", default="", help="split to score (default: the preset's test split, else all rows)")
    p.add_argument("--limit", type=int, default=0, help="score only the first N problems (0 = all)")
    p.add_argument("--heldout", action="store_true", help="score the rows training held out "
                   "(data.eval_size rows after the data.seed shuffle) instead of a split")
    p.add_argument("--out", default="", help="output folder (default: runs/eval-DATE-TIME)")
    g = p.add_argument_group("scoring")
    g.add_argument("--reward", default="", help="reward that judges a completion (correct = reward > 0)")
    g.add_argument("--n", type=int, default=1, help="completions per problem (n > 1 needs --temperature > 0)")
    g.add_argument("--k", type=int, nargs="+", default=None, help="pass@k for these k <= n (default 1, 2, 4, .., n)")
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--max-new-tokens", type=int, default=0, help="completion limit (default: the preset's, else 512)")
    g.add_argument("--by", nargs="+", default=None, metavar="COLUMN",
                   help="break results down by these columns (default: the preset's, e.g. subject level)")
    g.add_argument("--seed", type=int, default=0, help="seed of sampling (and of --heldout's shuffle)")
    g.add_argument("--batch-size", type=int, default=256, help="sequences per generate call")
    g.add_argument("--reward-workers", type=int, default=0, help="processes for scoring (code rewards)")
    g.add_argument("--device", default="auto")
    g.add_argument("--dtype", default="auto", help="auto | fp32 | bf16 | fp16")
    d = p.add_argument_group("data mapping (as data.* in a training config)")
    for name in ("prompt_field", "answer_field", "tests_field", "entry_point_field", "system_prompt",
                 "prompt_template", "subset", "data_dir"):
        d.add_argument("--" + name.replace("_", "-"), default="")
    d.add_argument("--max-prompt-tokens", type=int, default=0, help="drop (and count) longer prompts")
    d.add_argument("--chat-template-kwargs", type=json_mapping, default={}, metavar="JSON",
                   help='options for the chat template, e.g. \'{"enable_thinking": false}\' (Qwen3)')
    d.add_argument("--eval-size", type=int, default=200, help="arithmetic's held-out size, and --heldout's")
    return p


def data_config(args):
    from grpokit.config import DataConfig

    return DataConfig(
        source=args.data, eval_size=args.eval_size, seed=args.seed, subset=args.subset, data_dir=args.data_dir,
        prompt_field=args.prompt_field, answer_field=args.answer_field, tests_field=args.tests_field,
        entry_point_field=args.entry_point_field, system_prompt=args.system_prompt,
        prompt_template=args.prompt_template, max_prompt_tokens=args.max_prompt_tokens,
        chat_template_kwargs=args.chat_template_kwargs,
    )


def json_mapping(text: str) -> dict:
    """argparse type: a mapping as JSON ('{"enable_thinking": false}') or YAML flow style."""
    from grpokit.config import ConfigError, parse_json_mapping

    try:
        return parse_json_mapping(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def load_model_and_tokenizer(name: str, device: str, dtype: str, log=print):
    """(model in eval mode, tokenizer) for a folder, hub id or builtin:arithmetic."""
    from grpokit.models import loading as models

    from grpokit.models.locate import locate_model

    if not name.startswith(models.BUILTIN_PREFIX):
        locate_model(name, field="--model", flag="--model")
    if hasattr(models, "load_trained"):  # also puts a LoRA adapter back on its base
        return models.load_trained(name, device=device, dtype=dtype, log=log)
    from grpokit.config import ModelConfig

    cfg = ModelConfig(name_or_path=name, device=device, dtype=dtype)
    path = models.model_path(cfg, log=log)
    return models.load_model(path, cfg).eval(), models.load_tokenizer(path)


def choose_examples(args, cfg, tokenizer, log=print) -> list[dict]:
    from grpokit.data.records import load_eval_examples, load_examples
    from grpokit.models.locate import naming_the_model

    with naming_the_model(args.model, "--model"):
        if args.heldout:
            examples = load_examples(cfg, tokenizer, log=log)[1]
            return examples[: args.limit] if args.limit > 0 else examples
        return load_eval_examples(cfg, tokenizer, split=args.split, limit=args.limit, log=log)


def eval_settings(args, examples: list[dict]) -> dict:
    """Reward, completion limit and breakdown columns: flags first, then the preset's defaults."""
    from grpokit.data.presets import get_preset
    from grpokit.data.sources import DataError

    preset = get_preset(args.data)
    code = "test" in examples[0] or "io_cases" in examples[0]
    by = args.by if args.by is not None else [c for c in (preset.breakdown if preset else ()) if c in examples[0]]
    missing = [c for c in by if c not in examples[0]]
    if missing:
        columns = ", ".join(c for c in examples[0] if c != "prompt_ids")
        raise DataError(f"--by: no column {missing[0]!r} in the data; its columns are: {columns}")
    return {
        "reward": args.reward or (preset.reward if preset else "code" if code else "math"),
        "max_new_tokens": args.max_new_tokens or (preset.max_new_tokens if preset else 512),
        "by": by,
    }


def evaluate_model(name: str, args, examples: list[dict], settings: dict, tokenizer=None, model=None, log=print):
    from grpokit.data.chat import describe_ids, stop_token_ids
    from grpokit.eval.evaluate import evaluate_examples

    if model is None:
        from grpokit.data.records import encode_examples
        from grpokit.models.locate import naming_the_model

        model, tokenizer = load_model_and_tokenizer(name, args.device, args.dtype, log=log)
        with naming_the_model(name, "--compare"):
            encode_examples(examples, tokenizer, args.chat_template_kwargs, args.data)
    log(f"{name}: a completion ends at any of {describe_ids(tokenizer, stop_token_ids(tokenizer, model))}")
    result = evaluate_examples(
        model, tokenizer, examples, settings["reward"], max_new_tokens=settings["max_new_tokens"], n=args.n,
        ks=args.k, by=settings["by"], batch_size=args.batch_size, reward_workers=args.reward_workers,
        seed=args.seed, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
    )
    result.summary = {
        "model": name, "data": args.data, "split": args.split or ("heldout" if args.heldout else "default"),
        "reward": settings["reward"], "max_new_tokens": settings["max_new_tokens"],
        "temperature": args.temperature, "top_p": args.top_p, "top_k": args.top_k, "seed": args.seed,
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


def run(args, log=print) -> dict:
    """Evaluate (and compare); write the files; return {'before': summary, 'after': summary?}."""
    out = Path(args.out or f"runs/eval-{datetime.now():%Y%m%d-%H%M%S}")
    model, tokenizer = load_model_and_tokenizer(args.model, args.device, args.dtype, log=log)
    examples = choose_examples(args, data_config(args), tokenizer, log=log)
    settings = eval_settings(args, examples)
    first = evaluate_model(args.model, args, examples, settings, tokenizer, model, log=log)
    del model
    if not args.compare:
        paths = first.write(out)
        log(format_report(first.summary))
        log(throughput_line(first.summary))
        log(f"wrote {paths[0]} and {paths[1]}")
        return {"before": first.summary}
    fresh = [{k: v for k, v in ex.items() if k != "prompt_ids"} for ex in examples]  # its own tokenizer
    second = evaluate_model(args.compare, args, fresh, settings, log=log)
    first.write(out / "before")
    second.write(out / "after")
    rows = comparison(first.summary, second.summary)
    (out / "comparison.json").write_text(json.dumps(
        {"before": args.model, "after": args.compare, "rows": rows}, indent=2) + "\n")
    log(f"before: {args.model}\nafter:  {args.compare}\n"
        f"{first.summary['problems']} problems of {args.data}, reward {settings['reward']}")
    log(format_comparison(rows))
    log(f"before {throughput_line(first.summary)}\nafter  {throughput_line(second.summary)}")
    log(f"wrote {out}/before/, {out}/after/ (results.json, samples.jsonl) and {out}/comparison.json")
    return {"before": first.summary, "after": second.summary}


def main(argv: list[str]) -> int:
    from grpokit.config import ConfigError
    from grpokit.rewards import RewardError

    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (ConfigError, RewardError, ValueError, OSError) as exc:
        print(f"grpokit eval: error: {exc}", file=sys.stderr)
        return 2
    return 0
