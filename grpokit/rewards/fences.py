"""Code blocks of a Markdown completion, read the way a Markdown renderer reads fences.

Rules (CommonMark's fenced code blocks, with the containers chat models put them in):

* A fence is a line of three or more backticks or tildes; its info string's first word is the
  block's language (``python``, ``py``..., or none). The block ends at a line holding only a fence
  of the same character, at least as long; a fence left unclosed runs to the end of the text.
* A fence may sit inside a block quote (``> ```python``) and/or a list item (``1. ```python``, or
  indented under the item). The container's marks are taken off every line of the block: the
  quote's ``>`` (as many levels as the opening fence had; a non-blank line without them ends the
  block, as in Markdown), and up to the opening fence's indentation in spaces (the list item's content
  column). Lines indented less simply lose what they have.
* Unlike strict CommonMark, a fence indented by four or more spaces still opens a block (lists
  nest to any depth), and a fence may follow text on its line (``Here: ```python``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_QUOTE = re.compile(r"[ ]{0,3}>[ ]?")
_LIST_MARK = re.compile(r"(?:[-*+]|\d{1,9}[.)])[ ]+")
_OPEN = re.compile(r"(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n]*)$")
_CLOSE = re.compile(r"[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*$")


@dataclass(frozen=True)
class Block:
    """One fenced block: `lang` is the info string's first word, lower-cased ("" when unlabeled)."""

    lang: str
    code: str
    closed: bool


def _strip_quotes(line: str, levels: int) -> str | None:
    """`line` without `levels` block-quote marks, or None when it has fewer (it leaves the quote)."""
    for _ in range(levels):
        match = _QUOTE.match(line)
        if match is None:
            return None if line.strip() else ""
        line = line[match.end():]
    return line


def _quote_levels(line: str) -> tuple[int, str]:
    levels = 0
    while (match := _QUOTE.match(line)) is not None:
        line, levels = line[match.end():], levels + 1
    return levels, line


def _opening(line: str) -> tuple[int, int, str, str] | None:
    """(quote levels, indentation to strip, fence, info) when `line` opens a fenced block."""
    levels, rest = _quote_levels(line)
    indent = len(rest) - len(rest.lstrip(" "))
    body = rest[indent:]
    while (mark := _LIST_MARK.match(body)) is not None:  # "1. ```python", "- 1. ```"
        indent, body = indent + mark.end(), body[mark.end():]
    match = _OPEN.match(body)
    if match is None and "```" in body:  # text before the fence on the same line
        match = _OPEN.match(body[body.index("```"):])
    if match is None or (match["fence"][0] == "`" and "`" in match["info"]):
        return None
    return levels, indent, match["fence"], match["info"].strip()


def _dedent(line: str, width: int) -> str:
    spaces = len(line) - len(line.lstrip(" "))
    return line[min(spaces, width):]


def fenced_blocks(text: str) -> list[Block]:
    """Every fenced code block of `text`, in order (see the module doc for the rules)."""
    lines, blocks, i = text.replace("\r\n", "\n").split("\n"), [], 0
    while i < len(lines):
        opened = _opening(lines[i])
        i += 1
        if opened is None:
            continue
        levels, indent, fence, info = opened
        body, closed = [], False
        while i < len(lines):
            line = _strip_quotes(lines[i], levels)
            if line is None:
                break
            i += 1
            close = _CLOSE.match(line)
            if close and close["fence"][0] == fence[0] and len(close["fence"]) >= len(fence):
                closed = True
                break
            if line.rstrip().endswith(fence) and fence[0] == "`" and line.strip() != fence:
                body.append(_dedent(line.rstrip()[: -len(fence)], indent))  # code``` on one line
                closed = True
                break
            body.append(_dedent(line, indent))
        if not closed and body and not body[-1].strip():
            body.pop()  # the text's final line break
        lang = info.split()[0].lower().strip("{}.") if info else ""
        blocks.append(Block(lang, "\n".join(body) + ("\n" if body else ""), closed))
    return blocks
