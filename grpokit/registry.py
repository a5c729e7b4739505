"""One tiny registry type shared by every kind of pluggable math (advantages, losses, ...)."""

from __future__ import annotations

import difflib
from typing import Callable, TypeVar

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


def unknown_name_message(kind: str, name: str, choices: list[str]) -> str:
    near = difflib.get_close_matches(name, choices, n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    return f"unknown {kind} {name!r}{hint} (choices: {', '.join(sorted(choices))})"
