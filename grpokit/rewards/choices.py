"""Multiple-choice answers: the letter in ``C``, ``(C)``, ``\\text{(C)}``, ``C)``, ``C: 12``, ...

A letter counts as a choice only in a shape that marks it as one: in parentheses, with a closing
parenthesis, inside ``\\text{}`` / ``\\textbf{}`` / ``\\mathrm{}``, in bold, or bare and then
followed by nothing, by punctuation (``C.``, ``C:``, ``C,``) or by its value (``C 12``,
``C $\\frac12$``). A capital that starts a word or a sentence in prose ("A bit more than 5",
"I think") is never read as a choice, and neither is ``A = 5`` (a variable).
"""

from __future__ import annotations

import re

__all__ = ["choice_letter", "leading_choice", "split_choice", "last_line_choice"]

_LETTER = "A-J"
# \text{(C)}, \textbf{C}, \mathrm{(C)}, \mbox{C)}: unwrap to the inside first.
_WRAPPED = re.compile(r"\\(?:text|textbf|mathrm|mbox|textrm)\s*\{\s*(\(?\s*[A-Ja-j]\s*\)?)\s*\}")
_DECOR = re.compile(r"\*+|(?<!\\)\$+")
_PREFIX = re.compile(
    r"^(?i:(?:the\s+)?(?:correct\s+)?(?:option|choice|answer)\s*(?:is\s*)?[:=]?\s*)"
)
# Strict (any answer): (C) or C), in capitals. Lenient (against a choice reference): also
# (c), and a bare C followed by the end, punctuation, or whitespace and then something that is
# not a word (its value).
_STRICT = re.compile(rf"^(?:\(\s*([{_LETTER}])\s*\)|([{_LETTER}])\))")
_LENIENT = re.compile(
    rf"^(?:\(\s*([{_LETTER}a-j])\s*\)|([{_LETTER}])\)|([{_LETTER}])"
    r"(?=$|[.:,;!]|\s*$|\s+(?:[-−$\\(\d]|or\b|and\b|not\b)))"
)
_NAMED = re.compile(rf"(?i:\bis|answer|:)\s+(?i:the\s+)?(?i:option|choice)\s+\(?([{_LETTER}])\b\)?")


def _unwrapped(text: str) -> str:
    return _DECOR.sub("", _WRAPPED.sub(r"\1", text)).strip()


def choice_letter(answer: str) -> str | None:
    """The letter if ``answer`` (a reference) is a bare choice: ``C``, ``(C)``, ``\\text{(C)}``,
    ``C)``, ``C.``; else None. Upper case; a lone lower-case letter is a variable, not a
    choice, unless it is in parentheses."""
    s = _unwrapped(str(answer))
    match = re.fullmatch(rf"\(\s*([{_LETTER}a-j])\s*\)|([{_LETTER}])[.)]?", s)
    if not match:
        return None
    return (match.group(1) or match.group(2)).upper()


def split_choice(text: str, *, lenient: bool = False) -> tuple[str, str] | None:
    """``(letter, rest)`` if ``text`` opens with a choice, else None: ``"(C) 12"`` gives
    ``("C", "12")``, ``"(D), not (B)"`` gives ``("D", "not (B)")``.

    Strict by default (``(C)``, ``C)``), as any answer may open with a capital; ``lenient``
    (when the reference is a choice) also reads ``C``, ``C.``, ``C: 12``, ``C 12``, ``(c)``.
    """
    s = _PREFIX.sub("", _unwrapped(text[:200].lstrip(" \t*:=")))
    match = (_LENIENT if lenient else _STRICT).match(s)
    if not match:
        return None
    letter = next(g for g in match.groups() if g is not None).upper()
    return letter, s[match.end():].strip(" \t.:,;")


def leading_choice(text: str, *, lenient: bool = False) -> str | None:
    """The letter of the choice ``text`` opens with, or None (see ``split_choice``)."""
    found = split_choice(text, lenient=lenient)
    return found[0] if found else None


def last_line_choice(text: str) -> str | None:
    """The choice on the last non-empty line of ``text``, when that line holds little besides
    it (``"**(C)**"``, ``"C) 12"``, ``"Answer (C)"``) or names it (``"12, which is choice (C)."``);
    else None."""
    lines = [line for line in text[-2000:].splitlines() if line.strip()]
    if not lines or len(lines[-1]) > 80:
        return None
    named = _NAMED.findall(lines[-1])  # "12, which is choice (C)."
    return named[-1].upper() if named else leading_choice(lines[-1], lenient=True)
