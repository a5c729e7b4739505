"""Reading a run folder for the viewer: metrics as columns, a table of every group of every
step (cheap: enough for the run-wide views), and whole steps of the rollouts log on demand.

The rollouts log is scanned once: each line's byte offset is kept so a step can be read again
without holding the file in memory (the server reads steps this way)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from grpokit.data.sources import read_jsonl
from grpokit.errors import DataError

# metrics.jsonl keys that hold alerts (issue-raised warnings); either a list or one entry
ALERT_KEYS = ("alerts", "alert")


class RunFolderError(ValueError):
    """The folder is not a readable run; the message names the file (and line)."""


def _finite(value):
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) else None
    return None


def _alert_text(entry) -> str:
    if isinstance(entry, dict):
        parts = [str(entry.get(k)) for k in ("name", "kind", "message", "text", "fix") if entry.get(k)]
        return " - ".join(parts) or json.dumps(entry)
    return str(entry)


def _read_jsonl(path: Path) -> list[dict]:
    """The objects of a run's JSONL file, each with an integer `step`; RunFolderError names the line."""
    try:
        rows = read_jsonl(path)
    except DataError as exc:
        raise RunFolderError(str(exc)) from None
    for number, row in enumerate(rows, 1):
        if not isinstance(row.get("step"), int):
            raise RunFolderError(f"{path}: object {number} has no integer 'step' (each line must have one)")
    return rows


def metric_columns(rows: list[dict]) -> tuple[dict[str, list], list[dict]]:
    """({"step": [...], key: [...]}, alerts) from metrics rows; rows of one step are merged (the
    final evaluation is appended as a second row of the last step). Non-numbers and non-finite
    values become None; alerts are [{"step", "text"}]."""
    by_step: dict[int, dict] = {}
    alerts = []
    for row in rows:
        by_step.setdefault(row["step"], {}).update(row)
        for key in ALERT_KEYS:
            found = row.get(key)
            for entry in found if isinstance(found, list) else ([found] if found else []):
                alerts.append({"step": row["step"], "text": _alert_text(entry)})
    steps = sorted(by_step)
    keys = sorted({k for r in by_step.values() for k, v in r.items() if k != "step" and _finite(v) is not None})
    columns = {"step": steps}
    for key in keys:
        columns[key] = [_finite(by_step[s].get(key)) for s in steps]
    return columns, alerts


def _accuracy_component(config: dict, components: list[str]) -> str | None:
    reward = config.get("reward", {}) if isinstance(config, dict) else {}
    for name in [reward.get("accuracy_reward")] + list(reward.get("names") or []):
        if name and name in components:
            return name
    return components[0] if components else None


@dataclass
class RunData:
    folder: Path
    config: dict
    summary: dict
    metrics: dict[str, list]
    alerts: list[dict]
    components: list[str] = field(default_factory=list)
    accuracy_component: str | None = None
    group_size: int = 0
    groups: dict[str, list] = field(default_factory=lambda: {k: [] for k in GROUP_COLUMNS})
    prompts: dict[int, dict] = field(default_factory=dict)  # index -> {"prompt", "answer"}
    offsets: dict[int, tuple[int, int]] = field(default_factory=dict)  # step -> (byte offset, length)

    @property
    def rollouts_path(self) -> Path:
        return self.folder / "rollouts.jsonl"

    def read_step(self, step: int) -> dict:
        """The rollouts log's record of `step` (KeyError when the log has none)."""
        offset, length = self.offsets[step]
        with open(self.rollouts_path, "rb") as fh:
            fh.seek(offset)
            return json.loads(fh.read(length))


# one entry per (step, group): prompt index, mean total reward, pass share, equal rewards, truncated count
GROUP_COLUMNS = ("step", "prompt", "mean", "pass", "equal", "truncated")


def _add_groups(run: RunData, record: dict) -> None:
    G = int(record.get("group_size") or run.group_size or 1)
    run.group_size = run.group_size or G
    rewards, ended = record.get("rewards") or [], record.get("ended") or []
    passes = (record.get("components") or {}).get(run.accuracy_component) or rewards
    for p, index in enumerate(record.get("indices") or []):
        judged = [x for x in rewards[p * G:(p + 1) * G] if x is not None]
        hits = [x for x in passes[p * G:(p + 1) * G] if x is not None]
        g = run.groups
        g["step"].append(record["step"])
        g["prompt"].append(index)
        g["mean"].append(round(sum(judged) / len(judged), 6) if judged else None)
        g["pass"].append(round(sum(x > 0 for x in hits) / len(hits), 6) if hits else None)
        g["equal"].append(int(len(judged) == G and max(judged) - min(judged) == 0))
        g["truncated"].append(sum(not e for e in ended[p * G:(p + 1) * G]))
        if index not in run.prompts:
            prompts, answers = record.get("prompts") or [], record.get("answers") or []
            run.prompts[index] = {"prompt": prompts[p] if p < len(prompts) else None,
                                  "answer": answers[p] if p < len(answers) else None}


def _scan_rollouts(run: RunData) -> None:
    path = run.rollouts_path
    if not path.is_file():
        return
    offset = 0
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                try:
                    record = json.loads(line)
                    step = record["step"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise RunFolderError(f"{path}:{number}: not a rollouts record (JSON with a 'step')") from None
                if not run.components:
                    run.components = list((record.get("components") or {}).keys())
                    run.accuracy_component = _accuracy_component(run.config, run.components)
                run.offsets[step] = (offset, len(line))
                _add_groups(run, record)
            offset += len(line)


def load_run(folder: str | Path) -> RunData:
    """Read a run folder. Raises RunFolderError naming the missing or broken file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RunFolderError(f"{folder}: no such run folder")
    metrics_path = folder / "metrics.jsonl"
    if not metrics_path.is_file():
        raise RunFolderError(f"{metrics_path}: missing (a run folder holds metrics.jsonl)")
    loaded = {}
    for name in ("config.json", "summary.json"):
        path = folder / name
        try:
            loaded[name] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except json.JSONDecodeError as exc:
            raise RunFolderError(f"{path}: not JSON ({exc.msg})") from None
    columns, alerts = metric_columns(_read_jsonl(metrics_path))
    summary = loaded["summary.json"]
    for entry in summary.get("alerts") or [] if isinstance(summary, dict) else []:
        if isinstance(entry, dict) and isinstance(entry.get("step"), int):
            alert = {"step": entry["step"], "text": _alert_text(entry)}
            if alert not in alerts:  # a run records each alert in both files
                alerts.append(alert)
    run = RunData(folder, loaded["config.json"], summary, columns, alerts)
    _scan_rollouts(run)
    return run
