"""The built-in tool task (data.source arithmetic-tools): 3-digit x 2-digit products, which the
demo-sized model cannot do in its head, with a calculator it can call.

The model is the arithmetic demo's ~1 M-parameter Llama over a character tokenizer, with four
more special tokens for the demo's tool-call format (docs/tools.md):

    <|user|>123*45<|assistant|><tool_call>123*45</tool_call>          (the model's first turn)
    <tool_response>5535</tool_response><|assistant|>                  (the tool result, appended)
    5535</s>                                                          (the model's answer)

The warm start is a short supervised run on as many tool-path as direct-answer sequences, where
the first model token (call or answer) is labelled so that it calls with probability `tool_share`
(the tool path teaches copying on every one of its rows); the direct answers are mostly wrong:
the products are too hard. So at the start a sampled
group has some episodes that call the tool and some that guess, and greedy decoding guesses:
GRPO has to learn to call it. The warm start stops once the tool path is copied well enough
(teacher-forced: the call and the answer after the tool result right on `copy_target` of dev).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from grpokit.data.arithmetic import ProductSpec, split_problems
from grpokit.tasks.arithmetic import SPECIAL_TOKENS, build_model, build_tokenizer, load_or_build, spec_key

TOOL_TOKENS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<unk>"]
TOOL_CHARS = list("0123456789+-*/=(). ")
TOOL_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'user' %}<|user|>{{ m['content'] }}"
    "{% elif m['role'] == 'assistant' %}<|assistant|>{{ m['content'] }}"
    "{% if not m['content'].endswith('</tool_call>') %}{{ eos_token }}{% endif %}"
    "{% elif m['role'] == 'tool' %}<tool_response>{{ m['content'] }}</tool_response>{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
TASK_VERSION = 1  # bump when anything below changes the cached model


@dataclass(frozen=True)
class ToolsSpec:
    """Everything that determines the warm-started tool model (its hash names the cache folder)."""

    digits_a: int = 3
    digits_b: int = 2
    hidden_size: int = 64
    layers: int = 2
    heads: int = 2
    intermediate_size: int = 256
    max_positions: int = 64
    tool_share: float = 0.15  # P(the first token is <tool_call>) that the warm start teaches
    copy_target: float = 0.6
    warm_lr: float = 3e-3
    warm_batch: int = 24  # tool-path and as many direct-answer sequences per step
    warm_max_steps: int = 3000
    warm_check_every: int = 20
    seed: int = 1234

    def key(self) -> str:
        return spec_key(self, version=TASK_VERSION)


def build_tool_tokenizer():
    return build_tokenizer(SPECIAL_TOKENS + TOOL_TOKENS, TOOL_CHARS, TOOL_CHAT_TEMPLATE, unk="<unk>")


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def example_pieces(tokenizer, problem: dict, use_tool: bool) -> tuple[list[int], list[int]]:
    """(ids, labels) of one warm-start sequence: labels on the model's tokens only (-100 on the
    prompt and the tool result), as the multi-turn loss mask has them."""
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": problem["prompt"]}],
                                           add_generation_prompt=True, tokenize=False)
    pieces = [(prompt, False)]
    if use_tool:
        pieces += [(f"<tool_call>{problem['prompt']}</tool_call>", True),
                   (f"<tool_response>{problem['answer']}</tool_response><|assistant|>", False)]
    pieces += [(problem["answer"] + tokenizer.eos_token, True)]
    ids, labels = [], []
    for text, trained in pieces:
        part = _ids(tokenizer, text)
        ids += part
        labels += part if trained else [-100] * len(part)
    return ids, labels


def _batch(tokenizer, problems: list[dict], use_tool: list[bool], decide: list[bool] | None = None):
    """Left-padded ids, attention mask and labels; decide[i] False leaves row i's first model token
    (the choice between calling and answering) unlabelled."""
    seqs = [example_pieces(tokenizer, p, t) for p, t in zip(problems, use_tool)]
    for (_, labels), keep in zip(seqs, decide or [True] * len(seqs)):
        if not keep:
            labels[next(i for i, x in enumerate(labels) if x != -100)] = -100
    width = max(len(s) for s, _ in seqs)
    ids = torch.full((len(seqs), width), tokenizer.pad_token_id)
    lab = torch.full((len(seqs), width), -100)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, (s, l) in enumerate(seqs):
        ids[r, width - len(s):], lab[r, width - len(s):], mask[r, width - len(s):] = torch.tensor(s), torch.tensor(l), 1
    return ids, mask, lab


def _loss_and_copy(model, ids, mask, lab):
    """Mean token loss on the labels, and the share of rows whose labelled tokens are all argmax-right."""
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, labels=lab)
    right = (out.logits[:, :-1].argmax(-1) == lab[:, 1:]) | (lab[:, 1:] == -100)
    return out.loss, float(right.all(-1).float().mean())


def warm_start(spec: ToolsSpec, log=print):
    """Supervised training on a mix of tool-calling and direct answers (see the module)."""
    tokenizer = build_tool_tokenizer()
    model = build_model(spec, tokenizer, spec.seed, max_positions=spec.max_positions)
    splits = split_problems(ProductSpec(spec.digits_a, spec.digits_b))
    rng = random.Random(spec.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.warm_lr, weight_decay=0.0)
    # the <tool_call> decision is GRPO's to learn; the dev check measures the copying
    dev = _batch(tokenizer, splits["dev"], [True] * len(splits["dev"]), [False] * len(splits["dev"]))
    n = spec.warm_batch
    labelled = spec.tool_share / (1 - spec.tool_share)  # of tool rows, so P(call) = tool_share at the start
    copy, step = 0.0, 0
    for step in range(1, spec.warm_max_steps + 1):
        problems = rng.sample(splits["train"], 2 * n)
        loss, _ = _loss_and_copy(model, *_batch(tokenizer, problems, [True] * n + [False] * n,
                                                [rng.random() < labelled for _ in range(n)] + [True] * n))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % spec.warm_check_every == 0:
            with torch.no_grad():
                _, copy = _loss_and_copy(model, *dev)
            if copy >= spec.copy_target:
                break
            if step % (5 * spec.warm_check_every) == 0:
                log(f"warm start (arithmetic-tools): step {step}, loss {float(loss.detach()):.3f}, tool path copied right on {copy:.3f} of dev")
    log(f"warm start (arithmetic-tools): {step} supervised steps, tool path copied right on {copy:.3f} of dev")
    return model, tokenizer, {"warm_steps": step, "warm_dev_copy": copy}


def load_or_build_tools(spec: ToolsSpec = ToolsSpec(), log=print):
    """Path of the cached warm-started tool model, building it first when missing."""
    return load_or_build(spec, log, name="arithmetic-tools", build=warm_start)
