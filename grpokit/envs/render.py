"""Chat-template rendering for multi-turn episodes: the tokens appended after a model turn, and
the check that the ids of an episode are what a full re-render would tokenize.

The ids of an episode are built once and never re-tokenized: the first prompt, then each turn's
sampled ids as they were sampled, then the template's rendering of the new messages only (the
text a full render adds after the model's turn). ``retokenize_mismatch`` tells where a template
would have tokenized the conversation differently (a merge across the boundary, a template that
rewrites earlier turns): training on those re-tokenized ids would train on tokens the model never
produced, which is why the sampled ids are kept instead.
"""

from __future__ import annotations

import os


def render_text(tokenizer, messages: list[dict], *, tools: list[dict], template_kwargs: dict | None,
                add_generation_prompt: bool) -> str:
    """The chat template's text of `messages` (tools passed as ``tools=`` when there are any)."""
    return tokenizer.apply_chat_template(messages, tools=tools or None, tokenize=False,
                                         add_generation_prompt=add_generation_prompt, **(template_kwargs or {}))


def render_ids(tokenizer, messages: list[dict], *, tools: list[dict], template_kwargs: dict | None,
               add_generation_prompt: bool) -> list[int]:
    """Token ids of the template's rendering, tokenized in one go as for a prompt."""
    out = tokenizer.apply_chat_template(messages, tools=tools or None, tokenize=True,
                                        add_generation_prompt=add_generation_prompt, **(template_kwargs or {}))
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def appended_ids(tokenizer, history: list[dict], turn_text: str, content: str, new_messages: list[dict], *,
                 tools: list[dict], template_kwargs: dict | None) -> list[int]:
    """Ids of what the template renders after a model turn: the end of that turn that the model
    did not sample (a newline after the end-of-turn token), the new messages, and the next
    generation prompt.

    history: the messages before the turn; turn_text: the sampled ids decoded with special tokens
    kept; content: the turn's message content (turn_text without its end-of-turn token). The
    suffix is the full render (history + the turn + new messages) minus the text the ids already
    cover (history's generation prompt + turn_text); when the template renders the turn otherwise,
    the cut falls where the turn's content ends in the full render (found by rendering the content
    behind a marker; the sampled end-of-turn text is then skipped), and the re-render check
    reports the episode (Qwen3 drops the empty think block of earlier turns, for one)."""
    kw = {"tools": tools, "template_kwargs": template_kwargs}
    turn = [{"role": "assistant", "content": content}]
    full = render_text(tokenizer, history + turn + new_messages, add_generation_prompt=True, **kw)
    seen = render_text(tokenizer, history, add_generation_prompt=True, **kw) + turn_text
    if full.startswith(seen):
        tail = full[len(seen):]
    else:  # find where the content starts by rendering it behind a marker
        marked = [{"role": "assistant", "content": _MARKER + content}]
        at = render_text(tokenizer, history + marked + new_messages, add_generation_prompt=True, **kw).find(_MARKER)
        end = at + len(content)
        if at < 0 or full[at:end] != content:
            end = len(os.path.commonprefix([full, seen]))
        tail = full[end:]
        ending = turn_text[len(content):]  # the end-of-turn token's text, when the model sampled it
        tail = tail[len(ending):] if ending and tail.startswith(ending) else tail
    return list(tokenizer(tail, add_special_tokens=False)["input_ids"])


_MARKER = "\x00grpokit:new-messages\x00"


def retokenize_mismatch(tokenizer, messages: list[dict], ids: list[int], *, tools: list[dict],
                        template_kwargs: dict | None) -> int:
    """First position where `ids` differ from the template's tokenization of `messages` (-1 when
    they agree; the render may go on past `ids`, by the newline a template puts after a final
    end-of-turn token). The render ends with a generation prompt unless the last message is the
    model's."""
    gen = not messages or messages[-1]["role"] != "assistant"
    want = render_ids(tokenizer, messages, add_generation_prompt=gen, tools=tools, template_kwargs=template_kwargs)
    for i, (a, b) in enumerate(zip(ids, want)):
        if a != b:
            return i
    return -1 if len(want) >= len(ids) else len(want)
