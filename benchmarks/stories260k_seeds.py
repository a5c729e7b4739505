"""Run grpokit/recipes/stories260k-words.yaml for several seeds and report what it taught.

    python benchmarks/stories260k_seeds.py --model PATH/TO/stories260K [--seeds 0 1 2] [--out runs/stories260k]

For each seed (train.seed; the held-out openings stay the same): the mean story_words reward of
8 sampled stories per held-out opening before and after training, the training reward of the
first and last steps, the per-token KL to the starting model over the last 5 steps, and one
sampled story per opening before and after. Prints a markdown table; writes report.json to --out.

The margin stated in advance (README): on every seed the held-out reward rises by at least 0.25
(absolute, out of 1) while the KL at the end stays below 0.5 nats per token.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

RECIPE = Path(__file__).resolve().parent.parent / "grpokit" / "recipes" / "stories260k-words.yaml"
MARGIN, MAX_KL = 0.25, 0.5


def heldout_reward(model, tokenizer, examples: list[dict], seed: int, n: int = 8) -> tuple[float, list[str]]:
    """(mean story_words reward of n stories per opening at temperature 1, one story per opening)."""
    from grpokit.eval.evaluate import evaluate_examples

    fresh = [{k: v for k, v in ex.items() if k != "prompt_ids"} for ex in examples]
    result = evaluate_examples(model, tokenizer, fresh, "story_words", max_new_tokens=48, n=n, seed=seed,
                               temperature=1.0)
    return result.summary["reward_mean"], [row["completion"] for row in result.samples[::n]]


def run_seed(cfg_path: Path, model_path: str, seed: int, out: Path, steps: int) -> dict:
    from grpokit.config import load_yaml, validate
    from grpokit.data.records import load_examples
    from grpokit.models.loading import load_trained
    from grpokit.train.run import run_training

    cfg = load_yaml(cfg_path)
    cfg.model.name_or_path, cfg.output_dir, cfg.train.seed = model_path, str(out / f"seed{seed}"), seed
    cfg.train.steps = steps or cfg.train.steps
    cfg.log.progress = False
    validate(cfg)
    model, tok = load_trained(model_path, device="cpu", dtype="fp32", log=lambda *a: None)
    heldout = load_examples(cfg.data, tok, log=lambda *a: None)[1]
    before, stories_before = heldout_reward(model, tok, heldout, seed)
    run_training(cfg, log=lambda *a: None)
    trained, tok = load_trained(str(out / f"seed{seed}" / "model"), device="cpu", dtype="fp32", log=lambda *a: None)
    after, stories_after = heldout_reward(trained, tok, heldout, seed)
    rows = [json.loads(line) for line in (out / f"seed{seed}" / "metrics.jsonl").read_text().splitlines()]
    steps_ = [r for r in rows if "reward/total/mean" in r]
    return {
        "seed": seed, "heldout_reward_before": before, "heldout_reward_after": after,
        "train_reward_first": statistics.mean(r["reward/total/mean"] for r in steps_[:3]),
        "train_reward_last": statistics.mean(r["reward/total/mean"] for r in steps_[-3:]),
        "kl_end": statistics.mean(r["update/kl"] for r in steps_[-5:]),
        "openings": [ex["prompt"] for ex in heldout], "stories_before": stories_before, "stories_after": stories_after,
    }


def table(results: list[dict]) -> str:
    lines = ["| seed | held-out reward before | after | change | train reward first 3 / last 3 steps | KL at end |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['seed']} | {r['heldout_reward_before']:.3f} | {r['heldout_reward_after']:.3f} | "
                     f"{r['heldout_reward_after'] - r['heldout_reward_before']:+.3f} | "
                     f"{r['train_reward_first']:.3f} / {r['train_reward_last']:.3f} | {r['kl_end']:.3f} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="../shared/models/stories260K", help="the stories260K folder")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=0, help="train.steps (0 = the recipe's)")
    p.add_argument("--out", default="runs/stories260k")
    args = p.parse_args()
    out = Path(args.out)
    results = [run_seed(RECIPE, args.model, s, out, args.steps) for s in args.seeds]
    (out / "report.json").write_text(json.dumps(results, indent=2))
    print(table(results))
    first = results[0]
    for opening, b, a in list(zip(first["openings"], first["stories_before"], first["stories_after"]))[:3]:
        print(f"\n> {opening}\nbefore: {b.strip()}\nafter:  {a.strip()}")
    ok = all(r["heldout_reward_after"] - r["heldout_reward_before"] >= MARGIN and r["kl_end"] < MAX_KL
             for r in results)
    print(f"\nmargin (held-out reward +{MARGIN} on every seed, KL < {MAX_KL}): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
