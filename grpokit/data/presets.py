"""Named datasets: where their files are, which columns mean what, and how to judge them.

The files live in a data folder (``data.data_dir``; by default ``$GRPOKIT_DATA``, else
``../shared/data`` beside the checkout or the working directory), laid out as in its README:
``gsm8k/{train,test}.jsonl``, ``math500/test.jsonl``, ``humaneval/HumanEval.jsonl``.
``arithmetic`` and ``arithmetic-tools`` need no files: their problems are generated
(grpokit.data.arithmetic); arithmetic-tools is a tool task (its env and model: docs/tools.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from grpokit.data.sources import DataError
from grpokit.registry import did_you_mean


def gsm8k_answer(solution: str) -> str:
    """The number after GSM8K's ``####``, without thousands separators ("2,125" -> "2125")."""
    from grpokit.rewards import extract_gold

    return extract_gold(solution).replace(",", "")


@dataclass(frozen=True)
class Preset:
    name: str
    files: dict[str, str]  # split -> path inside the data folder
    train_split: str
    eval_split: str
    prompt_field: str
    answer_field: str | None = None  # None: the records carry no answer (code tasks)
    answer_fn: Callable[[str], str] | None = None  # turns the answer column into the bare answer
    tests_field: str | None = None
    entry_point_field: str | None = None
    reward: str = "math"  # reward that judges evaluation
    max_new_tokens: int = 512  # evaluation's default completion limit
    breakdown: tuple[str, ...] = ()  # columns that evaluation reports accuracy by
    keep_answer_as: str | None = None  # column that keeps the raw answer text (GSM8K's worked solution)
    splits: tuple[str, ...] = field(default=())
    env: str = ""  # a tool task's environment (config env.name), "" = single-turn
    model: str = ""  # the model a tool task trains when model.name_or_path is left at its default
    turn_tokens: int = 0  # a tool task's env.max_turn_tokens when left at its default

    def split_names(self) -> tuple[str, ...]:
        return self.splits or tuple(self.files)


PRESETS: dict[str, Preset] = {
    "gsm8k": Preset(
        "gsm8k", {"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"}, "train", "test",
        prompt_field="question", answer_field="answer", answer_fn=gsm8k_answer, keep_answer_as="solution",
    ),
    "math500": Preset(
        "math500", {"test": "math500/test.jsonl"}, "test", "test", prompt_field="problem",
        answer_field="answer", max_new_tokens=1024, breakdown=("subject", "level"),
    ),
    "humaneval": Preset(
        "humaneval", {"test": "humaneval/HumanEval.jsonl"}, "test", "test", prompt_field="prompt",
        tests_field="test", entry_point_field="entry_point", reward="code",
    ),
    "arithmetic": Preset(
        "arithmetic", {}, "train", "eval", prompt_field="prompt", answer_field="answer",
        reward="arithmetic", max_new_tokens=8, splits=("train", "eval", "dev"),
    ),
    "arithmetic-tools": Preset(
        "arithmetic-tools", {}, "train", "eval", prompt_field="prompt", answer_field="answer",
        reward="arithmetic", max_new_tokens=40, splits=("train", "eval", "dev"), env="calculator",
        model="builtin:arithmetic-tools", turn_tokens=12,
    ),
}


def get_preset(name: str) -> Preset | None:
    return PRESETS.get(name)


def unknown_preset_message(name: str) -> str:
    return (f"data.source: unknown preset {name!r}{did_you_mean(name, PRESETS)} (presets: {', '.join(PRESETS)}; or give a "
            ".jsonl/.json/.csv/.parquet file, a datasets folder, or a hub id owner/name)")


def data_dir(configured: str = "") -> Path:
    """The folder holding the presets' files."""
    if configured:
        return Path(configured).expanduser()
    if os.environ.get("GRPOKIT_DATA"):
        return Path(os.environ["GRPOKIT_DATA"]).expanduser()
    checkout = Path(__file__).resolve().parents[1]
    for base in (checkout, Path.cwd()):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return checkout.parent / "shared" / "data"


def preset_file(preset: Preset, split: str, configured_dir: str = "") -> Path:
    if split not in preset.files:
        raise DataError(f"preset {preset.name!r} has no split {split!r} (splits: {', '.join(preset.split_names())})")
    path = data_dir(configured_dir) / preset.files[split]
    if not path.is_file():
        raise DataError(f"preset {preset.name!r}: file not found: {path} (set data.data_dir or $GRPOKIT_DATA "
                        "to the folder that holds gsm8k/, math500/ and humaneval/)")
    return path
