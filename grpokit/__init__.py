"""grpokit: GRPO on verifiable rewards.

The public API, importable from the top level (each name loads its module on first use, so
`import grpokit` stays cheap):

    Config, load_yaml, validate          the typed config of a training run (grpokit.config)
    GrpokitError, ConfigError, DataError, RewardError, CheckpointError
                                         the errors grpokit raises on purpose (grpokit.errors)
    run_training                         a whole run: load, train, evaluate, save (grpokit.train.run)
    Trainer                              one GRPO step at a time (grpokit.train.trainer)
    Rollout, generate                    sampling G completions per prompt (grpokit.rollout)
    RewardScorer, register_reward        rewards (grpokit.rewards)
    evaluate_examples, pass_at_k         evaluation (grpokit.eval)
    load_trained                         a saved model (full, adapter or merged) back for use
    Sandbox, Limits                      running untrusted code (grpokit.sandbox)
    __version__                          the package's version

docs/design.md describes the layout: one folder per stage of a step, each importing only the
layers below it.
"""

from __future__ import annotations

import importlib

from grpokit.version import __version__

_PUBLIC = {
    "Config": "grpokit.config",
    "load_yaml": "grpokit.config",
    "validate": "grpokit.config",
    "GrpokitError": "grpokit.errors",
    "ConfigError": "grpokit.errors",
    "DataError": "grpokit.errors",
    "RewardError": "grpokit.errors",
    "CheckpointError": "grpokit.errors",
    "run_training": "grpokit.train.run",
    "Trainer": "grpokit.train.trainer",
    "Rollout": "grpokit.rollout.generate",
    "generate": "grpokit.rollout.generate",
    "RewardScorer": "grpokit.rewards",
    "register_reward": "grpokit.rewards",
    "evaluate_examples": "grpokit.eval.evaluate",
    "pass_at_k": "grpokit.eval.evaluate",
    "load_trained": "grpokit.models.loading",
    "Sandbox": "grpokit.sandbox",
    "Limits": "grpokit.sandbox",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'grpokit' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value
