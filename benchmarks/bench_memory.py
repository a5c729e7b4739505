"""Peak memory of GRPO steps under QLoRA against the same model fully fine-tuned.

    .venv/bin/python benchmarks/bench_memory.py [--modes qlora full lora] [--steps 2] [--out FILE.json]
    .venv/bin/python benchmarks/bench_memory.py --model Qwen/Qwen3-8B --device cuda --modes qlora

Without --model, a randomly initialised Llama of ~50 M parameters (hidden 512, 12 layers,
MLP 2048) over the arithmetic task's character tokenizer is built once and saved; each mode then
runs in its own fresh Python process: load, prepare (LoRA / 4-bit), and `--steps` GRPO steps of
the arithmetic task (4 prompts x 8 samples, 8 new tokens, micro-batches of 8, optimizer state
included).

Reported per mode, CPU: the process's resident memory before loading (torch and libraries),
after loading (weights made resident, memory freed while loading returned with malloc_trim),
and its peak during the steps (VmHWM, reset after loading through /proc/self/clear_refs so the
load's transient full-precision copy is not counted); "training peak" is that peak minus the
before-loading baseline. Also the tensors' own sizes: weights as stored, gradients, AdamW state. CUDA: torch.cuda.max_memory_allocated
during the steps. The ratio printed is QLoRA's training peak over full fine-tuning's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPE = dict(hidden=512, layers=12, heads=8, inter=2048)


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def _settle(model) -> None:
    """Make the loaded weights resident (safetensors are memory-mapped: untouched pages do not
    count in RSS yet) and hand memory freed while loading back to the OS (QLoRA quantizes a
    full-precision copy that glibc would otherwise keep), so the peak measures training alone."""
    import ctypes

    import torch

    with torch.no_grad():
        for p in model.parameters():
            p.data.view(-1)[::1024].sum()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def static_mib(model) -> dict:
    """What the tensors themselves take: stored weights, their gradients, AdamW's two moments."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return {"weights_mib": round(weights / 2**20, 1), "grads_mib": round(trainable / 2**20, 1),
            "adam_mib": round(2 * trainable / 2**20, 1)}


def build_model(folder: Path) -> int:
    """Save the ~50 M-parameter random Llama; returns its parameter count."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from grpokit.tasks.arithmetic import build_tokenizer

    tok = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=SHAPE["hidden"], intermediate_size=SHAPE["inter"],
        num_hidden_layers=SHAPE["layers"], num_attention_heads=SHAPE["heads"],
        num_key_value_heads=SHAPE["heads"], max_position_embeddings=64, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def child(mode: str, path: str, steps: int, device: str) -> dict:
    """One mode in this (fresh) process; returns its measurements."""
    import torch

    from grpokit.cli.main import apply_process_settings
    from grpokit.config import Config
    from grpokit.models.loading import load_model, load_tokenizer, parameter_counts, prepare_model
    from grpokit.rewards import RewardScorer
    from grpokit.tasks.arithmetic import ArithmeticSpec, split_problems
    from grpokit.train.trainer import Trainer

    cfg = Config()
    cfg.model.name_or_path, cfg.model.mode, cfg.model.device = path, mode, device
    cfg.rollout.prompts_per_step, cfg.rollout.group_size, cfg.rollout.max_new_tokens = 4, 8, 8
    cfg.algo.skip_zero_advantage = False  # a random model scores 0 everywhere: still run every backward
    cfg.train.steps, cfg.train.micro_batch_size = steps, 8  # gradients accumulate over 4 micro-batches
    examples = split_problems(ArithmeticSpec())["train"][:256]
    torch.manual_seed(0)
    import peft  # noqa: F401  (every mode imports the same libraries before the baseline)
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        pass
    baseline_kb = _status_kb("VmRSS")
    model = prepare_model(load_model(path, cfg.model), cfg.model)
    tokenizer = load_tokenizer(path, cfg.model)
    _settle(model)
    loaded_kb = _status_kb("VmRSS")
    reset = _reset_peak()
    cuda = next(model.parameters()).device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    scorer = RewardScorer(["arithmetic"], [1.0])
    apply_process_settings(cfg, log=lambda *a: None)  # as `grpokit train` does at its start
    trainer = Trainer(cfg, model, tokenizer, examples, scorer)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    seconds = time.perf_counter() - start
    scorer.close()
    peak_kb = _status_kb("VmHWM")  # since the reset after loading, or since the start when it failed
    out = {
        "mode": mode, **parameter_counts(model), **static_mib(model), "steps": steps, "seconds": round(seconds, 2),
        "rss_baseline_mib": round(baseline_kb / 1024, 1), "rss_loaded_mib": round(loaded_kb / 1024, 1),
        "rss_step_peak_mib": round(peak_kb / 1024, 1), "peak_was_reset_after_load": reset,
        "training_peak_mib": round((peak_kb - baseline_kb) / 1024, 1),
        "added_by_steps_mib": round((peak_kb - loaded_kb) / 1024, 1),
    }
    if cuda:
        out["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def run_mode(mode: str, path: str, steps: int, device: str) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--model", path, "--steps", str(steps), "--device", device]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(rows: list[dict]) -> str:
    key = "cuda_max_allocated_mib" if all("cuda_max_allocated_mib" in r for r in rows) else "training_peak_mib"
    lines = [f"{'mode':7}{'params':>12}{'trainable':>12}{'weights':>9}{'grad+adam':>10}{'baseline':>9}"
             f"{'loaded':>8}{'peak':>7}{'training':>9}{'s/step':>8}   (MiB; RSS from 'baseline' on)"]
    for r in rows:
        lines.append(f"{r['mode']:7}{r['total']:>12,}{r['trainable']:>12,}{r['weights_mib']:>9.0f}"
                     f"{r['grads_mib'] + r['adam_mib']:>10.0f}{r['rss_baseline_mib']:>9.0f}{r['rss_loaded_mib']:>8.0f}"
                     f"{r['rss_step_peak_mib']:>7.0f}{r['training_peak_mib']:>9.0f}{r['seconds'] / r['steps']:>8.2f}")
    by_mode = {r["mode"]: r for r in rows}
    if "qlora" in by_mode and "full" in by_mode:
        ratio = by_mode["qlora"][key] / by_mode["full"][key]
        lines.append(f"QLoRA / full fine-tune, {key}: {ratio:.3f}")
        tensors = [by_mode[m]["weights_mib"] + by_mode[m]["grads_mib"] + by_mode[m]["adam_mib"] for m in ("qlora", "full")]
        lines.append(f"QLoRA / full fine-tune, weights + gradients + AdamW state: {tensors[0] / tensors[1]:.3f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modes", nargs="+", default=["qlora", "full"], choices=["full", "lora", "qlora"])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--model", default="", help="a model folder or hub id (default: the ~50 M random Llama)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "grpokit_bench_memory.json"))
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.model, args.steps, args.device)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path, built = args.model, None
        if not path:
            path = str(Path(tmp) / "llama-50m")
            built = build_model(Path(path))
            print(f"built a random Llama of {built:,} parameters ({SHAPE})")
        rows = [run_mode(mode, path, args.steps, args.device) for mode in args.modes]
    print(report(rows))
    result = {"model": args.model or f"random Llama {SHAPE}", "parameters": built, "device": args.device,
              "machine": platform.platform(), "python": platform.python_version(), "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
