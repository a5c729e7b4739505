"""Shared pieces of the model tests: tiny saved Llamas, short GRPO runs, weight digests."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import torch

from grpokit.config import Config


def save_tiny_llama(folder: Path, *, hidden: int = 64, layers: int = 2, heads: int = 2, inter: int = 128,
                    tokenizer=None, max_positions: int = 64, seed: int = 0) -> Path:
    """A randomly initialised Llama over the arithmetic character tokenizer (or `tokenizer`)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from grpokit.tasks.arithmetic import build_tokenizer

    tok = tokenizer or build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=max_positions,
        tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@functools.lru_cache(maxsize=1)
def _arithmetic_train() -> tuple:
    from grpokit.tasks.arithmetic import ArithmeticSpec, split_problems

    return tuple(split_problems(ArithmeticSpec())["train"][:512])


def arithmetic_examples() -> list[dict]:
    """Fresh copies (records cache their prompt ids, and tokenizers differ between tests)."""
    return [dict(ex) for ex in _arithmetic_train()]


def grpo_config(path, mode: str, *, beta: float = 0.0, lr: float = 1e-3) -> Config:
    """Two short GRPO steps on the arithmetic task: 4 prompts x 8 samples, 4 new tokens."""
    cfg = Config()
    cfg.model.name_or_path, cfg.model.mode, cfg.model.device = str(path), mode, "cpu"
    cfg.rollout.prompts_per_step, cfg.rollout.group_size, cfg.rollout.max_new_tokens = 4, 8, 4
    cfg.train.steps, cfg.train.lr, cfg.train.warmup_steps = 2, lr, 0
    cfg.algo.beta = beta
    return cfg


def load_prepared(cfg: Config):
    """(model, tokenizer) loaded and prepared for cfg.model.mode, as run_training does."""
    from grpokit.models.loading import load_model, load_tokenizer, model_path, prepare_model

    path = model_path(cfg.model, log=lambda *a: None)
    return prepare_model(load_model(path, cfg.model), cfg.model), load_tokenizer(path, cfg.model)


def two_grpo_steps(model, tokenizer, cfg: Config, reference=None, examples=None):
    """The Trainer after cfg.train.steps steps with the arithmetic reward."""
    from grpokit.rewards import RewardScorer
    from grpokit.train.trainer import Trainer

    scorer = RewardScorer(["arithmetic"], [1.0])
    trainer = Trainer(cfg, model, tokenizer, examples or arithmetic_examples(), scorer, reference=reference)
    try:
        trainer.rows = [trainer.step() for _ in range(cfg.train.steps)]
    finally:
        scorer.close()
    return trainer


def digests(model) -> dict[str, str]:
    """sha256 of every stored parameter, by name (4-bit weights: their packed bytes and scales)."""
    out = {}
    for name, p in model.named_parameters():
        h = hashlib.sha256(p.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        state = getattr(p, "quant_state", None)
        if state is not None:
            h.update(state.absmax.detach().cpu().float().numpy().tobytes())
        out[name] = h.hexdigest()
    return out


def sample_rollout(model, tokenizer, prompts=("12+34", "7+8", "90+9"), group_size: int = 2, seed: int = 0):
    """A small fixed rollout to compare log-probs on."""
    from grpokit.data.records import example_prompt_ids
    from grpokit.rollout.generate import generate

    ids = [example_prompt_ids(tokenizer, {"prompt": p}) for p in prompts]
    gen = torch.Generator().manual_seed(seed)
    return generate(model, ids, group_size=group_size, max_new_tokens=5, eos_id=tokenizer.eos_token_id,
                    pad_id=tokenizer.pad_token_id, generator=gen)


@torch.no_grad()
def logprobs(model, rollout, temperature: float = 1.0) -> torch.Tensor:
    from grpokit.policy.forward import policy_logprobs_BT
    from grpokit.rollout.generate import eval_mode

    with eval_mode(model):
        return policy_logprobs_BT(model, rollout, temperature=temperature)


TEXT_CHARS = [chr(c) for c in range(32, 127)] + ["\n"]


def build_text_tokenizer():
    """A character tokenizer for any English text (GSM8K prompts), with a chat template that
    takes a system turn; characters outside printable ASCII become <unk>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>"]
    core = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(specials + TEXT_CHARS)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    core.decoder = decoders.Fuse()
    core.add_special_tokens(specials)
    template = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
                "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", chat_template=template, padding_side="left")
