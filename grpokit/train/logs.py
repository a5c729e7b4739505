"""Metric sinks: metrics.jsonl (one object per step), TensorBoard when installed, a PNG plot,
and rollouts.jsonl (what was sampled and how it scored; its format: ROLLOUTS_FORMAT below).
Only rank 0 writes; what it writes describes the global batch (the trainer gathers it)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from grpokit.rewards.scorer import ScoreResult


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_lines(path: Path, keep: int) -> None:
    """Keep the first `keep` lines of a file (used on resume: rows written after the
    checkpoint belong to the interrupted run and are written again)."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)[:keep]
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(lines))
    os.replace(tmp, path)


class NullLog:
    """What ranks other than 0 log to: nothing."""

    rows: list = []

    def write(self, row: dict, rollout: dict | None = None) -> None:
        return None

    def line_counts(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        return None


class MetricsLog:
    def __init__(self, out_dir: Path, *, tensorboard: bool = True, rollouts: bool = False):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / "metrics.jsonl"
        self.rows: list[dict] = []
        self._file = open(self.path, "a", encoding="utf-8")
        self._rollouts = open(self.out_dir / "rollouts.jsonl", "a", encoding="utf-8") if rollouts else None
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.out_dir / "tensorboard"))
            except ImportError:  # tensorboard is optional
                self._tb = None

    def write(self, row: dict, rollout: dict | None = None) -> None:
        self.rows.append(row)
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._rollouts is not None and rollout:
            self._rollouts.write(json.dumps({"step": row["step"], **rollout}) + "\n")
            self._rollouts.flush()
        if self._tb is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(key, value, row["step"])

    def line_counts(self) -> dict[str, int]:
        """Lines written so far per file, stored in checkpoints."""
        names = ["metrics.jsonl"] + (["rollouts.jsonl"] if self._rollouts is not None else [])
        return {n: len((self.out_dir / n).read_text().splitlines()) for n in names}

    def all_rows(self) -> list[dict]:
        """Every row of the run, including those written before a resume."""
        return read_jsonl(self.path)

    def close(self) -> None:
        self._file.close()
        if self._rollouts is not None:
            self._rollouts.close()
        if self._tb is not None:
            self._tb.close()


# ----------------------------------------------------------------------------- rollouts.jsonl

ROLLOUTS_FORMAT = """The rollouts log (rollouts.jsonl): one JSON object per training step, written by the trainer
(rank 0's share of the step's prompts) and read by `grpokit view`.

Per step, with P prompts and G completions each (B = P * G rows; row b belongs to prompt b // G):

    step          int               the step, as in metrics.jsonl (1 = the first update)
    group_size    int               G
    indices       [P] int           prompt index in the training set (stable across the run)
    prompts       [P]               the prompt as the data gave it (a string or chat messages)
    answers       [P]               the reference answer (a string; null when there is none)
    completion_ids [B][len] int     sampled token ids, EOS included when emitted
    texts         [B] str           decoded completions, special tokens removed
    rewards       [B] float|null    total reward (null: a component returned None)
    components    {name: [B]}       each reward component, float or null
    advantages    [B] float         the advantage that trained the completion
    lengths       [B] int           completion tokens (EOS counted)
    ended         [B] bool          emitted EOS; false = truncated at rollout.max_new_tokens
    logprobs      [B][len] float    log-prob of each sampled token under the sampling policy
                                    (temperature-scaled, before top-k/top-p), 4 decimals
    entropies     [B][len] float    entropy of the sampling distribution at each token, 3 decimals
    skipped_indices [*] int         algo.dynamic_sampling only: prompts sampled this step and not trained
                                    on (all rewards equal, or beyond prompts_per_step); P = groups trained on
    loss_mask     [B][len] int      multi-turn (env.name) only: 1 on the tokens the model sampled, 0 on
                                    tool results and template tokens (completion_ids then hold the
                                    whole episode after the prompt; texts hold each final answer)
    episodes      [B]               multi-turn only: messages, turns (text, tokens, tool_calls with
                                    name, arguments, output, error), final_text, stop,
                                    retokenize_mismatch (envs.base.Episode.as_dict)

Keys are only ever added; a reader must skip keys it does not know and tolerate missing ones
(older logs lack everything after `rewards`)."""


LOGPROB_DECIMALS = 4
ENTROPY_DECIMALS = 3


def _rows(values_BT, lengths: list[int], decimals: int) -> list[list[float]] | None:
    if values_BT is None:
        return None
    table = values_BT.detach().float().cpu().tolist()
    return [[round(v, decimals) for v in row[:n]] for row, n in zip(table, lengths)]


def _plain(value):
    """JSON-able as it is (str, number, chat messages) or its str()."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, dict)):
        return value
    return str(value)


def _finite(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def rollout_record(examples: list[dict], indices: list[int], rollout, texts: list[str], scored,
                   adv_B) -> dict:
    """The rollouts.jsonl line of one step (ROLLOUTS_FORMAT; `step` is added by MetricsLog.write). `rollout`: the
    step's Rollout (lengths_B, ended_B, completion_ids_BT, optional logprobs_BT/entropy_BT);
    `scored`: its ScoreResult; `adv_B`: [B] advantages of these rows."""
    lengths = [int(n) for n in rollout.lengths_B.tolist()]
    record = {
        "group_size": rollout.group_size,
        "indices": list(indices),
        "prompts": [_plain(ex.get("prompt")) for ex in examples],
        "answers": [None if ex.get("answer") is None else str(ex.get("answer")) for ex in examples],
        "completion_ids": [row[:n] for row, n in zip(rollout.completion_ids_BT.tolist(), lengths)],
        "texts": texts,
        "rewards": [_finite(x) for x in scored.total],
        "components": {k: [_finite(x) for x in v] for k, v in scored.components.items()},
        "advantages": [round(x, 6) for x in adv_B.detach().float().cpu().tolist()],
        "lengths": lengths,
        "ended": [bool(x) for x in rollout.ended_B.tolist()],
    }
    for key, values, decimals in (("logprobs", rollout.logprobs_BT, LOGPROB_DECIMALS),
                                  ("entropies", rollout.entropy_BT, ENTROPY_DECIMALS)):
        rows = _rows(values, lengths, decimals)
        if rows is not None:
            record[key] = rows
    if getattr(rollout, "episodes", None) is not None:
        record["loss_mask"] = [row[:n] for row, n in zip(rollout.loss_mask_BT.tolist(), lengths)]
        record["episodes"] = [ep.as_dict() for ep in rollout.episodes]
    return record


def merge_scores(parts: list[ScoreResult]) -> ScoreResult:
    """ScoreResults as one (every rank's of one step, in rank order; or a step's sampling rounds):
    completions concatenated, failures added. Its metrics() then describe them all."""
    names = list(parts[0].components)
    return ScoreResult(total=[x for p in parts for x in p.total],
                       components={n: [x for p in parts for x in p.components[n]] for n in names},
                       errors=[e for p in parts for e in p.errors],
                       failures={n: sum(p.failures.get(n, 0) for p in parts) for n in names})


def merge_records(parts: list[dict]) -> dict:
    """Every rank's rollout_record of one step (in rank order) as one line: per-completion and
    per-prompt lists concatenated, per-component lists too; `group_size` is the same on all."""
    merged = {}
    for key, value in parts[0].items():
        if isinstance(value, list):
            merged[key] = [x for part in parts for x in part[key]]
        elif isinstance(value, dict):
            merged[key] = {name: [x for part in parts for x in part[key][name]] for name in value}
        else:
            merged[key] = value
    return merged


def plot_run(rows: list[dict], path: Path, title: str = "GRPO") -> None:
    """Reward per step (and its moving average) with held-out accuracy on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows if "reward/total/mean" in r]
    reward = [r["reward/total/mean"] for r in rows if "reward/total/mean" in r]
    acc = [(r["step"], r["eval/accuracy"]) for r in rows if "eval/accuracy" in r]
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    ax.plot(steps, reward, color="tab:blue", alpha=0.3, label="reward (step)")
    k = max(1, len(reward) // 25)
    smooth = [sum(reward[max(0, i - k + 1) : i + 1]) / len(reward[max(0, i - k + 1) : i + 1]) for i in range(len(reward))]
    ax.plot(steps, smooth, color="tab:blue", label=f"reward ({k}-step mean)")
    ax.set_xlabel("step")
    ax.set_ylabel("mean reward", color="tab:blue")
    if acc:
        ax2 = ax.twinx()
        ax2.plot([s for s, _ in acc], [a for _, a in acc], "o-", color="tab:red", label="held-out accuracy")
        ax2.set_ylabel("held-out greedy accuracy", color="tab:red")
        ax2.set_ylim(0, 1)
    ax.set_title(title)
    fig.legend(loc="outside lower center", ncols=3, frameon=False)  # below the x-axis label, not over it
    fig.savefig(path, dpi=110)
    plt.close(fig)
