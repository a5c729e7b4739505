"""Reward names, plug-ins, and the checks that turn a typo into a clear message.

A reward spec is one of:

* a built-in name from ``REWARDS`` (``"math"``, ``"think_format"``, ...);
* ``"package.module:function"``, imported like any module (``function`` may be dotted);
* ``"path/to/file.py:function"``, a user's file loaded by path (relative to the working dir).

``REWARDS`` values are functions or ``"module:function"`` strings; strings are imported only
when resolved, so ``code`` does not pull in the sandbox until a config asks for it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from typing import Callable

from grpokit.errors import RewardError
from grpokit.registry import did_you_mean

from .math_rewards import math_answer_reward, math_binary_reward
from .think import think_format_reward, think_math_reward

__all__ = ["REWARDS", "RewardError", "resolve_reward", "register_reward", "is_file_spec"]

RewardFn = Callable[[str, dict], "float | None"]


REWARDS: dict[str, str | RewardFn] = {
    "math": math_answer_reward,
    "math_binary": math_binary_reward,
    "think_format": think_format_reward,
    "think_math": think_math_reward,
    "code": "grpokit.rewards.code:code_reward",
    "arithmetic": "grpokit.data.arithmetic:arithmetic_reward",
    "overlong": "grpokit.rewards.overlong:overlong_reward",
    "story_words": "grpokit.rewards.story:story_words_reward",
}

_FILE_MODULES: dict[tuple[str, int], object] = {}


def register_reward(name: str):
    """Decorator: ``@register_reward("my_reward")`` adds a function to ``REWARDS``.

    Registration happens at import time of the defining module; worker processes see it only
    if they import that module too, so prefer ``module:function`` specs for parallel scoring.
    """
    def add(fn: RewardFn) -> RewardFn:
        if name in REWARDS and REWARDS[name] is not fn:
            raise RewardError(f"reward name {name!r} is already registered to {REWARDS[name]!r}")
        check_signature(fn, name)
        REWARDS[name] = fn
        return fn
    return add


def is_file_spec(spec: str) -> bool:
    """True for ``path/to/file.py:function`` specs."""
    module, sep, _ = spec.rpartition(":")
    return bool(sep) and (module.endswith(".py") or "/" in module or os.sep in module)


def resolve_reward(spec: str) -> RewardFn:
    """The reward function named by ``spec``, checked to take ``(completion, example)``.

    Raises ``RewardError`` naming the spec for: an unknown name (with a did-you-mean), a missing
    module or file, a module that fails to import, a missing attribute, something that is not
    callable, and a signature that cannot take two positional arguments.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise RewardError(f"a reward spec must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    if spec in REWARDS:
        target = REWARDS[spec]
        fn = _load_spec(target, spec) if isinstance(target, str) else target
    elif ":" in spec:
        fn = _load_spec(spec, spec)
    else:
        raise RewardError(_unknown_name_message(spec))
    if not callable(fn):
        raise RewardError(
            f"reward {spec!r} is a value of type {type(fn).__name__} ({fn!r:.60}), not a "
            "function; it must be callable as fn(completion: str, example: dict) -> float | None"
        )
    check_signature(fn, spec)
    return fn


def _unknown_name_message(spec: str) -> str:
    return (
        f"unknown reward {spec!r}{did_you_mean(spec, REWARDS)} (built-in rewards: {', '.join(sorted(REWARDS))}; "
        "a plug-in is 'package.module:function' or 'path/to/file.py:function')"
    )


def check_signature(fn, spec: str) -> None:
    """Raise ``RewardError`` unless ``fn(completion, example)`` is a valid call."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have no introspectable signature
        return
    try:
        signature.bind("completion", {"answer": ""})
    except TypeError as exc:
        raise RewardError(
            f"reward {spec!r} must accept (completion, example) as two positional arguments, "
            f"but its signature is {signature} ({exc})"
        ) from None


def _load_spec(target: str, spec: str):
    module_name, sep, attr_path = target.rpartition(":")
    if not sep or not module_name or not attr_path:
        raise RewardError(
            f"reward {spec!r}: expected 'module:function' or 'path/to/file.py:function'"
        )
    if is_file_spec(target):
        module = _load_file(module_name, spec)
    else:
        module = _import_module(module_name, spec)
    return _get_attribute(module, module_name, attr_path, spec)


def _import_module(module_name: str, spec: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        if module_name == missing or module_name.startswith(missing + "."):
            raise RewardError(
                f"reward {spec!r}: cannot import module {module_name!r} (no module named "
                f"{missing!r}; is it installed, or on PYTHONPATH?)"
            ) from None
        raise RewardError(
            f"reward {spec!r}: importing module {module_name!r} failed: {exc}"
        ) from exc
    except Exception as exc:
        raise RewardError(
            f"reward {spec!r}: importing module {module_name!r} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _load_file(path: str, spec: str):
    """Import a ``.py`` file by path, once per (path, modification time)."""
    full = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(full):
        raise RewardError(f"reward {spec!r}: file not found: {full}")
    key = (full, os.stat(full).st_mtime_ns)
    if key in _FILE_MODULES:
        return _FILE_MODULES[key]
    digest = hashlib.sha1(full.encode()).hexdigest()[:10]
    stem = os.path.splitext(os.path.basename(full))[0]
    name = f"grpokit_plugin_{''.join(c if c.isalnum() else '_' for c in stem)}_{digest}"
    loader_spec = importlib.util.spec_from_file_location(name, full)
    if loader_spec is None or loader_spec.loader is None:
        raise RewardError(f"reward {spec!r}: cannot load {full} as a Python module")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up here
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise RewardError(
            f"reward {spec!r}: importing {full} failed: {type(exc).__name__}: {exc}"
        ) from exc
    _FILE_MODULES[key] = module
    return module


def _get_attribute(module, module_name: str, attr_path: str, spec: str):
    obj = module
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            shown = ", ".join(n for n in names if callable(getattr(obj, n, None)))[:200]
            raise RewardError(
                f"reward {spec!r}: {module_name!r} has no function {attr_path!r}{did_you_mean(part, names)} "
                f"(it defines: {shown or 'nothing callable'})"
            )
        obj = getattr(obj, part)
    return obj


def resolvable_spec(spec: str) -> str | None:
    """A string that resolves to the same reward in a fresh process, or None if only this
    process knows the reward (a function registered at run time). File paths are made
    absolute so a worker with another working directory still finds the file."""
    spec = spec.strip()
    target = REWARDS.get(spec, spec)
    if not isinstance(target, str):
        return None
    if is_file_spec(target):
        path, _, attr = target.rpartition(":")
        return f"{os.path.abspath(os.path.expanduser(path))}:{attr}"
    return target
