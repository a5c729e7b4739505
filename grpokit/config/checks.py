"""Validation: validate() returns a checked copy of a Config, with derived defaults filled in;
every problem is a ConfigError naming the field."""

from __future__ import annotations

import copy

import dataclasses

from grpokit.config.sections import (SHARDINGS, Config, EnvConfig, ModelConfig, RewardConfig, RolloutConfig,
                                     _choice, _need)
from grpokit.errors import ConfigError
from grpokit.registry import unknown_name_message


def check_whole_groups(prompts_per_step: int, world: int) -> None:
    """Every process takes whole groups: the prompts of a step must split evenly over processes."""
    if prompts_per_step % world:
        raise ConfigError(f"rollout.prompts_per_step: {prompts_per_step} prompts cannot be split over {world} "
                          f"processes in whole groups; use a multiple of {world}")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _check_code_reward(rc: RewardConfig, need) -> None:
    need(_number(rc.code_timeout) and 0 < rc.code_timeout <= 3600, "reward.code_timeout",
         f"must be seconds in (0, 3600], got {rc.code_timeout!r}")
    need(_number(rc.code_max_output_mb) and 1 / 1024 <= rc.code_max_output_mb <= 1024, "reward.code_max_output_mb",
         f"must be MiB in [1/1024, 1024], got {rc.code_max_output_mb!r}")
    need(_number(rc.code_tolerance) and 0 <= rc.code_tolerance < 1, "reward.code_tolerance",
         f"must be in [0, 1), got {rc.code_tolerance!r}")


def check_sampling(r: RolloutConfig, *, training: bool) -> None:
    """The rollout fields every command samples with. Training needs groups (G >= 2) and a
    temperature > 0; eval and sample take G >= 1, and temperature 0 (greedy) when G == 1."""
    if training:
        _need(r.group_size >= 2, "rollout.group_size",
              f"must be >= 2 (a group baseline needs two samples), got {r.group_size}")
        _need(r.temperature > 0, "rollout.temperature",
              f"must be > 0 for training (got {r.temperature}); greedy is for eval")
    else:
        _need(r.group_size >= 1, "rollout.group_size", f"must be >= 1, got {r.group_size}")
        _need(r.temperature >= 0, "rollout.temperature", f"must be >= 0 (0 = greedy), got {r.temperature}")
        _need(r.group_size == 1 or r.temperature > 0, "rollout.group_size",
              f"{r.group_size} completions per prompt need rollout.temperature > 0 (greedy gives one answer)")
    _need(r.max_new_tokens >= 1, "rollout.max_new_tokens", f"must be >= 1, got {r.max_new_tokens}")
    _need(0 <= r.min_new_tokens <= r.max_new_tokens, "rollout.min_new_tokens", "must be between 0 and max_new_tokens")
    _need(0 < r.top_p <= 1, "rollout.top_p", f"must be in (0, 1], got {r.top_p}")
    _need(r.top_k >= 0, "rollout.top_k", f"must be >= 0, got {r.top_k}")


def with_reward_defaults(reward: RewardConfig, source: str) -> RewardConfig:
    """A copy of ``reward`` with its defaults filled in: the preset's reward when no name is
    given, weight 1 for each reward when no weight is given."""
    from grpokit.data.presets import get_preset

    names, weights = list(reward.names), list(reward.weights)
    if not names:
        preset = get_preset(source)
        _need(preset is not None, "reward.names", f"at least one reward is needed (data.source {source!r} "
              "is not a preset, so there is no default)")
        names = [preset.reward]
    return dataclasses.replace(reward, names=names, weights=weights or [1.0] * len(names))


def validate(cfg: Config) -> Config:
    """A checked copy of a training config with its derived defaults filled in (reward names from
    the data preset, weights); ``cfg`` itself is left unchanged. Every check here needs no model
    or data file; the first problem raises ConfigError naming the field."""
    from grpokit.algo import ADVANTAGES, AGGREGATIONS, KL_ESTIMATORS, OBJECTIVES

    for name, registry in [("algo.advantage", ADVANTAGES), ("algo.objective", OBJECTIVES),
                           ("algo.aggregation", AGGREGATIONS), ("algo.kl_estimator", KL_ESTIMATORS)]:
        value = getattr(cfg.algo, name.split(".")[1])
        _need(value in registry, name, unknown_name_message(registry.kind, value, registry))
    r = cfg.rollout
    check_sampling(r, training=True)
    _need(r.prompts_per_step >= 1, "rollout.prompts_per_step", f"must be >= 1, got {r.prompts_per_step}")
    _need(all(isinstance(i, int) and i >= 0 for i in r.stop_token_ids), "rollout.stop_token_ids",
          f"expected token ids (integers >= 0), got {r.stop_token_ids!r}")
    out = copy.deepcopy(cfg)
    out.reward = with_reward_defaults(cfg.reward, cfg.data.source)
    _need(len(out.reward.names) == len(out.reward.weights), "reward.weights",
          f"{len(out.reward.weights)} weights for {len(out.reward.names)} rewards")
    _check_reward_options(cfg)
    _check_algo_and_train(cfg)
    _check_doctor_and_alerts(cfg)
    cfg.model.check()
    _check_env(cfg.env)
    return with_preset_env(out)


def _check_env(e: EnvConfig) -> None:
    _need(isinstance(e.name, str), "env.name", f"expected a name, got {e.name!r}")
    _need(isinstance(e.max_turns, int) and e.max_turns >= 1, "env.max_turns", f"must be >= 1, got {e.max_turns!r}")
    _need(isinstance(e.max_turn_tokens, int) and e.max_turn_tokens >= 0, "env.max_turn_tokens",
          f"must be >= 0 (0 = rollout.max_new_tokens), got {e.max_turn_tokens!r}")
    _need(_number(e.tool_timeout) and 0 < e.tool_timeout <= 3600, "env.tool_timeout",
          f"must be seconds in (0, 3600], got {e.tool_timeout!r}")


def with_preset_env(cfg: Config) -> Config:
    """A data preset that is a tool task (arithmetic-tools) brings its environment when env.name
    is empty, and then, for each of these left at its default: its built-in model, its episode
    budget (rollout.max_new_tokens) and its tokens per turn (env.max_turn_tokens)."""
    from grpokit.data.presets import get_preset

    preset = get_preset(cfg.data.source)
    if preset is not None and preset.env and not cfg.env.name:
        cfg.env.name = preset.env
        if preset.model and cfg.model.name_or_path == ModelConfig.name_or_path:
            cfg.model.name_or_path = preset.model
        if cfg.rollout.max_new_tokens == RolloutConfig.max_new_tokens:
            cfg.rollout.max_new_tokens = preset.max_new_tokens
        if not cfg.env.max_turn_tokens:
            cfg.env.max_turn_tokens = preset.turn_tokens
    return cfg


def _check_reward_options(cfg: Config) -> None:
    rc = cfg.reward
    _need(0 <= rc.max_fail_share <= 1, "reward.max_fail_share", "must be in [0, 1]")
    _check_code_reward(rc, _need)
    _need(isinstance(rc.kwargs, dict) and all(isinstance(v, dict) for v in rc.kwargs.values()),
          "reward.kwargs", f"expected a mapping of reward name to its keyword arguments, e.g. "
          f"{{math: {{wrong: -1.0}}}}, got {rc.kwargs!r:.80}")
    _need(isinstance(cfg.data.chat_template_kwargs, dict), "data.chat_template_kwargs",
          f"expected a mapping such as {{enable_thinking: false}}, got {cfg.data.chat_template_kwargs!r:.80}")


def _check_algo_and_train(cfg: Config) -> None:
    a, t = cfg.algo, cfg.train
    _need(a.mu >= 1, "algo.mu", f"must be >= 1, got {a.mu}")
    _need(a.beta >= 0, "algo.beta", f"must be >= 0, got {a.beta}")
    _need(a.eps_low >= 0 and a.eps_high >= 0, "algo.eps_low/eps_high", "must be >= 0")
    _need(isinstance(a.dynamic_sampling_max_rounds, int) and a.dynamic_sampling_max_rounds >= 0,
          "algo.dynamic_sampling_max_rounds", f"must be an integer >= 0, got {a.dynamic_sampling_max_rounds!r}")
    _need(t.steps >= 0, "train.steps", f"must be >= 0, got {t.steps}")
    _need(t.lr > 0, "train.lr", f"must be > 0, got {t.lr}")
    _need(t.micro_batch_size >= 1, "train.micro_batch_size", f"must be >= 1, got {t.micro_batch_size}")
    _need(t.warmup_steps >= 0, "train.warmup_steps", "must be >= 0")
    _need(t.save_every >= 0, "train.save_every", "must be >= 0")
    _need(t.keep_last >= 1, "train.keep_last", f"must be >= 1, got {t.keep_last}")
    _need(t.max_nonfinite_steps >= 1, "train.max_nonfinite_steps", "must be >= 1")
    _need(0 <= t.min_lr_ratio <= 1, "train.min_lr_ratio", "must be in [0, 1]")
    _choice("train.sharding", t.sharding, SHARDINGS)
    if t.sharding != "none":
        _need(cfg.model.mode == "full", "train.sharding",
              f"{t.sharding} shards full fine-tuning; model.mode {cfg.model.mode!r} trains a small adapter, whose "
              "replica fits every GPU: use train.sharding none")


def _check_doctor_and_alerts(cfg: Config) -> None:
    d, a = cfg.doctor, cfg.alerts
    _need(d.prompts >= 1, "doctor.prompts", f"must be >= 1, got {d.prompts}")
    _need(d.preflight_prompts >= 1, "doctor.preflight_prompts", f"must be >= 1, got {d.preflight_prompts}")
    _need(_number(d.memory_limit_gib) and d.memory_limit_gib >= 0, "doctor.memory_limit_gib",
          f"must be GiB >= 0 (0 = no limit), got {d.memory_limit_gib!r}")
    for name in ("truncated_fail", "truncated_warn", "equal_groups_warn", "none_fail", "none_warn"):
        _need(_number(getattr(d, name)) and 0 <= getattr(d, name) <= 1, f"doctor.{name}",
              f"must be a share in [0, 1], got {getattr(d, name)!r}")
    for name in ("zero_std_share", "truncated_share", "entropy_ratio", "max_clipped_share"):
        _need(_number(getattr(a, name)) and 0 <= getattr(a, name) <= 1, f"alerts.{name}",
              f"must be a share in [0, 1], got {getattr(a, name)!r}")
    for name in ("zero_std_steps", "truncated_steps", "entropy_steps", "flat_steps", "rearm_steps"):
        _need(isinstance(getattr(a, name), int) and getattr(a, name) >= 1, f"alerts.{name}", "must be an integer >= 1")
    _need(_number(a.flat_delta) and a.flat_delta >= 0, "alerts.flat_delta", "must be >= 0 (0 = off)")
    _need(_number(a.max_kl) and a.max_kl > 0, "alerts.max_kl", f"must be > 0, got {a.max_kl!r}")
