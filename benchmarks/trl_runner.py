"""TRL's side of bench_grpo.py: GRPOTrainer on a workload, configured at its best on a CPU.

Settings that matter for speed (TRL's defaults, bf16 autocast and gradient checkpointing, are
~3x slower on a CPU; docs/performance.md, "The benchmark"): fp32 (bf16=False), gradient_checkpointing=False,
use_cpu=True, one optimizer step per generation batch (per_device_train_batch_size = P*G,
no gradient accumulation, so no extra old-log-prob forward), beta=0 (no reference model),
the faster HF cache per workload (CACHE_IMPLEMENTATION), no logging or saving inside the
measured steps, no tqdm.

The loss matches grpokit's config: group z-score advantages (scale_rewards="group"), PPO-clip
with DAPO's clip-higher (epsilon 0.2 / epsilon_high 0.28), token-mean over the batch
(loss_type="dapo"), mu = 1; the same sampling (temperature, top_p, no top_k, min/max new
tokens) and AdamW (betas 0.9/0.99, no weight decay, constant lr, grad-norm clip 1.0).
"""

from __future__ import annotations

import tempfile
import time

import torch

from benchmarks import flops
from benchmarks.workloads import WORKLOADS, Workload, examples, load, task_reward


# HF generate's KV cache: "static" measured ~7 % faster per 128-token generation here, ~5 % slower
# for 8 tokens; each workload gets the faster one
CACHE_IMPLEMENTATION = {"tiny": None, "smoke": None, "reasoning": "static"}


def trl_config(w: Workload, steps: int, out_dir: str, seed: int, **overrides):
    """TRL's GRPOConfig for workload w at its best on a CPU (module docstring); `overrides` replace
    settings (benchmarks/gpu_step.py: bf16 on a GPU, micro-batches)."""
    from trl import GRPOConfig

    gen_kwargs = {"min_new_tokens": w.min_new_tokens} if w.min_new_tokens else None
    settings = dict(
        output_dir=out_dir, use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
        per_device_train_batch_size=w.prompts_per_step * w.group_size, gradient_accumulation_steps=1,
        num_generations=w.group_size, max_completion_length=w.max_new_tokens, generation_kwargs=gen_kwargs,
        temperature=w.temperature, top_p=w.top_p, top_k=0, cache_implementation=CACHE_IMPLEMENTATION.get(w.name),
        learning_rate=w.lr, adam_beta1=0.9, adam_beta2=0.99, weight_decay=0.0, max_grad_norm=1.0,
        lr_scheduler_type="constant", warmup_steps=0, optim="adamw_torch",
        loss_type="dapo", epsilon=0.2, epsilon_high=0.28, beta=0.0, num_iterations=1, scale_rewards="group",
        max_steps=steps, logging_steps=10_000, save_strategy="no", report_to=[], disable_tqdm=True,
        shuffle_dataset=False, dataloader_num_workers=0, dataloader_pin_memory=False, seed=seed,
        log_completions=False,
    )
    return GRPOConfig(**{**settings, **overrides})


class _Recorder:
    """Wraps the trainer's generation call to time it; its reward function keeps each step's
    completion lengths and rewards (for the FLOP count) and times the scoring."""

    def __init__(self, prompt_len: list[int], reward_fn):
        self.prompt_len, self.reward_fn = prompt_len, reward_fn
        self.gen_s = self.reward_s = 0.0
        self.last: dict = {}

    def wrap_generation(self, trainer) -> None:
        gen = trainer._generate_single_turn

        def timed_generate(*args, **kwargs):
            t0 = time.perf_counter()
            out = gen(*args, **kwargs)
            self.gen_s += time.perf_counter() - t0
            return out

        trainer._generate_single_turn = timed_generate

    def reward(self, prompts, completions, completion_ids, index, **cols):
        t0 = time.perf_counter()
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        keys = [k for k in cols if k not in ("trainer_state", "log_extra", "log_metric", "environments")]
        rewards = [self.reward_fn(t, {k: cols[k][i] for k in keys}) for i, t in enumerate(texts)]
        G = len(index) // len(set(index))
        self.last = {"lengths": [len(c) for c in completion_ids], "rewards": rewards,
                     "prompt_len": [self.prompt_len[i] for i in index[::G]]}
        self.reward_s += time.perf_counter() - t0
        return rewards


def _dataset(workload: str, tok):
    from datasets import Dataset

    from grpokit.data.records import example_prompt_ids

    rows, prompt_len = [], []
    for i, ex in enumerate(examples(workload)):
        prompt_len.append(len(example_prompt_ids(tok, dict(ex))))
        extra = {k: v for k, v in ex.items() if k != "prompt"}
        rows.append({"prompt": [{"role": "user", "content": ex["prompt"]}], "index": i, **extra})
    return Dataset.from_list(rows), prompt_len


def serve(workload: str, proto, on_ready, seed: int = 0) -> None:
    """Run GRPOTrainer.train(), pausing after each batch of steps the driver asks for (inside
    a callback, between two optimizer steps) until it says quit."""
    from transformers import TrainerCallback
    from trl import GRPOTrainer

    torch.manual_seed(seed)
    model, tok = load(workload)
    ds, prompt_len = _dataset(workload, tok)
    w = WORKLOADS[workload]
    rec = _Recorder(prompt_len, task_reward(workload))
    shape = flops.ModelShape.from_config(model.config)

    def task_reward_fn(*args, **kwargs):
        return rec.reward(*args, **kwargs)

    class Driver(TrainerCallback):
        def __init__(self):
            self.records, self.budget = [], 0

        def mark(self):
            self.t, self.c, rec.gen_s, rec.reward_s = time.perf_counter(), time.process_time(), 0.0, 0.0

        def on_train_begin(self, args, state, control, **kw):
            on_ready()
            self.budget = proto.next_budget()
            control.should_training_stop = self.budget is None
            self.mark()

        def on_step_end(self, args, state, control, **kw):
            step_s, cpu_s = time.perf_counter() - self.t, time.process_time() - self.c
            self.records.append({**flops.step_record(shape, rec.last, w.group_size, step_s, rec.gen_s, rec.reward_s),
                                 "cpu_s": cpu_s})
            self.budget -= 1
            if self.budget == 0:
                proto.send({"records": self.records})
                self.records = []
                self.budget = proto.next_budget()
                control.should_training_stop = self.budget is None
            self.mark()

    with tempfile.TemporaryDirectory() as out_dir:
        trainer = GRPOTrainer(model=model, reward_funcs=[task_reward_fn], args=trl_config(WORKLOADS[workload], 1_000_000, out_dir, seed),
                              train_dataset=ds, processing_class=tok, callbacks=[Driver()])
        rec.wrap_generation(trainer)
        trainer.train()
