"""Metric sinks: metrics.jsonl (one object per step), TensorBoard when installed, a PNG plot,
and optionally rollouts.jsonl (what was sampled and how it scored). Only rank 0 writes; what it
writes describes the global batch (the trainer gathers it)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path


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


def plot_run(rows: list[dict], path: Path, title: str = "GRPO") -> None:
    """Reward per step (and its moving average) with held-out accuracy on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows if "reward/total/mean" in r]
    reward = [r["reward/total/mean"] for r in rows if "reward/total/mean" in r]
    acc = [(r["step"], r["eval/accuracy"]) for r in rows if "eval/accuracy" in r]
    fig, ax = plt.subplots(figsize=(8, 4.5))
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
    fig.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
