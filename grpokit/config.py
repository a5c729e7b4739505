"""One typed config for a run. Field comments are the CLI's --help.

Load order: defaults <- YAML file (--config) <- command-line overrides. Every key is checked:
a typo is an error naming the key and the nearest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from tyro.constructors import PrimitiveConstructorSpec

from grpokit.errors import ConfigError


MODEL_MODES = ("full", "lora", "qlora")
MODEL_DTYPES = ("auto", "fp32", "bf16", "fp16")
SHARDINGS = ("none", "fsdp", "fsdp_grad_op")
DEFAULT_LORA_TARGET = ("q_proj", "k_proj", "v_proj", "o_proj")


def parse_json_mapping(text: str) -> dict:
    """A mapping given on the command line as JSON ('{"math": {"wrong": -1}}') or YAML flow
    style ('{math: {wrong: -1}}'); ConfigError otherwise."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"expected a mapping such as '{{\"enable_thinking\": false}}', got {text!r}: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"expected a mapping such as '{{\"enable_thinking\": false}}', got {text!r}")
    return value


# A mapping field: YAML in a config file, JSON (or YAML flow style) after its flag.
JsonMapping = Annotated[dict, PrimitiveConstructorSpec(
    nargs=1, metavar="JSON", instance_from_str=lambda args: parse_json_mapping(args[0]),
    is_instance=lambda value: isinstance(value, dict), str_from_instance=lambda value: [yaml.safe_dump(
        value, default_flow_style=True).strip()])]


@dataclass
class ModelConfig:
    name_or_path: str = "builtin:arithmetic"  # local folder, hub id, or builtin:arithmetic (the demo's tiny model); under lora/qlora a saved adapter folder continues that adapter
    revision: str = ""  # hub branch, tag or commit to load ("" = the default branch)
    dtype: str = "auto"  # auto (bf16 on a GPU that supports it, else fp32) | fp32 | bf16 | fp16
    device: str = "auto"  # auto (cuda when present, else cpu) | cpu | cuda | cuda:N
    mode: str = "full"  # full (every weight trains) | lora (adapter on a frozen base) | qlora (adapter on a 4-bit base)
    lora_r: int = 64  # lora/qlora: adapter rank (textbook: 64)
    lora_alpha: int = 16  # lora/qlora: updates are scaled by lora_alpha / lora_r (textbook: 16)
    lora_dropout: float = 0.05  # lora/qlora: dropout on the adapter's input while training (textbook: 0.05; off in every forward when algo.mu > 1)
    lora_target: list[str] = field(default_factory=lambda: list(DEFAULT_LORA_TARGET))  # module names to adapt, or all-linear
    quant_type: str = "nf4"  # qlora: 4-bit data type of the frozen base, nf4 | fp4
    quant_compute_dtype: str = "auto"  # qlora: dtype the 4-bit matmuls run in (auto = as dtype)
    quant_double: bool = True  # qlora: quantize the quantization constants too (~0.4 bit per weight less)
    attn_implementation: str = "auto"  # auto (transformers' choice, sdpa) | eager | sdpa | flash_attention_2 | ...
    trust_remote_code: bool = False  # run modelling code shipped inside a hub repo (only for repos you trust)
    gradient_checkpointing: bool = False  # recompute activations in backward: much less memory, ~30% slower
    save_merged: bool = False  # lora/qlora: also save the base with the adapter folded in, under model/merged

    def lora_targets(self) -> str | list[str]:
        """peft's target_modules: the string "all-linear", or a list of module names."""
        targets = [self.lora_target] if isinstance(self.lora_target, str) else list(self.lora_target)
        return "all-linear" if targets == ["all-linear"] else targets

    def check(self) -> None:
        """Raise ConfigError naming the first model.* field that is wrong."""
        def need(ok: bool, name: str, msg: str):
            if not ok:
                raise ConfigError(f"model.{name}: {msg}")

        def choice(name: str, choices) -> None:
            value = getattr(self, name)
            need(value in choices, name, f"unknown value {value!r}{_did_you_mean(str(value), choices)}")

        need(isinstance(self.name_or_path, str) and self.name_or_path.strip() != "", "name_or_path",
             "must name a local folder, a hub id or builtin:arithmetic")
        choice("mode", MODEL_MODES)
        choice("dtype", MODEL_DTYPES)
        choice("quant_compute_dtype", MODEL_DTYPES)
        choice("quant_type", ("nf4", "fp4"))
        need(self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda", "mps", "xpu"), "device",
             f"expected auto, cpu, cuda or cuda:N, got {self.device!r}")
        need(isinstance(self.lora_r, int) and self.lora_r >= 1, "lora_r", f"must be an integer >= 1, got {self.lora_r!r}")
        need(self.lora_alpha > 0, "lora_alpha", f"must be > 0, got {self.lora_alpha!r}")
        need(0 <= self.lora_dropout < 1, "lora_dropout", f"must be in [0, 1), got {self.lora_dropout!r}")
        targets = self.lora_targets()
        if targets != "all-linear":
            need(len(targets) > 0 and all(isinstance(t, str) and t for t in targets), "lora_target",
                 f"expected module names such as {list(DEFAULT_LORA_TARGET)} or all-linear, got {self.lora_target!r}")
            need("all-linear" not in targets, "lora_target", "all-linear cannot be combined with module names")
        need(isinstance(self.attn_implementation, str) and self.attn_implementation != "", "attn_implementation",
             "expected auto, eager, sdpa, flash_attention_2 or another name transformers knows")


@dataclass
class DataConfig:
    source: str = "arithmetic"  # preset (arithmetic | gsm8k | math500 | humaneval), a .jsonl/.json/.csv/.parquet file, a datasets folder, or a hub id (owner/name or hub:owner/name)
    split: str = ""  # split to train on ("" = the preset's training split, or the source's only/train split)
    eval_split: str = ""  # split evaluated during training ("" = the preset's, e.g. gsm8k test; none: hold eval_size rows out of training)
    eval_size: int = 200  # held-out problems scored before and after training (and every eval_every steps); 0 = all of eval_split
    seed: int = 0  # seed of the training order and of the shuffle before holding rows out
    shuffle: bool = True  # shuffle rows (with seed) before holding eval_size of them out of the training split
    subset: str = ""  # dataset configuration name for hub datasets (e.g. main for openai/gsm8k)
    data_dir: str = ""  # folder with the presets' files ("" = $GRPOKIT_DATA, else ../shared/data beside the checkout)
    prompt_field: str = ""  # column holding the prompt ("" = the preset's, else prompt, question or problem)
    answer_field: str = ""  # column holding the reference answer ("" = the preset's, else answer when present)
    tests_field: str = ""  # column holding code tests, copied to example['test'] ("" = the preset's, else test)
    entry_point_field: str = ""  # column naming the function the tests call ("" = the preset's, else entry_point)
    system_prompt: str = ""  # system message put before every prompt ("" = none)
    prompt_template: str = ""  # user message with {prompt} and {column} filled in, e.g. "{prompt} Put the answer in \boxed{}." ("" = the prompt as is)
    chat_template_kwargs: JsonMapping = field(default_factory=dict)  # options passed to the chat template, e.g. {enable_thinking: false} (Qwen3); also used by eval and sample
    max_prompt_tokens: int = 0  # prompts longer than this (chat-templated) are dropped and counted (0 = no limit)
    curriculum: str = "none"  # none | learnability (weight by p(1-p)) | hard_first | easy_first | easy_to_hard (sorted epochs); p = pass rate per prompt
    curriculum_ema: float = 0.5  # weight of the newest group in each prompt's running pass rate
    curriculum_min_weight: float = 0.05  # sampling weight every prompt keeps, so settled prompts are re-checked


@dataclass
class RolloutConfig:
    prompts_per_step: int = 8  # P: prompts per step
    group_size: int = 16  # G: completions sampled per prompt
    max_new_tokens: int = 8  # completion length limit; a row that hits it is 'truncated'
    min_new_tokens: int = 0  # EOS is forbidden before this many tokens
    temperature: float = 1.0  # sampling temperature; log-probs use the same scaled logits
    top_p: float = 1.0  # nucleus sampling mass (1.0 = off)
    top_k: int = 0  # keep only the k most likely tokens (0 = off)
    stop_token_ids: list[int] = field(default_factory=list)  # more ids that end a completion, besides the tokenizer's EOS, every generation_config eos_token_id and the chat template's end-of-turn token (all always stop); the stop token stays in the loss


@dataclass
class RewardConfig:
    names: list[str] = field(default_factory=list)  # reward names, module:function or file.py:function (empty = the data preset's reward)
    weights: list[float] = field(default_factory=list)  # one weight per reward (empty = 1 each); the total is the weighted sum
    max_fail_share: float = 0.5  # stop the run when more than this share of a step's reward calls fail
    workers: int = 0  # worker processes for scoring (0 = in the trainer's process)
    kwargs: JsonMapping = field(default_factory=dict)  # keyword arguments per reward name, checked against its signature, e.g. {math: {wrong: -1.0}, overlong: {max_len: 512, cache_len: 128}, think_format: {opened_in_prompt: true}} (opened_in_prompt overrides grpokit's detection from the chat template)
    accuracy_reward: str = ""  # reward whose score > 0 counts as correct in evaluation ("" = the first of names)
    code_timeout: float = 5.0  # code reward: wall-clock seconds per test (each io case; each assert of check(), whose run gets this times their number)
    code_max_output_mb: float = 1.0  # code reward: cap on a run's stdout and stderr (MiB); an io case allows at least twice its expected output + 64 KiB
    code_tolerance: float = 1e-6  # code reward: error allowed on non-integer numbers of an io output, absolute or relative (integers compare exactly; 0 = equal as floats)

    def code_kwargs(self) -> dict:
        """Keyword arguments of the code reward (grpokit.rewards.code.code_reward) from this section."""
        return {"timeout": float(self.code_timeout), "max_output_bytes": int(self.code_max_output_mb * (1 << 20)),
                "tolerance": float(self.code_tolerance)}


@dataclass
class AlgoConfig:
    advantage: str = "group_zscore"  # group_mean (textbook) | group_zscore (GRPO) | rloo | batch_std
    objective: str = "ppo_clip"  # reinforce (textbook) | ppo_clip | gspo | cispo
    aggregation: str = "token_mean"  # sequence_sum (textbook) | sequence_mean (GRPO) | token_mean (DAPO) | constant (Dr. GRPO)
    eps_low: float = 0.2  # lower clip range of the ratio
    eps_high: float = 0.28  # upper clip range (DAPO clip-higher); CISPO's weight cap is 1 + eps_high
    beta: float = 0.0  # weight of the KL penalty to the reference policy (0 = no reference needed)
    kl_estimator: str = "k3"  # k1 | k2 | k3
    mu: int = 1  # optimisation passes over each batch (old log-probs are kept when > 1)
    adv_eps: float = 1e-4  # added to standard deviations before dividing
    mask_truncated: bool = False  # leave completions cut off by rollout.max_new_tokens out of the loss (DAPO's overlong filtering); they still count in their group's advantages
    skip_zero_advantage: bool = True  # do not run forward/backward on sequences whose advantage is 0 (when beta == 0)


@dataclass
class TrainConfig:
    steps: int = 600  # GRPO steps (each: one rollout batch, mu optimiser steps)
    lr: float = 2e-4  # peak learning rate of AdamW
    weight_decay: float = 0.0  # AdamW weight decay
    adam_beta1: float = 0.9
    adam_beta2: float = 0.99
    warmup_steps: int = 10  # linear warm-up of the learning rate
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    max_grad_norm: float = 1.0  # clip the gradient norm to this (0 = no clipping)
    micro_batch_size: int = 64  # sequences per forward/backward; gradients accumulate over the batch
    logprob_chunk: int = 256  # positions per chunk when computing log-softmax
    keep_freed_memory: bool = True  # single-process CPU runs: glibc malloc keeps freed blocks for reuse instead of returning them to the OS, which page-faults large tensors in anew every step (process-wide; host_memory.py)
    seed: int = 0  # seed of model sampling
    eval_every: int = 100  # greedy accuracy on the held-out set every N steps (0 = only before and after)
    save_every: int = 0  # checkpoint every N steps (0 = only at the end and when stopped by a signal)
    keep_last: int = 2  # checkpoints kept; older ones are deleted after a new one commits
    resume: str = ""  # "auto" = newest complete checkpoint in output_dir, or a checkpoint folder
    allow_config_change: bool = False  # resume even when the config or data differ from the checkpoint's
    stop_at_step: int = 0  # checkpoint and stop after this step (for time-sliced jobs; 0 = run to the end)
    max_nonfinite_steps: int = 3  # stop when this many steps in a row have a non-finite loss or gradient
    dist_timeout_s: float = 600.0  # with several processes: how long a collective waits for a missing rank
    sharding: str = "none"  # with several processes, model.mode full: none (a full replica per process) | fsdp (FSDP2: weights, grads, AdamW moments sharded; ZeRO-3 layout) | fsdp_grad_op (as fsdp, but weights stay gathered from forward to backward; ZeRO-2 layout). With 1 process: a plain replica


@dataclass
class LogConfig:
    progress: bool = True  # show a progress bar with the live reward
    tensorboard: bool = True  # write TensorBoard scalars when tensorboard is installed
    plot: bool = True  # write plot.png of reward and accuracy over steps
    rollouts: bool = True  # write rollouts.jsonl, what `grpokit view` shows: per completion its prompt, token ids, text, per-token log-probs, rewards per component, advantage (format: logs.ROLLOUTS_FORMAT; ~14 KB and +0.2% time per demo step)


@dataclass
class Config:
    output_dir: str = ""  # where metrics.jsonl, summary.json, plot.png and the model go ("" = runs/DATE-TIME)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)


def _did_you_mean(key: str, choices) -> str:
    near = difflib.get_close_matches(key, list(choices), n=1, cutoff=0.5)
    return f"; did you mean {near[0]!r}?" if near else f" (valid: {', '.join(choices)})"


def from_dict(cls, data: dict[str, Any], where: str = ""):
    """Build a (nested) config dataclass from a plain dict, refusing unknown keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            raise ConfigError(f"unknown config key {path!r}{_did_you_mean(key, fields)}")
        default = getattr(cls(), key)
        kwargs[key] = from_dict(type(default), value, path) if dataclasses.is_dataclass(default) else value
    return cls(**kwargs)


def load_yaml(path: str | Path) -> Config:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    try:
        return from_dict(Config, data)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from exc


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


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


def validate(cfg: Config) -> Config:
    """Every check that needs no model or data file; raises ConfigError naming the field."""
    from grpokit.algo import ADVANTAGES, AGGREGATIONS, KL_ESTIMATORS, OBJECTIVES
    from grpokit.registry import unknown_name_message

    def need(ok: bool, field_name: str, msg: str):
        if not ok:
            raise ConfigError(f"{field_name}: {msg}")

    for name, registry, value in [
        ("algo.advantage", ADVANTAGES, cfg.algo.advantage),
        ("algo.objective", OBJECTIVES, cfg.algo.objective),
        ("algo.aggregation", AGGREGATIONS, cfg.algo.aggregation),
        ("algo.kl_estimator", KL_ESTIMATORS, cfg.algo.kl_estimator),
    ]:
        need(value in registry, name, unknown_name_message(registry.kind, value, list(registry)))
    r, a, t = cfg.rollout, cfg.algo, cfg.train
    need(r.group_size >= 2, "rollout.group_size", f"must be >= 2 (a group baseline needs two samples), got {r.group_size}")
    need(r.prompts_per_step >= 1, "rollout.prompts_per_step", f"must be >= 1, got {r.prompts_per_step}")
    need(r.max_new_tokens >= 1, "rollout.max_new_tokens", f"must be >= 1, got {r.max_new_tokens}")
    need(0 <= r.min_new_tokens <= r.max_new_tokens, "rollout.min_new_tokens", "must be between 0 and max_new_tokens")
    need(r.temperature > 0, "rollout.temperature", f"must be > 0 for training (got {r.temperature}); greedy is for eval")
    need(0 < r.top_p <= 1, "rollout.top_p", f"must be in (0, 1], got {r.top_p}")
    need(r.top_k >= 0, "rollout.top_k", f"must be >= 0, got {r.top_k}")
    if not cfg.reward.names:
        from grpokit.data.presets import get_preset

        preset = get_preset(cfg.data.source)
        need(preset is not None, "reward.names", f"at least one reward is needed (data.source {cfg.data.source!r} "
             "is not a preset, so there is no default)")
        cfg.reward.names = [preset.reward]
    if not cfg.reward.weights:
        cfg.reward.weights = [1.0] * len(cfg.reward.names)
    need(len(cfg.reward.names) == len(cfg.reward.weights), "reward.weights",
         f"{len(cfg.reward.weights)} weights for {len(cfg.reward.names)} rewards")
    need(0 <= cfg.reward.max_fail_share <= 1, "reward.max_fail_share", "must be in [0, 1]")
    _check_code_reward(cfg.reward, need)
    need(isinstance(cfg.reward.kwargs, dict) and all(isinstance(v, dict) for v in cfg.reward.kwargs.values()),
         "reward.kwargs", f"expected a mapping of reward name to its keyword arguments, e.g. "
         f"{{math: {{wrong: -1.0}}}}, got {cfg.reward.kwargs!r:.80}")
    need(isinstance(cfg.data.chat_template_kwargs, dict), "data.chat_template_kwargs",
         f"expected a mapping such as {{enable_thinking: false}}, got {cfg.data.chat_template_kwargs!r:.80}")
    need(all(isinstance(i, int) and i >= 0 for i in r.stop_token_ids), "rollout.stop_token_ids",
         f"expected token ids (integers >= 0), got {r.stop_token_ids!r}")
    need(a.mu >= 1, "algo.mu", f"must be >= 1, got {a.mu}")
    need(a.beta >= 0, "algo.beta", f"must be >= 0, got {a.beta}")
    need(a.eps_low >= 0 and a.eps_high >= 0, "algo.eps_low/eps_high", "must be >= 0")
    need(t.steps >= 0, "train.steps", f"must be >= 0, got {t.steps}")
    need(t.lr > 0, "train.lr", f"must be > 0, got {t.lr}")
    need(t.micro_batch_size >= 1, "train.micro_batch_size", f"must be >= 1, got {t.micro_batch_size}")
    need(t.warmup_steps >= 0, "train.warmup_steps", "must be >= 0")
    need(t.save_every >= 0, "train.save_every", "must be >= 0")
    need(t.keep_last >= 1, "train.keep_last", f"must be >= 1, got {t.keep_last}")
    need(t.max_nonfinite_steps >= 1, "train.max_nonfinite_steps", "must be >= 1")
    need(0 <= t.min_lr_ratio <= 1, "train.min_lr_ratio", "must be in [0, 1]")
    need(t.sharding in SHARDINGS, "train.sharding",
         f"unknown value {t.sharding!r}{_did_you_mean(str(t.sharding), SHARDINGS)}")
    if t.sharding != "none":
        need(cfg.model.mode == "full", "train.sharding",
             f"{t.sharding} shards full fine-tuning; model.mode {cfg.model.mode!r} trains a small adapter, whose "
             "replica fits every GPU: use train.sharding none")
    cfg.model.check()
    return cfg
