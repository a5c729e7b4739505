"""What a chat model's template says about a turn: the prompt ids, whether the generation prompt
opens a thinking block, and which tokens end the assistant's turn.

Chat models do not agree on these (the tokenizer/template facts of Qwen, DeepSeek-R1, Llama-3,
Phi, Mistral and Gemma; docs/models.md):

* DeepSeek-R1 templates, and Qwen3's with thinking on in some fine-tunes, end the generation
  prompt with ``<think>\\n``: the completion starts inside the thought and writes only
  ``</think>``. ``opens_think_block`` reads that off the rendered prompt, and
  ``example_prompt_ids`` records it on each example under ``think_opened_in_prompt``, where the
  rewards read it (grpokit.rewards.answers.opened_in).
* A turn may end with a token that is not the tokenizer's EOS (Phi's ``<|end|>``, Gemma's
  ``<end_of_turn>``), and generation_config may list several ids (Qwen2.5: 151645 and 151643;
  Llama-3.1: 128001, 128008, 128009). ``stop_token_ids`` collects all of them.
"""

from __future__ import annotations

from typing import Iterable

from grpokit.errors import DataError
from grpokit.rewards.answers import THINK_CLOSE, THINK_OPEN, THINK_OPENED_KEY

__all__ = ["encode_prompt", "opens_think_block", "end_of_turn_token", "stop_token_ids", "describe_ids",
           "PromptEncodeError"]

_MARKER = "GRPOKITTURNMARKER"  # assistant content whose rendering shows what the template puts after a turn
_TAIL_TOKENS = 16  # the end of a prompt that think detection decodes


class PromptEncodeError(DataError):
    """The tokenizer cannot turn an example into prompt ids (the message names the example)."""


def messages_of(example: dict, user: str) -> list[dict]:
    """The chat turns of one prompt: an optional system message, then the user's."""
    system = [{"role": "system", "content": example["system"]}] if example.get("system") else []
    return system + [{"role": "user", "content": user}]


def encode_prompt(tokenizer, messages: list[dict], template_kwargs: dict | None = None) -> list[int]:
    """Prompt ids of chat turns, tokenized once (templating to text and tokenizing again can add a
    second BOS). A tokenizer without a chat template (a base model such as stories260K) gets the
    turns' text joined by blank lines, with the special tokens it adds itself (its BOS)."""
    if hasattr(tokenizer, "chat_template") and not tokenizer.chat_template:
        return list(tokenizer("\n\n".join(m["content"] for m in messages))["input_ids"])
    out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                        **(template_kwargs or {}))
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def encode_example(tokenizer, example: dict, user: str, template_kwargs: dict | None = None) -> list[int]:
    """``encode_prompt`` of a record, which also records ``think_opened_in_prompt`` on it.
    Raises PromptEncodeError (a DataError) when the tokenizer cannot encode the text."""
    try:
        ids = encode_prompt(tokenizer, messages_of(example, user), template_kwargs)
    except Exception as exc:  # tokenizers raises its own types ("WordLevel error: Missing [UNK] ...")
        raise PromptEncodeError(f"its tokenizer cannot encode the prompt {user[:60]!r}: {exc}") from None
    decode = getattr(tokenizer, "decode", None)  # (a stand-in tokenizer in a test may have none)
    example[THINK_OPENED_KEY] = bool(decode) and opens_think_block(decode(ids[-_TAIL_TOKENS:]))
    return ids


def opens_think_block(prompt_text: str) -> bool:
    """True when a rendered generation prompt ends inside an open ``<think>`` block (DeepSeek-R1:
    ``...<｜Assistant｜><think>\\n``); False for Qwen3's ``enable_thinking=False`` prompt, which
    closes it (``<think>\\n\\n</think>\\n\\n``), and for prompts that never open one."""
    head, sep, after = prompt_text.rpartition(THINK_OPEN)
    return bool(sep) and THINK_CLOSE not in after and not after.strip()


def _special_strings(tokenizer) -> list[str]:
    """Texts of the tokenizer's special and added tokens, longest first."""
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    names = {str(getattr(t, "content", t)) for t in added.values()}
    names |= set(getattr(tokenizer, "all_special_tokens", []) or [])
    return sorted((n for n in names if n), key=len, reverse=True)


def end_of_turn_token(tokenizer) -> str | None:
    """The special token the chat template writes right after an assistant turn's content
    (``<|im_end|>``, ``<|eot_id|>``, ``<|end|>``, ``<end_of_turn>``, ``</s>``), or None when the
    tokenizer has no template, the template cannot render a plain exchange, or no special token
    follows the content."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _MARKER}]
    try:
        text = tokenizer.apply_chat_template(turns, tokenize=False)
    except Exception:  # a template that refuses this exchange (roles, strict alternation)
        return None
    if not isinstance(text, str) or _MARKER not in text:
        return None
    after = text[text.rindex(_MARKER) + len(_MARKER):].lstrip()
    return next((name for name in _special_strings(tokenizer) if after.startswith(name)), None)


def _as_ids(value) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple, set)) else [int(value)]


def stop_token_ids(tokenizer, model=None, extra: Iterable[int] = ()) -> list[int]:
    """Every id that ends the assistant's turn, sorted: the tokenizer's EOS, each id of the
    model's generation_config ``eos_token_id``, the template's end-of-turn token
    (``end_of_turn_token``) and ``extra`` (rollout.stop_token_ids)."""
    ids = set(_as_ids(getattr(tokenizer, "eos_token_id", None)))
    ids |= set(_as_ids(getattr(getattr(model, "generation_config", None), "eos_token_id", None)))
    turn_end = end_of_turn_token(tokenizer)
    if turn_end is not None:
        ids |= set(_as_ids(tokenizer.convert_tokens_to_ids(turn_end)))
    ids |= set(_as_ids(list(extra)))
    if not ids:
        raise DataError("the tokenizer has no EOS token and the model names no end-of-turn id; "
                        "give rollout.stop_token_ids")
    return sorted(ids)


def describe_ids(tokenizer, ids: Iterable[int]) -> str:
    """'151643 <|endoftext|>, 151645 <|im_end|>' for a log line."""
    return ", ".join(f"{i} {tokenizer.convert_ids_to_tokens(int(i))}" for i in ids)
