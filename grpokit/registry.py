"""One tiny registry type shared by every kind of pluggable math (advantages, losses, ...), and
the package's only did-you-mean: every "unknown name" error (config keys and values, presets,
curricula, rewards, commands, recipes) suggests the nearest valid name through did_you_mean()."""

from __future__ import annotations

import difflib
from typing import Callable, Iterable, TypeVar

F = TypeVar("F", bound=Callable)


class Registry(dict):
    """A name -> function table whose lookup errors list the choices and the nearest one."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[F], F]:
        def add(fn: F) -> F:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self[name] = fn
            return fn

        return add

    def get_fn(self, name: str) -> Callable:
        if name not in self:
            raise ValueError(unknown_name_message(self.kind, name, list(self)))
        return self[name]


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the choice nearest to ``name`` (difflib's similarity ratio
    >= 0.6), or ``""`` when none is that near."""
    near = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {near[0]!r}?" if near else ""


def unknown_name_message(kind: str, name: str, choices: Iterable[str]) -> str:
    """``unknown KIND 'name'; did you mean 'x'? (choices: a, b, c)``."""
    choices = list(choices)
    return f"unknown {kind} {name!r}{did_you_mean(name, choices)} (choices: {', '.join(sorted(choices))})"
