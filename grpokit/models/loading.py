"""Hugging Face causal LMs: load (full precision or 4-bit), attach LoRA, save adapter / merged.

The life of a model in a run:

    path = model_path(cfg.model)                 # builtin:arithmetic -> its cached folder
    tokenizer = load_tokenizer(path, cfg.model)  # left padding, a pad token (never trusted by masks)
    model = load_model(path, cfg.model)          # dtype, device, attention, 4-bit base for qlora
    model = prepare_model(model, cfg.model)      # full: as is; lora/qlora: frozen base + peft adapter
    ...train...
    save_outputs(model, tokenizer, cfg, out)     # weights or adapter, tokenizer, grpokit_config.yaml

`load_trained(folder)` loads any of those folders back (used by `grpokit sample`).
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch

from grpokit.config import Config, ModelConfig, load_yaml, to_dict
from grpokit.errors import ConfigError
from grpokit.policy.reference import is_adapter_model  # noqa: F401  (also used by callers)

BUILTIN_PREFIX = "builtin:"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
GRPOKIT_CONFIG = "grpokit_config.yaml"  # the Config a saved model was trained with (usable as --config)
MERGED_DIR = "merged"  # under a saved adapter folder: the base with the adapter folded in
# Tokens that tokenizers ship for padding, tried in order when the tokenizer names none (or names EOS).
PAD_CANDIDATES = ("<|finetune_right_pad_id|>", "<|pad|>", "<pad>", "[PAD]", "<|endoftext|>", "<|end_of_text|>")


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
        if name == "arithmetic-tools":
            from grpokit.tasks.arithmetic_tools import load_or_build_tools

            return str(load_or_build_tools(log=log))
        if name != "arithmetic":
            raise ValueError(f"model.name_or_path: unknown builtin model {name!r} (choices: arithmetic, arithmetic-tools)")
        from grpokit.tasks.arithmetic import load_or_build

        return str(load_or_build(log=log))
    return cfg.name_or_path


def _hub_kwargs(cfg: ModelConfig | None) -> dict:
    if cfg is None:
        return {}
    kwargs = {"trust_remote_code": bool(cfg.trust_remote_code)}
    if cfg.revision:
        kwargs["revision"] = cfg.revision
    return kwargs


# ---------------------------------------------------------------- tokenizer


def load_tokenizer(path: str, cfg: ModelConfig | None = None):
    """The tokenizer with left padding (prompts end where generation starts) and a pad token."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, **_hub_kwargs(cfg))
    tok.padding_side = "left"
    choose_pad_token(tok)
    return tok


def choose_pad_token(tok) -> None:
    """Give the tokenizer a pad token, distinct from EOS where the vocabulary has one.

    grpokit builds every mask from lengths, never from pad ids (docs/design.md, pitfall 4), so any id
    works; a distinct one only makes padded batches easier to read. No token is added: that
    would need the embedding matrix resized."""
    eos = tok.eos_token_id
    if tok.pad_token_id is not None and tok.pad_token_id != eos:
        return
    vocab = tok.get_vocab()
    candidates = [tok.unk_token] if tok.unk_token is not None else []
    for name in candidates + list(PAD_CANDIDATES):
        if name in vocab and vocab[name] != eos:
            tok.pad_token = name
            return
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token


# ---------------------------------------------------------------- model


def quantization_config(cfg: ModelConfig, device: torch.device):
    """bitsandbytes 4-bit settings of a qlora base (the QLoRA paper's: NF4, double quantization)."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise ConfigError("model.mode: qlora needs bitsandbytes; pip install 'grpokit[qlora]'") from exc
    from transformers import BitsAndBytesConfig

    compute = cfg.quant_compute_dtype if cfg.quant_compute_dtype != "auto" else cfg.dtype
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type=cfg.quant_type, bnb_4bit_use_double_quant=cfg.quant_double,
        bnb_4bit_compute_dtype=resolve_dtype(compute, device),
    )


def load_model(path: str, cfg: ModelConfig):
    """The model on its device in cfg.dtype; under mode qlora its linear layers are 4-bit."""
    from transformers import AutoModelForCausalLM

    device = resolve_device(cfg.device)
    kwargs = dict(dtype=resolve_dtype(cfg.dtype, device), device_map={"": str(device)}, **_hub_kwargs(cfg))
    if cfg.attn_implementation != "auto":
        kwargs["attn_implementation"] = cfg.attn_implementation
    if cfg.mode == "qlora":
        kwargs["quantization_config"] = quantization_config(cfg, device)
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if cfg.mode == "qlora":
        keep_4bit_layout(model)
    return model


def keep_4bit_layout(model) -> None:
    """Stop bitsandbytes from repacking 4-bit weights for its CPU inference kernel.

    On a CPU with AVX512-BF16, bitsandbytes (0.48 and later) repacks a Linear4bit's weight in
    place the first time the layer runs in eval mode without grad (as every rollout does). Every
    later forward, training ones included, then goes through that kernel, which computes in bf16
    and passes back wrong input gradients: on a tiny Llama the LoRA gradients after one rollout
    differed from the true ones by as much as their own size (tests/test_models.py::test_qlora_gradients_survive_an_eval_forward)."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def lora_config(cfg: ModelConfig):
    with quiet_peft():
        from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.lora_targets(), bias="none", task_type="CAUSAL_LM")


def prepare_model(model, cfg: ModelConfig, adapter=None):
    """Make a loaded model ready to train under cfg.mode; returns the model to train.

    full: every weight trains. lora: the base is frozen and a peft adapter is attached (a new one,
    or `adapter`, a saved one to continue: grpokit.models.adapters.AdapterStart). qlora: peft's k-bit
    preparation (norms and embeddings in fp32, base frozen), then the adapter.
    Gradient checkpointing uses the non-reentrant form, which needs no input-grad hooks."""
    if cfg.mode == "full":
        if cfg.gradient_checkpointing:
            enable_checkpointing(model)
        model.requires_grad_(True)
        return model
    with quiet_peft():
        from peft import get_peft_model, prepare_model_for_kbit_training

    if cfg.mode == "qlora":
        if not getattr(model, "is_loaded_in_4bit", False):
            raise ConfigError("model.mode: qlora needs a model loaded in 4 bits (load it with load_model)")
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if cfg.gradient_checkpointing:
        enable_checkpointing(model)
    if adapter is not None:
        from grpokit.models.adapters import continue_adapter

        return continue_adapter(model, adapter)
    try:
        with quiet_peft():
            return get_peft_model(model, lora_config(cfg))
    except ValueError as exc:  # peft: "Target modules {...} not found in the base model"
        raise ConfigError(f"model.lora_target: {exc}") from exc


def enable_checkpointing(model) -> None:
    """Non-reentrant activation checkpointing (gradient_checkpointing_enable is deprecated in 5.x)."""
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})


@contextmanager
def quiet_peft():
    """Around peft's first import and its model wrappers: peft imports bitsandbytes whenever it is
    installed, whose import logs a notice about its CPU 4-bit kernel (noise in a LoRA run on
    full-precision weights; a qlora run imports bitsandbytes itself first, so it still shows), and
    PeftModel reads transformers' deprecated is_gradient_checkpointing (peft 0.21; not our call)."""
    bnb_log = logging.getLogger("bitsandbytes")
    level = bnb_log.level
    bnb_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
            yield
    finally:
        bnb_log.setLevel(level)


def parameter_counts(model) -> dict:
    """Trainable and total parameter counts (a 4-bit weight counts once per stored element pair)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() * (2 if p.__class__.__name__ == "Params4bit" else 1) for p in model.parameters())
    return {"trainable": trainable, "total": total}


# ---------------------------------------------------------------- saving


def save_model(model, tokenizer, out_dir: Path, state_dict: dict | None = None) -> None:
    """Weights (or a peft adapter) and tokenizer, with no grpokit config (see save_outputs).
    state_dict: the weights to write instead of the model's own (a sharded model's, gathered)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, **({} if state_dict is None else {"state_dict": state_dict}))
    tokenizer.save_pretrained(out_dir)


def save_outputs(model, tokenizer, cfg: Config, out_dir: Path, state_dict: dict | None = None) -> dict:
    """Everything a trained model needs to be used again, in out_dir:

    full mode:       config.json + weights, tokenizer, grpokit_config.yaml
    lora/qlora:      adapter_config.json + adapter weights (PeftModel.from_pretrained loads them,
                     and so does AutoModelForCausalLM when peft is installed), tokenizer,
                     grpokit_config.yaml; with model.save_merged also merged/: the base with the
                     adapter folded in, a plain transformers model folder.
    state_dict: full weights gathered from a sharded model (grpokit.parallel.sharding.full_model_state).
    Returns {"model": out_dir, "merged": out_dir/merged or None}."""
    out_dir = Path(out_dir)
    save_model(model, tokenizer, out_dir, state_dict=state_dict)
    write_grpokit_config(cfg, out_dir)
    merged = None
    if is_adapter_model(model) and cfg.model.save_merged:
        merged = out_dir / MERGED_DIR
        device = next(model.parameters()).device
        save_merged(model, tokenizer, merged, dtype=resolve_dtype(cfg.model.dtype, device))
        write_grpokit_config(cfg, merged)
    return {"model": out_dir, "merged": merged}


def write_grpokit_config(cfg: Config, out_dir: Path) -> None:
    import yaml

    (Path(out_dir) / GRPOKIT_CONFIG).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def read_grpokit_config(folder: Path) -> Config | None:
    path = Path(folder) / GRPOKIT_CONFIG
    return load_yaml(path) if path.is_file() else None


def _dense(param: torch.Tensor) -> torch.Tensor:
    """A parameter as an ordinary tensor: 4-bit bitsandbytes weights are dequantized."""
    if param.__class__.__name__ == "Params4bit":
        import bitsandbytes.functional as bnbf

        data, state = param.data, param.quant_state
        if getattr(state, "packing_format_for_cpu", False):  # repacked by a CPU inference forward
            data, state = bnbf._convert_weight_packed_for_cpu_inverse(data, state)
        return bnbf.dequantize_4bit(data, state)
    return param.data


@torch.no_grad()
def merged_state_dict(model, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The base model's state dict with every LoRA update folded in: W + (alpha/r) B A, on CPU.

    Under qlora the base weights are the dequantized 4-bit ones the adapter was trained on, so
    the merged model computes what the trained model computed (folding into the original
    full-precision weights instead would add back the quantization error the adapter never saw).
    The model itself is left unchanged (peft's merge_and_unload would modify it in place)."""
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    adapter = model.active_adapter
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()  # tied weights are stored once
    inside = None  # name of the LoRA layer whose submodules are being skipped
    for name, module in base.named_modules():
        if inside is not None and name.startswith(inside + "."):
            continue
        prefix = f"{name}." if name else ""
        if isinstance(module, LoraLayer):
            inside, layer = name, module.get_base_layer()
            weight = _dense(layer.weight).float() + module.get_delta_weight(adapter).float()
            out[prefix + "weight"] = weight.to(dtype).cpu()
            if getattr(layer, "bias", None) is not None:
                out[prefix + "bias"] = layer.bias.data.to(dtype).cpu()
            continue
        for pname, param in module.named_parameters(recurse=False):
            if id(param) not in seen:
                seen.add(id(param))
                out[prefix + pname] = _dense(param).to(dtype).cpu()
        for bname, buf in module.named_buffers(recurse=False):
            if bname not in module._non_persistent_buffers_set:
                out[prefix + bname] = buf.cpu()
    return out


def untie_if_different(config, base, state: dict[str, torch.Tensor]) -> bool:
    """Set `tie_word_embeddings` false in `config` (and its text config) when `state` holds an
    output head that differs from the input embedding (an adapter on lm_head or embed_tokens of a
    tied model): loaded tied, one would overwrite the other. Returns whether it untied."""
    texts = [config] + ([config.get_text_config()] if hasattr(config, "get_text_config") else [])
    if not any(getattr(c, "tie_word_embeddings", False) for c in texts):
        return False
    names = {id(module): name for name, module in base.named_modules()}
    head, embed = base.get_output_embeddings(), base.get_input_embeddings()
    if head is None or embed is None or id(head) not in names or id(embed) not in names:
        return False
    head_w, embed_w = state.get(f"{names[id(head)]}.weight"), state.get(f"{names[id(embed)]}.weight")
    if head_w is None or embed_w is None or torch.equal(head_w, embed_w):
        return False
    for c in texts:
        c.tie_word_embeddings = False
    return True


def save_merged(model, tokenizer, out_dir: Path, *, dtype: torch.dtype) -> Path:
    """Write the adapter folded into its base as a plain transformers folder (no peft, no 4-bit)."""
    from huggingface_hub import save_torch_state_dict

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = model.get_base_model()
    config = copy.deepcopy(base.config)
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attr):
            delattr(config, attr)
    config.dtype = dtype
    state = merged_state_dict(model, dtype)
    untie_if_different(config, base, state)
    config.save_pretrained(out_dir)
    if getattr(base, "generation_config", None) is not None:
        base.generation_config.save_pretrained(out_dir)
    save_torch_state_dict(state, out_dir, max_shard_size="5GB")
    tokenizer.save_pretrained(out_dir)
    return out_dir


# ---------------------------------------------------------------- loading a trained folder


def load_trained(path: str, *, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False,
                 log=print):
    """(model, tokenizer) in eval mode from a folder save_outputs wrote, a plain model folder,
    a peft adapter folder, a hub id, or builtin:arithmetic.

    An adapter is put back on its base (adapter_config.json's base_model_name_or_path), loaded
    as it was trained: in 4 bits with the same settings when grpokit_config.yaml says qlora."""
    path = model_path(ModelConfig(name_or_path=path), log=log)
    folder = Path(path)
    saved = read_grpokit_config(folder) if folder.is_dir() else None
    mcfg = copy.deepcopy(saved.model) if saved is not None else ModelConfig()
    mcfg.device, mcfg.dtype = device, dtype
    mcfg.trust_remote_code = trust_remote_code or mcfg.trust_remote_code
    if (folder / "adapter_config.json").is_file():
        base_path = json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
        if mcfg.mode == "full":  # an adapter folder that grpokit did not write: assume a full-precision base
            mcfg.mode = "lora"
        mcfg.name_or_path = base_path
        base = load_model(base_path, mcfg)
        with quiet_peft():
            from peft import PeftModel

            model = PeftModel.from_pretrained(base, str(folder))
    else:
        mcfg.mode, mcfg.name_or_path = "full", path
        model = load_model(path, mcfg)
    tokenizer = load_tokenizer(path, mcfg)
    model.eval()
    return model, tokenizer
