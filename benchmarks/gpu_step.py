"""One GRPO step on a GPU: grpokit against TRL's GRPOTrainer on the same workload.

Workload: a random-weight model shaped like Qwen3-1.7B (28 layers, hidden 2048, 16 query / 8 KV
heads of 128, MLP 6144, tied 151,936-entry vocabulary) in bf16 with a LoRA adapter (grpokit's
default adapter: r 64, alpha 16, dropout 0.05 on q/k/v/o, the same LoraConfig for both), 8
prompts of 128 tokens x G=8, exactly 512 new tokens per completion (min = max), temperature 1,
the synthetic reward of benchmarks/workloads.py (half of these 8 prompts' groups all-equal), the
same loss (group z-score advantages, PPO-clip 0.2 / 0.28, token-mean), AdamW, lr 1e-5.

Each system runs in its own process (its own peak memory): grpokit's Trainer at its defaults
for model.mode=lora, dtype bf16; TRL 1.x GRPOTrainer at its best for speed (bf16, no gradient
checkpointing, one optimizer step per generation batch, so no extra old-log-prob forward, beta 0).
Both run forward/backward in micro-batches of 16 rows (MICRO_BATCH). The first step is a warm-up;
the table reports the mean of the others, and the highest peak of GPU memory allocated
during one of them (weights, adapter, optimizer state, KV cache and activations).

    python -m benchmarks.gpu_step                      # both systems, on cuda
    python -m benchmarks.gpu_step --small --device cpu # a 2-layer shape check, minutes on a CPU

Output: a Markdown table on stdout and --out (JSON, one record per system and step).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

from benchmarks.workloads import Workload, build_word_tokenizer, reasoning_prompts

QWEN3_1_7B = dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                  num_key_value_heads=8, head_dim=128, vocab_size=151_936, rope_theta=1_000_000.0,
                  rms_norm_eps=1e-6, max_position_embeddings=40_960, tie_word_embeddings=True)
SMALL = dict(QWEN3_1_7B, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, vocab_size=512)
MICRO_BATCH = {"gpu": 16, "gpu-small": 2}  # rows per forward/backward, the same for both systems
GPU = Workload("gpu", prompts_per_step=8, group_size=8, max_new_tokens=512, min_new_tokens=512,
               vocab_size=QWEN3_1_7B["vocab_size"], prompt_tokens=128, num_prompts=64)
SMALL_WORKLOAD = Workload("gpu-small", prompts_per_step=2, group_size=2, max_new_tokens=16, min_new_tokens=16,
                          vocab_size=SMALL["vocab_size"], prompt_tokens=16, num_prompts=8)
REWARD = "benchmarks.workloads:synthetic_reward"


def build(shape: dict, w: Workload, device: str):
    """(model in bf16 on `device`, word tokenizer, prompt records)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tok = build_word_tokenizer(w.vocab_size)
    config = Qwen3Config(**shape, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen3ForCausalLM(config).to(torch.bfloat16)
    return model, tok, reasoning_prompts(w)


def grpokit_config(w: Workload, device: str, steps: int):
    from grpokit.config import Config, validate

    cfg = Config()
    r, t, m = cfg.rollout, cfg.train, cfg.model
    r.prompts_per_step, r.group_size, r.max_new_tokens, r.min_new_tokens = (
        w.prompts_per_step, w.group_size, w.max_new_tokens, w.min_new_tokens)
    t.lr, t.warmup_steps, t.min_lr_ratio, t.steps = w.lr, 0, 1.0, steps
    t.micro_batch_size = MICRO_BATCH[w.name]
    m.mode, m.dtype, m.device = "lora", "bf16", device
    cfg.reward.names, cfg.reward.weights = [REWARD], [1.0]
    return validate(cfg)


def run_grpokit(shape: dict, w: Workload, device: str, steps: int) -> list[dict]:
    from benchmarks.grpokit_runner import SequentialOrder
    from grpokit.cli.main import apply_process_settings
    from grpokit.models.loading import prepare_model
    from grpokit.rewards import RewardScorer
    from grpokit.train.trainer import Trainer

    cfg = grpokit_config(w, device, steps)
    apply_process_settings(cfg, log=lambda *a: None)
    model, tok, exs = build(shape, w, device)
    model = prepare_model(model, cfg.model)
    trainer = Trainer(cfg, model, tok, exs, RewardScorer(cfg.reward.names, cfg.reward.weights),
                      prompt_order=SequentialOrder(len(exs)))
    records = []
    for _ in range(steps):
        _sync(device)
        _reset_peak(device)
        t0 = time.perf_counter()
        out = trainer.step()
        _sync(device)
        B = w.prompts_per_step * w.group_size
        records.append({"step_s": time.perf_counter() - t0, "gen_s": out["time/generation"],
                        "reward_s": out["time/reward"], "update_s": out["time/update"],
                        "gen_tokens": round(out["completion/length_mean"] * B), "completions": B,
                        "rows_updated": out["update/seqs"], "peak_gib": _peak_gib(device)})
    return records


def run_trl(shape: dict, w: Workload, device: str, steps: int) -> list[dict]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOTrainer

    from benchmarks.trl_runner import _Recorder, trl_config
    from benchmarks.workloads import synthetic_reward
    from grpokit.models.loading import lora_config

    model, tok, exs = build(shape, w, device)
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": ex["prompt"]}], "constant": ex["constant"],
                             "index": i} for i, ex in enumerate(exs)])
    rec = _Recorder([w.prompt_tokens] * len(exs), synthetic_reward)
    records: list[dict] = []
    B = w.prompts_per_step * w.group_size

    class Timer(TrainerCallback):
        def mark(self):
            self.t, rec.gen_s, rec.reward_s = time.perf_counter(), 0.0, 0.0
            _reset_peak(device)

        def on_train_begin(self, args, state, control, **kw):
            self.mark()

        def on_step_end(self, args, state, control, **kw):
            _sync(device)
            step_s = time.perf_counter() - self.t
            records.append({"step_s": step_s, "gen_s": rec.gen_s, "reward_s": rec.reward_s,
                            "update_s": step_s - rec.gen_s - rec.reward_s, "gen_tokens": sum(rec.last["lengths"]),
                            "completions": B, "rows_updated": B, "peak_gib": _peak_gib(device)})
            self.mark()

    def reward_fn(*args, **kwargs):
        return rec.reward(*args, **kwargs)

    on_cpu = device == "cpu"
    with tempfile.TemporaryDirectory() as out_dir:
        micro = MICRO_BATCH[w.name]
        args = trl_config(w, steps, out_dir, 0, use_cpu=on_cpu, bf16=not on_cpu, per_device_train_batch_size=micro,
                          gradient_accumulation_steps=B // micro, steps_per_generation=B // micro,
                          generation_kwargs={"min_new_tokens": w.min_new_tokens}, dataloader_pin_memory=not on_cpu)
        trainer = GRPOTrainer(model=model, reward_funcs=[reward_fn], args=args, train_dataset=ds,
                              processing_class=tok, peft_config=lora_config(grpokit_config(w, device, steps).model),
                              callbacks=[Timer()])
        rec.wrap_generation(trainer)
        trainer.train()
    return records


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")


def summary(system: str, records: list[dict]) -> dict:
    """Mean over the steps after the first (warm-up); tokens/s = generated tokens / generation s."""
    timed = records[1:] or records
    mean = {k: sum(r[k] for r in timed) / len(timed) for k in ("step_s", "gen_s", "update_s", "gen_tokens")}
    return {"system": system, **mean, "gen_tokens_per_s": mean["gen_tokens"] / mean["gen_s"],
            "completions_per_s": records[0]["completions"] / mean["step_s"],
            "peak_gib": max(r["peak_gib"] for r in timed), "rows_updated": timed[-1]["rows_updated"],
            "steps_timed": len(timed)}


def table(rows: list[dict]) -> str:
    lines = ["| system | step s | generation s | update s | generated tokens/s | completions/s | "
             "rows updated | peak GPU GiB |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in rows:
        lines.append(f"| {s['system']} | {s['step_s']:.2f} | {s['gen_s']:.2f} | {s['update_s']:.2f} | "
                     f"{s['gen_tokens_per_s']:.0f} | {s['completions_per_s']:.2f} | {s['rows_updated']} | "
                     f"{s['peak_gib']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--system", choices=["both", "grpokit", "trl"], default="both")
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=3, help="steps per system; the first is a warm-up")
    p.add_argument("--small", action="store_true", help="a 2-layer model and 16 tokens: a check that it runs")
    p.add_argument("--out", default="gpu_step.json")
    a = p.parse_args(argv)
    shape, w = (SMALL, SMALL_WORKLOAD) if a.small else (QWEN3_1_7B, GPU)
    if a.system != "both":  # a worker: one system, its records as JSON on the last line of stdout
        fn = run_grpokit if a.system == "grpokit" else run_trl
        print(json.dumps({"records": fn(shape, w, a.device, a.steps)}))
        return 0
    results = {}
    for system in ("grpokit", "trl"):
        cmd = [sys.executable, "-m", "benchmarks.gpu_step", "--system", system, "--device", a.device,
               "--steps", str(a.steps)] + (["--small"] if a.small else [])
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if proc.returncode != 0:
            print(f"{system} failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
            continue
        results[system] = json.loads(proc.stdout.strip().splitlines()[-1])["records"]
        notes = [line for line in proc.stderr.splitlines() if line.startswith("grpokit: ")]
        print("\n".join(f"  {system} logged: {line}" for line in notes))
        print(f"{system}: {len(results[system])} steps in {time.perf_counter() - t0:.0f} s (process, setup included)")
    rows = [summary(s, r) for s, r in results.items()]
    print(table(rows))
    with open(a.out, "w") as f:
        json.dump({"device": torch.cuda.get_device_name() if a.device.startswith("cuda") else a.device,
                   "torch": torch.__version__, "shape": shape, "workload": w.__dict__, "records": results,
                   "summary": rows}, f, indent=1)
    return 0 if len(results) == 2 else 1


if __name__ == "__main__":
    sys.exit(main())
