"""Config files: YAML over the defaults, shipped recipes by name, and back to plain dicts. Every
key is checked; a typo is an error naming the key and the nearest valid one."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from grpokit.config.sections import Config
from grpokit.errors import ConfigError
from grpokit.registry import did_you_mean


RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def shipped_recipes() -> list[str]:
    """Names of the recipes shipped inside the package (grpokit/recipes/NAME.yaml)."""
    return sorted(p.stem for p in RECIPES.glob("*.yaml"))


def config_path(name: str | Path) -> Path:
    """A config file: the path itself when it exists, else the shipped recipe of that name
    ('textbook-qwen3-8b-qlora', with or without .yaml, or as recipes/NAME.yaml, where the recipes
    lived before they moved into the package); ConfigError otherwise."""
    path = Path(name)
    if path.is_file():
        return path
    stem = path.name[: -len(".yaml")] if path.name.endswith(".yaml") else path.name
    if path.parent in (Path("."), Path("recipes")) and stem in shipped_recipes():
        return RECIPES / f"{stem}.yaml"
    recipes = shipped_recipes()
    raise ConfigError(f"config file not found: {path}{did_you_mean(stem, recipes)} "
                      f"(shipped recipes, by name: {', '.join(recipes)})")


def from_dict(cls, data: dict[str, Any], where: str = "", base=None):
    """A (nested) config dataclass: ``base`` (default: cls()) with the keys of a plain dict set,
    refusing unknown keys with the nearest valid one."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    base = cls() if base is None else base
    fields = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            raise ConfigError(f"unknown config key {path!r}{did_you_mean(key, fields)} (keys here: {', '.join(fields)})")
        current = getattr(base, key)
        kwargs[key] = from_dict(type(current), value, path, current) if dataclasses.is_dataclass(current) else value
    return dataclasses.replace(base, **kwargs)


def load_yaml(path: str | Path, cls=Config, base=None):
    """The config in a YAML file (a path, or a shipped recipe's name) over ``base`` (default:
    cls()). Raises ConfigError naming the file and the key."""
    p = config_path(path)
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    try:
        return from_dict(cls, data, base=base)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from exc


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)
