"""Starting a LoRA run from a saved adapter folder: the run continues that adapter.

`model.name_or_path` may name a folder holding `adapter_config.json` (a LoRA/QLoRA run's saved
`model/`, or any peft LoRA adapter). Under `model.mode lora` or `qlora` the run then loads the
adapter's base (`base_model_name_or_path`), puts the adapter back on it with its weights and its
own settings (rank, alpha, dropout, target modules), and trains it further; the adapter it saves
points at the same base. Clear errors (ConfigError naming the field) where continuing cannot be
what was meant:

* `model.mode full`: training every weight of the base would drop the adapter. Continue it with
  `model.mode lora`, or fully fine-tune the merged model (`model/merged`, `model.save_merged`).
* a `model.lora_*` field changed from its default to a value other than the adapter's: an
  adapter is continued with its own settings (a field left at its default takes the adapter's).
* an adapter of another kind than LoRA, or one naming no base, or a local base that is gone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from grpokit.config import ModelConfig
from grpokit.errors import ConfigError

ADAPTER_CONFIG = "adapter_config.json"
# ModelConfig field -> adapter_config.json key
_SETTINGS = (("lora_r", "r"), ("lora_alpha", "lora_alpha"), ("lora_dropout", "lora_dropout"),
             ("lora_target", "target_modules"))


@dataclass(frozen=True)
class AdapterStart:
    """A saved adapter a run continues: its folder, its base model, its adapter_config.json."""

    folder: Path
    base: str
    config: dict


def _comparable(field: str, value):
    if field == "lora_target":
        targets = [value] if isinstance(value, str) else list(value or [])
        return "all-linear" if targets == ["all-linear"] else frozenset(targets)
    return float(value) if value is not None else None


def _check_settings(adapter: dict, cfg: ModelConfig, where: Path) -> None:
    default = ModelConfig()
    for field, key in _SETTINGS:
        ours, theirs = _comparable(field, getattr(cfg, field)), _comparable(field, adapter.get(key))
        if ours == _comparable(field, getattr(default, field)) or ours == theirs or "all-linear" in (ours, theirs):
            continue
        raise ConfigError(
            f"model.{field}: {getattr(cfg, field)!r}, but the adapter in {where} was trained with {key} "
            f"{adapter.get(key)!r}; a run started from an adapter continues it with its own settings: leave "
            f"model.{field} at its default ({getattr(default, field)!r}) or set it to the adapter's")


def adapter_start(path: str, cfg: ModelConfig) -> AdapterStart | None:
    """None when `path` is not a folder with an adapter_config.json; else the adapter to
    continue, checked against `cfg` (module doc). Raises ConfigError naming the field."""
    file = Path(path) / ADAPTER_CONFIG
    if not file.is_file():
        return None
    try:
        adapter = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model.name_or_path: {file} is not a readable adapter config: {exc}") from exc
    if cfg.mode == "full":
        raise ConfigError(
            f"model.mode: full, but model.name_or_path {path} is a LoRA adapter; full fine-tuning of its base "
            "would drop it. Continue the adapter with model.mode lora (or qlora), or fully fine-tune the "
            f"adapter folded into its base ({Path(path) / 'merged'}, written with model.save_merged)")
    if str(adapter.get("peft_type", "")).upper() != "LORA":
        raise ConfigError(f"model.name_or_path: {file} is a {adapter.get('peft_type')!r} adapter; "
                          "grpokit continues LoRA adapters only")
    base = adapter.get("base_model_name_or_path")
    if not isinstance(base, str) or not base:
        raise ConfigError(f"model.name_or_path: {file} names no base model (base_model_name_or_path)")
    if base.startswith(("/", ".", "~")) and not Path(base).expanduser().exists():
        raise ConfigError(f"model.name_or_path: the adapter's base model {base} (from {file}) does not exist")
    _check_settings(adapter, cfg, Path(path))
    return AdapterStart(Path(path), base, adapter)


def continue_adapter(model, start: AdapterStart):
    """`model` (the adapter's base, prepared for lora/qlora) with the saved adapter on it, trainable."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(start.folder), is_trainable=True)
