"""Loading tokenizer + model, choosing device and dtype, saving."""

from __future__ import annotations

from pathlib import Path

import torch

from grpokit.config import ModelConfig

BUILTIN_PREFIX = "builtin:"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """auto: bf16 on a GPU that supports it, else fp32 (CPU autocast to bf16 is slower here)."""
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return DTYPES[name]


def model_path(cfg: ModelConfig, log=print) -> str:
    """A folder or hub id for from_pretrained; builtin models are built (and cached) first."""
    if cfg.name_or_path.startswith(BUILTIN_PREFIX):
        name = cfg.name_or_path[len(BUILTIN_PREFIX):]
        if name != "arithmetic":
            raise ValueError(f"model.name_or_path: unknown builtin model {name!r} (choices: arithmetic)")
        from grpokit.tasks.arithmetic import load_or_build

        return str(load_or_build(log=log))
    return cfg.name_or_path


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    if tok.pad_token_id is None:  # masks never depend on pad; any id works, a distinct one is clearer
        tok.pad_token = tok.unk_token if tok.unk_token is not None else tok.eos_token
    return tok


def load_model(path: str, cfg: ModelConfig):
    from transformers import AutoModelForCausalLM

    device = resolve_device(cfg.device)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(cfg.dtype, device))
    return model.to(device)


def save_model(model, tokenizer, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
