"""The built-in arithmetic task: needs no download, trains on a laptop CPU in minutes.

Problems are two-number sums and differences ("37+58" -> "95"). The model is a ~1 M-parameter
Llama-architecture network over a character tokenizer (a standard fast tokenizer with a chat
template), warm-started by a short supervised run that stops once greedy accuracy reaches a
target (default 30 %), so GRPO groups start mixed: some right, some wrong. The warm-started model
is cached on disk and reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from grpokit.data.arithmetic import ProblemSpec, arithmetic_reward, split_problems
from grpokit.data.records import example_prompt_ids

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>"]
CHARS = list("0123456789+-*= ")
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'user' %}<|user|>{{ m['content'] }}"
    "{% elif m['role'] == 'assistant' %}<|assistant|>{{ m['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
TASK_VERSION = 1  # bump when anything below changes the cached model


@dataclass(frozen=True)
class ArithmeticSpec:
    """Everything that determines the warm-started model (its hash names the cache folder)."""

    terms: int = ProblemSpec.terms
    max_operand: int = ProblemSpec.max_operand
    ops: str = ProblemSpec.ops
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    intermediate_size: int = 512
    warm_target: float = 0.30
    warm_lr: float = 1e-3
    warm_batch: int = 64
    warm_max_steps: int = 3000
    warm_check_every: int = 20
    seed: int = 1234

    def key(self) -> str:
        return spec_key(self, version=TASK_VERSION)


def spec_key(spec, **extra) -> str:
    """A short hash of a dataclass's fields (plus extra): names the cache folder it determines."""
    blob = json.dumps({**asdict(spec), **extra}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def build_tokenizer(special: list[str] = SPECIAL_TOKENS, chars: list[str] = CHARS, chat_template: str = CHAT_TEMPLATE,
                    unk: str | None = None):
    """A character-level tokenizer saved and reloaded as a standard fast tokenizer (unk: the
    special token that stands for characters outside `chars`; None = such text is an error)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(special + chars)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    core.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    core.decoder = decoders.Fuse()
    core.add_special_tokens(special)
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        chat_template=chat_template, padding_side="left", **({"unk_token": unk} if unk else {}),
    )


def build_model(spec: ArithmeticSpec, tokenizer, seed: int, max_positions: int = 64):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.layers, num_attention_heads=spec.heads, num_key_value_heads=spec.heads,
        max_position_embeddings=max_positions, tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


# ---------------------------------------------------------------- warm start


def _sft_batch(tokenizer, problems: list[dict]):
    """Left-padded prompt+answer+EOS ids with labels only on the answer and EOS."""
    seqs, labels = [], []
    for p in problems:
        pids = example_prompt_ids(tokenizer, {"prompt": p["prompt"]})
        aids = tokenizer(p["answer"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        seqs.append(pids + aids)
        labels.append([-100] * len(pids) + aids)
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), tokenizer.pad_token_id)
    lab = torch.full((len(seqs), width), -100)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, (s, l) in enumerate(zip(seqs, labels)):
        ids[r, width - len(s):], lab[r, width - len(s):], mask[r, width - len(s):] = torch.tensor(s), torch.tensor(l), 1
    return ids, mask, lab


def warm_start(spec: ArithmeticSpec, log=print):
    """Supervised training on synthetic problems until greedy dev accuracy >= spec.warm_target."""
    from grpokit.eval.evaluate import greedy_accuracy

    tokenizer = build_tokenizer()
    model = build_model(spec, tokenizer, spec.seed)
    splits = split_problems(spec)
    rng = random.Random(spec.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.warm_lr, weight_decay=0.0)
    acc, step = 0.0, 0
    for step in range(1, spec.warm_max_steps + 1):
        ids, mask, lab = _sft_batch(tokenizer, rng.sample(splits["train"], spec.warm_batch))
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        loss = model(input_ids=ids, attention_mask=mask, position_ids=pos, labels=lab).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % spec.warm_check_every == 0:
            acc = greedy_accuracy(model, tokenizer, splits["dev"], arithmetic_reward, max_new_tokens=6)
            if acc >= spec.warm_target:
                break
    log(f"warm start: {step} supervised steps, greedy dev accuracy {acc:.3f}")
    return model, tokenizer, {"warm_steps": step, "warm_dev_accuracy": acc}


def cache_root() -> Path:
    return Path(os.environ.get("GRPOKIT_CACHE", Path.home() / ".cache" / "grpokit"))


def load_or_build(spec: ArithmeticSpec = ArithmeticSpec(), log=print, *, name: str = "arithmetic",
                  build=None) -> Path:
    """Path of the cached warm-started model folder, building it first when missing.

    The folder is written under a temporary name and renamed into place, so a killed build never
    leaves a half-written cache behind; a file lock makes concurrent callers (test workers,
    distributed ranks) wait for one build instead of each running their own."""
    import fcntl

    final = cache_root() / name / spec.key()
    if (final / "grpokit_task.json").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{spec.key()}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (final / "grpokit_task.json").exists():
            _build(spec, final, log, build or warm_start)
    return final


def _build(spec, final: Path, log, build) -> None:
    start = time.perf_counter()
    model, tokenizer, info = build(spec, log=log)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        info.update(spec=asdict(spec), seconds=round(time.perf_counter() - start, 2))
        (tmp / "grpokit_task.json").write_text(json.dumps(info, indent=2))
        if final.exists():  # an incomplete folder from a build killed before this code existed
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log(f"warm-started model cached at {final}")
