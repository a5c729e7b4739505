"""Multiple-choice answers: the letter in ``C``, ``(C)``, ``\\text{(C)}``, ``C)``, ``C: 12``, ...

A letter counts as a choice only in a shape that marks it as one: in parentheses, with a closing
parenthesis, inside ``\\text{}`` / ``\\textbf{}`` / ``\\mathrm{}``, in bold, or bare and then
followed by nothing, by punctuation (``C.``, ``C:``, ``C,``) or by its value (``C 12``,
``C $\\frac12$``). A capital that starts a word or a sentence in prose ("A bit more than 5",
"I think") is never read as a choice, and neither is ``A = 5`` (a variable).
"""

from __future__ import annotations

import re

__all__ = ["choice_letter", "leading_choice", "last_line_choice"]

_LETTER = "A-J"
# \text{(C)}, \textbf{C}, \mathrm{(C)}, \mbox{C)}: unwrap to the inside first.
_WRAPPED = re.compile(r"\\(?:text|textbf|mathrm|mbox|textrm)\s*\{\s*(\(?\s*[A-Ja-j]\s*\)?)\s*\}")
_DECOR = re.compile(r"[*_`]+|\$+")
_PREFIX = re.compile(
    r"^(?i:(?:the\s+)?(?:correct\s+)?(?:option|choice|answer)\s*(?:is\s*)?[:=]?\s*)"
)
# (C), C) and bare C, in capitals. A bare letter must be followed by the end,
# punctuation, or whitespace and then something that is not a word (its value).
_LEADING = re.compile(
    rf"^(?:\(\s*([{_LETTER}])\s*\)|([{_LETTER}])\)|([{_LETTER}])"
    r"(?=$|[.:,;!]|\s*$|\s+(?:[-−$\\(\d]|or\b|and\b|not\b)))"
)


_LOWER = re.compile(r"^\(\s*([a-j])\s*\)")
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


def leading_choice(text: str, *, lower_case: bool = False) -> str | None:
    """The choice a piece of answer text opens with (``"(D), not (B)"`` gives ``D``,
    ``"C: 12"`` gives ``C``, ``"option (B)"`` gives ``B``), or None.

    Letters are capitals; ``lower_case=True`` also reads ``(c)`` (by default that is the
    first part of a multi-part answer, "(a) 12 (b) 15", not a choice).
    """
    s = _PREFIX.sub("", _unwrapped(text[:200].lstrip(" \t*:=")))
    match = _LEADING.match(s)
    if match is None and lower_case:
        match = _LOWER.match(s)
    if not match:
        return None
    return next(g for g in match.groups() if g is not None).upper()


def last_line_choice(text: str) -> str | None:
    """The choice on the last non-empty line of ``text``, when that line holds little besides
    it (``"**(C)**"``, ``"C) 12"``, ``"Answer (C)"``) or names it (``"12, which is choice (C)."``);
    else None."""
    lines = [line for line in text[-2000:].splitlines() if line.strip()]
    if not lines or len(lines[-1]) > 80:
        return None
    named = _NAMED.findall(lines[-1])  # "12, which is choice (C)."
    return named[-1].upper() if named else leading_choice(lines[-1])
