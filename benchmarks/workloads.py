"""The two GRPO workloads of bench_grpo.py: one spec each, shared by every system measured.

* tiny: the built-in arithmetic demo (warm-started ~1 M-parameter Llama, character tokenizer,
  exact-answer reward), 8 prompts x G=8, at most 8 new tokens (EOS ends a row early).
* reasoning: a randomly initialised Llama of ~12 M parameters (hidden 256, 4 layers, vocab 32k),
  96-token prompts, every completion exactly 128 tokens (min = max new tokens), 4 prompts x G=8,
  and a synthetic reward under which 40 % of the prompts' groups get all-equal rewards.

Every system visits the prompts in the same fixed order (no shuffling), so step k of every
system samples for the same prompts and sees the same share of all-equal groups.
"""

from __future__ import annotations

import os
import random
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("GRPOKIT_CACHE", str(ROOT / ".cache"))

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>"]
CONSTANT_PATTERN = (True, True, False, False, False)  # prompt i gets a constant reward when pattern[i % 5]


@dataclass(frozen=True)
class Workload:
    name: str
    prompts_per_step: int
    group_size: int
    max_new_tokens: int
    min_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    lr: float = 1e-5
    # reasoning model shape (ignored by tiny, which uses the demo model)
    hidden_size: int = 256
    layers: int = 4
    heads: int = 4
    intermediate_size: int = 1024
    vocab_size: int = 32000
    prompt_tokens: int = 96
    num_prompts: int = 200
    seed: int = 0

    def key(self) -> str:
        from grpokit.tasks.arithmetic import spec_key

        return spec_key(self)


WORKLOADS = {
    "tiny": Workload("tiny", prompts_per_step=8, group_size=8, max_new_tokens=8, min_new_tokens=0),
    "reasoning": Workload("reasoning", prompts_per_step=4, group_size=8, max_new_tokens=128, min_new_tokens=128),
    # for tests only: the arithmetic task on a randomly initialised 2-layer, 32-wide model
    "smoke": Workload("smoke", prompts_per_step=2, group_size=2, max_new_tokens=4, min_new_tokens=0,
                      hidden_size=32, layers=2, heads=2, intermediate_size=64),
}


# ----------------------------------------------------------------------------- rewards


def synthetic_reward(completion: str, example: dict) -> float:
    """Deterministic: 0.0 for every completion of a 'constant' prompt (an all-equal group);
    otherwise one bit of a CRC of the text, so those groups are mixed except with chance 2/2^G."""
    if example["constant"]:
        return 0.0
    return float(zlib.crc32(completion.encode()) & 1)


def task_reward(workload: str):
    """The reward function (completion, example) -> float of a workload."""
    if workload in ("tiny", "smoke"):
        from grpokit.tasks.arithmetic import arithmetic_reward

        return arithmetic_reward
    return synthetic_reward


def reward_spec(workload: str) -> str:
    """The same reward as a grpokit plug-in spec ("module:function")."""
    if workload in ("tiny", "smoke"):
        return "grpokit.data.arithmetic:arithmetic_reward"
    return "benchmarks.workloads:synthetic_reward"


# ----------------------------------------------------------------------------- reasoning model


def build_word_tokenizer(vocab_size: int):
    """A 32k-entry word-level fast tokenizer over synthetic words w0, w1, ... with the demo's chat
    template. Decoding joins words with spaces, so text round-trips to the same ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from grpokit.tasks.arithmetic import CHAT_TEMPLATE

    words = [f"w{i}" for i in range(vocab_size - len(SPECIAL_TOKENS))]
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + words)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.add_special_tokens(SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        chat_template=CHAT_TEMPLATE, padding_side="left",
    )


def build_reasoning_model(w: Workload, tokenizer):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=w.vocab_size, hidden_size=w.hidden_size, intermediate_size=w.intermediate_size,
        num_hidden_layers=w.layers, num_attention_heads=w.heads, num_key_value_heads=w.heads,
        max_position_embeddings=512, tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(w.seed)
    return LlamaForCausalLM(config)


def reasoning_prompts(w: Workload) -> list[dict]:
    """num_prompts records whose chat-templated prompt is exactly prompt_tokens ids long
    (<s> <|user|> words... <|assistant|>), 40 % of them with a constant reward."""
    rng = random.Random(w.seed)
    n_words = w.vocab_size - len(SPECIAL_TOKENS)
    out = []
    for i in range(w.num_prompts):
        text = " ".join(f"w{rng.randrange(n_words)}" for _ in range(w.prompt_tokens - 3))
        out.append({"prompt": text, "constant": CONSTANT_PATTERN[i % len(CONSTANT_PATTERN)]})
    return out


def model_dir(workload: str) -> Path:
    """Folder with the workload's model and tokenizer (built once and cached)."""
    if workload == "tiny":
        from grpokit.tasks.arithmetic import load_or_build

        return load_or_build(log=lambda *_: None)
    w = WORKLOADS[workload]
    final = Path(os.environ["GRPOKIT_CACHE"]) / "bench" / f"{workload}-{w.key()}"
    if not (final / "config.json").exists():
        if workload == "smoke":
            from grpokit.tasks.arithmetic import ArithmeticSpec, build_model, build_tokenizer

            tok = build_tokenizer()
            model = build_model(ArithmeticSpec(hidden_size=w.hidden_size, layers=w.layers, heads=w.heads,
                                               intermediate_size=w.intermediate_size), tok, seed=w.seed)
        else:
            tok = build_word_tokenizer(w.vocab_size)
            model = build_reasoning_model(w, tok)
        tmp = final.with_name(final.name + f".tmp{os.getpid()}")
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if final.exists():  # built meanwhile by another process
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, final)
    return final


def examples(workload: str) -> list[dict]:
    """Prompt records in the order every system visits them."""
    if workload in ("tiny", "smoke"):
        from grpokit.tasks.arithmetic import ArithmeticSpec, split_problems

        return split_problems(ArithmeticSpec())["train"][:400]
    return reasoning_prompts(WORKLOADS[workload])


def load(workload: str):
    """(model, tokenizer) in float32 on the CPU, in train mode, from the cached folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = model_dir(workload)
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.train()
    return model, tok
