"""Environments by name (config env.name): calculator, python, or module:function (a factory
called with the EnvConfig section, returning an Environment)."""

from __future__ import annotations

import importlib
from typing import Callable

from grpokit.errors import ConfigError
from grpokit.registry import unknown_name_message

from .base import Environment


def _calculator(cfg) -> Environment:
    from .calculator import calculator_environment

    return calculator_environment(cfg.tool_timeout)


def _python(cfg) -> Environment:
    from grpokit.sandbox import Limits

    from .python_tool import python_tool
    from .tools import ToolEnvironment

    return ToolEnvironment([python_tool(Limits(timeout=cfg.tool_timeout))], tool_timeout=cfg.tool_timeout)


ENVIRONMENTS: dict[str, Callable] = {"calculator": _calculator, "python": _python}


def make_environment(cfg) -> Environment:
    """The environment named by cfg.name (an EnvConfig). ConfigError for an unknown name."""
    name = cfg.name
    if name in ENVIRONMENTS:
        return ENVIRONMENTS[name](cfg)
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"env.name: cannot load {name!r}: {exc}") from None
        return factory(cfg)
    raise ConfigError("env.name: " + unknown_name_message("environment", name, list(ENVIRONMENTS) + ["module:function"]))
