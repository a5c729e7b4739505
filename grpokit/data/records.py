"""Datasets -> prompt records (the order in which training visits them is in order.py).

A record is a plain dict: every column of the source row, plus
``prompt`` (the problem text), ``answer`` (the bare reference, when the data has one),
``test`` / ``entry_point`` (code tasks), ``system`` (an optional system prompt) and ``message``
(the user message when a prompt template is set; otherwise the user message is ``prompt``).
Code rewards read the HumanEval stub from ``prompt``, which is why a template writes ``message``
instead of overwriting it. ``prompt_ids`` caches the chat-templated token ids.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Callable

from grpokit.data.presets import Preset, get_preset, preset_file, unknown_preset_message
from grpokit.data.arithmetic import ProblemSpec, ProductSpec, split_problems
from grpokit.data.chat import PromptEncodeError, encode_example
from grpokit.data.order import check_curriculum_config
from grpokit.data.sources import DataError, classify, read_jsonl, read_source

__all__ = ["DataError", "example_prompt_ids", "load_examples", "load_eval_examples",
           "load_split", "to_examples", "user_message"]

_PROMPT_GUESSES = ("prompt", "question", "problem")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def user_message(example: dict) -> str:
    """The text sent as the user turn: the templated ``message`` if any, else ``prompt``."""
    return example.get("message") or example["prompt"]


def example_prompt_ids(tokenizer, example: dict, template_kwargs: dict | None = None) -> list[int]:
    """Chat-templated prompt ids of an example, tokenized once and cached on the record (which
    also gets ``think_opened_in_prompt``, see chat.py); template_kwargs go to the chat template
    (data.chat_template_kwargs, e.g. enable_thinking). Tokenizing once matters: templating to
    text and tokenizing again can add a second BOS (docs/design.md, pitfall 3)."""
    if "prompt_ids" not in example:
        example["prompt_ids"] = encode_example(tokenizer, example, user_message(example), template_kwargs)
    return example["prompt_ids"]


def encode_examples(examples: list[dict], tokenizer, template_kwargs: dict | None, where: str) -> None:
    """Prompt ids of every example, before any compute; PromptEncodeError names the row."""
    for i, ex in enumerate(examples, 1):
        try:
            example_prompt_ids(tokenizer, ex, template_kwargs)
        except PromptEncodeError as exc:
            raise PromptEncodeError(f"{where} row {i}: {exc}") from None


# ----------------------------------------------------------------------------- columns -> records


@dataclass(frozen=True)
class FieldMap:
    """Which source column fills which record key (None: the records get no such key)."""

    prompt: str
    answer: str | None = None
    tests: str | None = None
    entry_point: str | None = None
    answer_fn: Callable[[str], str] | None = None
    keep_answer_as: str | None = None


def field_map(cfg, preset: Preset | None, columns: list[str]) -> FieldMap:
    """Configured columns first, then the preset's, then conventional names present in the data."""
    def pick(configured: str, preset_value: str | None, guesses: tuple[str, ...], what: str):
        name = configured or preset_value
        if name:
            if name not in columns:
                raise DataError(f"data.{what}_field: no column {name!r} in the data; its columns are: "
                                f"{', '.join(columns)}")
            return name
        return next((c for c in guesses if c in columns), None)

    p = preset
    prompt = pick(cfg.prompt_field, p and p.prompt_field, _PROMPT_GUESSES, "prompt")
    if prompt is None:
        raise DataError(f"data.prompt_field: no prompt column found (looked for {', '.join(_PROMPT_GUESSES)}); "
                        f"set data.prompt_field to one of the columns: {', '.join(columns)}")
    return FieldMap(
        prompt=prompt,
        answer=pick(cfg.answer_field, p.answer_field if p else None, () if p else ("answer",), "answer"),
        tests=pick(cfg.tests_field, p and p.tests_field, () if p else ("test",), "tests"),
        entry_point=pick(cfg.entry_point_field, p and p.entry_point_field, () if p else ("entry_point",),
                         "entry_point"),
        answer_fn=p.answer_fn if p and not cfg.answer_field else None,
        keep_answer_as=p.keep_answer_as if p and not cfg.answer_field else None,
    )


def _text(row: dict, column: str, row_no: int, numbers_ok: bool = False) -> str:
    if column not in row:
        raise DataError(f"row {row_no}: no column {column!r} (this row has: {', '.join(map(str, row))})")
    value = row[column]
    if isinstance(value, str):
        return value
    if numbers_ok and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    kind = "text or a number" if numbers_ok else "text"
    raise DataError(f"row {row_no}: column {column!r} should be {kind}, got {type(value).__name__} "
                    f"({value!r:.60})")


def render_template(template: str, record: dict) -> str:
    """``{prompt}`` and ``{column}`` replaced by the record's values; other braces (LaTeX's
    ``\\boxed{}``) are left as they are, so templates need no escaping."""
    return _PLACEHOLDER.sub(lambda m: str(record[m.group(1)]) if m.group(1) in record else m.group(0), template)


def to_examples(rows: list, cfg, preset: Preset | None = None, where: str = "data") -> list[dict]:
    """Records from source rows; raises DataError naming the row (1-based) that does not fit."""
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise DataError(f"{where}: row {i} is a {type(row).__name__}, expected a mapping of columns")
    fmap = field_map(cfg, preset, list(rows[0]) if rows else [])
    template = cfg.prompt_template
    if template and not any(m.group(1) in ("prompt", *rows[0]) for m in _PLACEHOLDER.finditer(template)):
        raise DataError("data.prompt_template has no {prompt} (or {column}) placeholder, so every prompt "
                        f"would be the same text: {template!r}")
    out = []
    for i, row in enumerate(rows, 1):
        rec = dict(row)
        rec["prompt"] = _text(row, fmap.prompt, i)
        if fmap.answer:
            raw = _text(row, fmap.answer, i, numbers_ok=True)
            if not raw.strip():
                raise DataError(f"row {i}: column {fmap.answer!r} is empty; every row needs its "
                                "reference answer (drop the row or fill it in)")
            if fmap.keep_answer_as:
                rec[fmap.keep_answer_as] = raw
            rec["answer"] = fmap.answer_fn(raw) if fmap.answer_fn else raw
        if fmap.tests:
            rec["test"] = _text(row, fmap.tests, i)
        if fmap.entry_point:
            rec["entry_point"] = _text(row, fmap.entry_point, i)
        if cfg.system_prompt:
            rec["system"] = cfg.system_prompt
        if template:
            rec["message"] = render_template(template, rec)
        out.append(rec)
    return out


def drop_long_prompts(examples: list[dict], tokenizer, max_tokens: int, where: str, log=print) -> list[dict]:
    """The examples whose chat-templated prompt fits in max_tokens; the dropped count is logged."""
    if max_tokens <= 0 or not examples:
        return examples
    lengths = [len(example_prompt_ids(tokenizer, ex)) for ex in examples]
    kept = [ex for ex, n in zip(examples, lengths) if n <= max_tokens]
    dropped = len(examples) - len(kept)
    if dropped:
        log(f"data: dropped {dropped} of {len(examples)} {where} prompts longer than "
            f"data.max_prompt_tokens={max_tokens} (longest: {max(lengths)} tokens)")
    if not kept:
        raise DataError(f"data.max_prompt_tokens={max_tokens}: every one of the {len(examples)} {where} prompts "
                        f"is longer (shortest: {min(lengths)} tokens)")
    return kept


# ----------------------------------------------------------------------------- sources -> records


def validate_data_config(cfg) -> None:
    if not cfg.source:
        raise DataError("data.source: empty; give a preset, a data file, a datasets folder or a hub id")
    if cfg.eval_size < 0:
        raise DataError(f"data.eval_size: must be >= 0, got {cfg.eval_size}")
    if cfg.max_prompt_tokens < 0:
        raise DataError(f"data.max_prompt_tokens: must be >= 0 (0 = no limit), got {cfg.max_prompt_tokens}")
    check_curriculum_config(cfg)


def _preset_of(cfg) -> Preset | None:
    preset = get_preset(cfg.source)
    if preset is None and classify_or_unknown(cfg.source) == "unknown":
        raise DataError(unknown_preset_message(cfg.source))
    return preset


def classify_or_unknown(source: str) -> str:
    """classify(), but 'unknown' for a bare name that is no file, folder or hub id (a preset typo)."""
    try:
        return classify(source)
    except DataError:
        if "/" in source or "." in source or "\\" in source:
            raise
        return "unknown"


def _arithmetic_rows(cfg) -> dict[str, list[dict]]:
    spec = ProductSpec() if cfg.source == "arithmetic-tools" else ProblemSpec()
    return split_problems(spec, eval_size=cfg.eval_size)


def read_rows(cfg, split: str) -> list[dict]:
    """Raw rows of one split of the configured source ("" = a file's only split)."""
    preset = _preset_of(cfg)
    if preset is None:
        return read_source(cfg.source, split=split, subset=cfg.subset)
    if preset.name in ("arithmetic", "arithmetic-tools"):
        rows = _arithmetic_rows(cfg)
        if split not in rows:
            raise DataError(f"preset {preset.name!r} has no split {split!r} (splits: {', '.join(rows)})")
        return rows[split]
    return read_jsonl(preset_file(preset, split, cfg.data_dir))


def load_split(cfg, split: str = "", tokenizer=None, log=print) -> list[dict]:
    """Records of one split ("" = the preset's training split, or the source's only one), with
    over-long prompts dropped when a tokenizer is given and data.max_prompt_tokens is set."""
    validate_data_config(cfg)
    preset = _preset_of(cfg)
    split = split or (preset.train_split if preset else "")
    where = f"{cfg.source}{f' ({split})' if split else ''}"
    rows = read_rows(cfg, split)
    if not rows:
        raise DataError(f"{where}: the dataset is empty (no rows)")
    examples = to_examples(rows, cfg, preset, where)
    if tokenizer is not None:
        encode_examples(examples, tokenizer, cfg.chat_template_kwargs, where)
        examples = drop_long_prompts(examples, tokenizer, cfg.max_prompt_tokens, where, log)
    return examples


def _eval_split(cfg, train_split: str) -> str:
    """The split evaluation reads ('' = hold examples out of the training split, as data.eval_split
    none asks)."""
    preset = _preset_of(cfg)
    name = cfg.eval_split or (preset.eval_split if preset else "")
    return "" if name in ("none", train_split) else name


def load_examples(cfg, tokenizer, *, log=print) -> tuple[list[dict], list[dict]]:
    """(train examples, held-out eval examples) for the configured source.

    With a separate eval split (a preset's test split, or data.eval_split) the eval set is its
    first data.eval_size rows (0 = all) in file order. Otherwise data.eval_size rows are held out
    of the training rows after a shuffle with data.seed (data.shuffle=False keeps file order)."""
    preset = _preset_of(cfg)
    train_split = cfg.split or (preset.train_split if preset else "")
    train = load_split(cfg, train_split, tokenizer, log)
    eval_split = _eval_split(cfg, train_split)
    if eval_split:
        evals = load_split(cfg, eval_split, tokenizer, log)
        return train, evals[: cfg.eval_size or None]
    if cfg.shuffle:
        random.Random(cfg.seed).shuffle(train)
    if cfg.eval_size >= len(train):
        raise DataError(f"data.eval_size={cfg.eval_size} holds out all {len(train)} examples of "
                        f"{cfg.source}, leaving none to train on")
    return train[cfg.eval_size:], train[: cfg.eval_size]


def load_eval_examples(cfg, tokenizer=None, *, split: str = "", limit: int = 0, log=print) -> list[dict]:
    """What `grpokit eval` scores: the given split, else the source's eval split when it has one
    apart from training (GSM8K test, arithmetic's held-out problems), else the whole source;
    the first ``limit`` of them when limit > 0."""
    preset = _preset_of(cfg)
    if not split:
        split = _eval_split(cfg, cfg.split or (preset.train_split if preset else "")) or cfg.split
    examples = load_split(cfg, split, tokenizer, log)
    return examples[:limit] if limit > 0 else examples
