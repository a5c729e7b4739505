"""The config sections as typed dataclasses. Each field's comment is its documentation and the
CLI's --help text (one help source)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import yaml
from tyro.constructors import PrimitiveConstructorSpec

from grpokit.errors import ConfigError
from grpokit.registry import did_you_mean


MODEL_MODES = ("full", "lora", "qlora")
MODEL_DTYPES = ("auto", "fp32", "bf16", "fp16")
SHARDINGS = ("none", "fsdp", "fsdp_grad_op")
DEFAULT_LORA_TARGET = ("q_proj", "k_proj", "v_proj", "o_proj")


def _need(ok: bool, field_name: str, msg: str) -> None:
    if not ok:
        raise ConfigError(f"{field_name}: {msg}")


def _choice(field_name: str, value, choices) -> None:
    _need(value in choices, field_name,
          f"unknown value {value!r}{did_you_mean(value, choices)} (choices: {', '.join(choices)})")


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
            _need(ok, f"model.{name}", msg)

        def choice(name: str, choices) -> None:
            _choice(f"model.{name}", getattr(self, name), choices)

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
    max_new_tokens: int = 8  # completion length limit in tokens; a completion that reaches it is 'truncated' (eval: 0 = the preset's, else 512)
    min_new_tokens: int = 0  # EOS is forbidden before this many tokens
    temperature: float = 1.0  # sampling temperature; log-probs use the same scaled logits (0 = greedy: eval and sample only)
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
    accuracy_reward: str = ""  # reward whose score > 0 counts as correct in evaluation ("" = the first of names; eval: else the preset's)
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
    eps_low: float = 0.2  # ε_low: the importance ratio is clipped below at 1 - eps_low
    eps_high: float = 0.28  # ε_high: the ratio is clipped above at 1 + eps_high (DAPO clip-higher); CISPO's weight cap is 1 + eps_high
    beta: float = 0.0  # β: weight of the KL penalty to the reference policy (0 = no reference needed)
    kl_estimator: str = "k3"  # k1 | k2 | k3
    mu: int = 1  # μ: optimiser steps on each rollout batch (the old policy's log-probs are kept when > 1)
    adv_eps: float = 1e-4  # added to the standard deviation before dividing (group_zscore, batch_std)
    mask_truncated: bool = False  # leave completions cut off by rollout.max_new_tokens out of the loss (DAPO's overlong filtering); they still count in their group's advantages
    skip_zero_advantage: bool = True  # do not run forward/backward on sequences whose advantage is 0 (when beta == 0)
    dynamic_sampling: bool = False  # DAPO's dynamic sampling: train only on groups whose rewards are not all equal, sampling further rounds of prompts_per_step prompts until prompts_per_step such groups are found
    dynamic_sampling_max_rounds: int = 3  # extra sampling rounds per step at most; when reached, the step trains on the informative groups found (fewer than prompts_per_step; none: the first round's batch)


@dataclass
class TrainConfig:
    steps: int = 600  # GRPO steps (each: one rollout batch, mu optimiser steps)
    lr: float = 2e-4  # peak learning rate of AdamW
    weight_decay: float = 0.0  # AdamW weight decay
    adam_beta1: float = 0.9  # AdamW's β1: decay rate of the running mean of gradients
    adam_beta2: float = 0.99  # AdamW's β2: decay rate of the running mean of squared gradients (torch's default: 0.999)
    warmup_steps: int = 10  # linear warm-up of the learning rate
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    max_grad_norm: float = 1.0  # clip the gradient norm to this (0 = no clipping)
    micro_batch_size: int = 64  # sequences per forward/backward; gradients accumulate over the batch
    logprob_chunk: int = 256  # positions per chunk when computing log-softmax
    keep_freed_memory: bool = True  # single-process CPU runs: glibc malloc keeps freed blocks for reuse instead of returning them to the OS, which page-faults large tensors in anew every step (process-wide: applied once and logged by `grpokit train` at its start, not by the Trainer class)
    seed: int = 0  # seed of rollout sampling and of torch's global RNG at the start of the run (adapter initialisation)
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
class DoctorConfig:
    prompts: int = 32  # `grpokit doctor`: the run's first N prompts, each sampled rollout.group_size times at the run's settings, longest first
    preflight: bool = True  # `grpokit train` first runs a quick doctor and stops before step 1 when it says 'will not learn' (--doctor.no-preflight skips it)
    preflight_prompts: int = 8  # prompts the training pre-flight samples
    output: str = ""  # path of doctor.json ("" = output_dir/doctor.json; ./doctor.json when output_dir is "")
    measure_step: bool = True  # time one full step (rollout, scoring, update) on the longest prompts; weights, optimiser and order are restored after it
    memory_limit_gib: float = 0.0  # a step whose peak memory (CUDA on a GPU, else host RSS) is over this will not fit: 'will not learn' (0 = no limit)
    truncated_fail: float = 0.5  # share of completions cut by rollout.max_new_tokens from which the run will not learn, when the longest answer does not fit in the limit or algo.mask_truncated is on (else: a warning)
    truncated_warn: float = 0.1  # ... from which the doctor warns
    equal_groups_warn: float = 0.8  # share of groups with all-equal rewards (no gradient) from which the doctor warns; all of them: will not learn
    none_fail: float = 0.5  # a reward returning None for this share of completions (or more): will not learn
    none_warn: float = 0.1  # ... from which the doctor warns (a reward that fails more often than reward.max_fail_share: will not learn)


@dataclass
class AlertsConfig:
    enabled: bool = True  # watch every step's metrics; an alert is printed once when it starts and recorded in metrics.jsonl ('alerts') and summary.json
    zero_std_share: float = 0.9  # a step teaches (almost) nothing when at least this share of its groups have all-equal rewards (reward/zero_std_share) ...
    zero_std_steps: int = 20  # ... alert after this many such steps in a row
    truncated_share: float = 0.5  # alert when completion/truncated_share, averaged over truncated_steps steps, is above this
    truncated_steps: int = 5  # window of the truncation alert
    entropy_ratio: float = 0.1  # entropy collapse: completion/entropy below this fraction of its mean over the first entropy_steps steps ...
    entropy_steps: int = 10  # ... for this many steps in a row
    flat_steps: int = 200  # reward flat: the mean of reward/total/mean over flat_steps/4 steps has not risen flat_delta above its best for this many steps
    flat_delta: float = 0.01  # see flat_steps (0 = off)
    max_kl: float = 1.0  # alert when update/kl (per token, algo.beta > 0) is above this
    max_clipped_share: float = 0.5  # alert when update/clipped_share (tokens the clip acted on) is above this
    rearm_steps: int = 50  # an alert that ended may fire again after its condition was clear this many steps


@dataclass
class EnvConfig:
    name: str = ""  # multi-turn tool environment (docs/tools.md): calculator | python | module:function ("" = single-turn, or the data preset's, e.g. arithmetic-tools: calculator); rollout.max_new_tokens then caps every token after the prompt (turns, tool results, template)
    max_turns: int = 4  # model turns per episode
    max_turn_tokens: int = 0  # tokens the model may sample in one turn (0 = rollout.max_new_tokens)
    tool_timeout: float = 5.0  # seconds per tool call (the python tool: the sandbox's wall clock)
    strict_tokens: bool = False  # raise when a full re-render of an episode tokenizes differently from its sampled ids (else counted: episode/retokenize_mismatch)


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
    doctor: DoctorConfig = field(default_factory=DoctorConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
