"""Reading raw rows from wherever a dataset lives: a JSONL, JSON, CSV or Parquet file, a local
Hugging Face ``datasets`` folder (``save_to_disk`` output or a folder of data files), or a hub id.

A row is a plain dict of columns. Nothing here knows about prompts or answers (records.py maps
columns to records); every problem is raised as ``DataError`` with the file, line or split named.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from grpokit.errors import DataError

FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HUB_PREFIX = "hub:"


def classify(source: str) -> str:
    """'file', 'folder' or 'hub' for a non-preset source; raises DataError for a missing path."""
    if source.startswith(HUB_PREFIX):
        return "hub"
    path = Path(source).expanduser()
    if path.is_file():
        return "file"
    if path.is_dir():
        return "folder"
    if path.suffix.lower() in FILE_SUFFIXES or source.startswith(("/", ".", "~")):
        raise DataError(f"data.source: file not found: {path}")
    if _HUB_ID.match(source):
        return "hub"
    raise DataError(f"data.source: {source!r} is not a file, a folder or a hub id (owner/name)")


def read_source(source: str, split: str = "", subset: str = "") -> list[dict]:
    """Rows of a file, a datasets folder or a hub dataset (``split`` picks one split of it)."""
    kind = classify(source)
    if kind == "file":
        return read_file(Path(source).expanduser(), split=split)
    if kind == "folder":
        return read_folder(Path(source).expanduser(), split=split, subset=subset)
    return read_hub(source.removeprefix(HUB_PREFIX), split=split, subset=subset)


def read_file(path: Path, split: str = "") -> list[dict]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return read_jsonl(path)
    if suffix == ".json":
        return _read_json(path, split)
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            return [dict(row) for row in csv.DictReader(fh)]
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    raise DataError(f"data.source: {path}: unsupported file type {suffix or '(none)'!r} "
                    f"(supported: {', '.join(FILE_SUFFIXES)})")


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: line {line_no} is not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}: line {line_no} is a JSON {type(row).__name__}, expected an object")
            rows.append(row)
    return rows


def _read_json(path: Path, split: str) -> list[dict]:
    """A list of objects, or an object holding one (chosen by ``split`` when it holds several)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(data, dict):
        lists = {k: v for k, v in data.items() if isinstance(v, list)}
        if split and split in lists:
            data = lists[split]
        elif len(lists) == 1 and not split:
            data = next(iter(lists.values()))
        else:
            want = f"split {split!r}" if split else "one list of rows"
            raise DataError(f"{path}: expected a list of rows or an object with {want}; "
                            f"its lists are: {', '.join(lists) or 'none'}")
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of rows, got a JSON {type(data).__name__}")
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise DataError(f"{path}: row {i + 1} is a JSON {type(row).__name__}, expected an object")
    return data


def read_folder(path: Path, split: str = "", subset: str = "") -> list[dict]:
    """A ``save_to_disk`` folder (Dataset or DatasetDict), else a folder of data files."""
    if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
        import datasets

        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            loaded = _pick_split(loaded, split, str(path))
        return loaded.to_list()
    return read_hub(str(path), split=split, subset=subset)


def read_hub(name: str, split: str = "", subset: str = "") -> list[dict]:
    """``datasets.load_dataset(name, subset)``: a hub id, or a local folder of data files."""
    import datasets

    try:
        loaded = datasets.load_dataset(name, subset or None, split=split or None)
    except (FileNotFoundError, ValueError, ConnectionError, OSError) as exc:
        raise DataError(f"data.source: cannot load dataset {name!r}"
                        f"{f' (subset {subset!r})' if subset else ''}: {exc}") from None
    if isinstance(loaded, datasets.DatasetDict):
        loaded = _pick_split(loaded, split, name)
    return loaded.to_list()


def _pick_split(splits: dict, split: str, where: str):
    name = split or ("train" if "train" in splits else next(iter(splits)) if len(splits) == 1 else "")
    if name not in splits:
        wanted = f"has no split {split!r}" if split else "has several splits; choose one with data.split"
        raise DataError(f"{where} {wanted} (splits: {', '.join(splits)})")
    return splits[name]
