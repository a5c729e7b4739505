"""Finding the final answer in a completion.

Everything here is pure string work with linear-time regexes, so a 100 kB completion costs
well under a millisecond of scanning per pass. Numbers by value live in numbers.py, choices in
choices.py, and whether two answers match in matching.py.

Order of trust when looking for the final answer (after dropping a ``<think>`` block):

1. the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces nested to any depth;
2. the last ``#### x`` line (GSM8K's reference format);
3. the last explicit marker: "final answer", "answer is", "Answer:", "answer =";
4. the last number anywhere in the text.
"""

from __future__ import annotations

import re

from .choices import leading_choice
from .numbers import NUMBER_IN_TEXT as _NUMBER_IN_TEXT
from .numbers import evaluate_arithmetic, normalize_text, parse_number

__all__ = [
    "extract_answer",
    "extract_gold",
    "find_last_boxed",
    "strip_think",
    "parse_number",
    "normalize_text",
    "THINK_OPENED_KEY",
    "opened_in",
    "as_written",
]

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
THINK_OPENED_KEY = "think_opened_in_prompt"  # record key: the rendered prompt ends inside <think>


def opened_in(example, override: bool | None = None) -> bool:
    """Whether the completion starts inside a think block: ``override`` when given, else the
    record's ``think_opened_in_prompt`` (False when absent)."""
    if override is not None:
        return bool(override)
    return bool(example.get(THINK_OPENED_KEY, False)) if isinstance(example, dict) else False


def as_written(completion: str, opened: bool) -> str:
    """The completion with the prompt's ``<think>`` put back in front when the template opened
    it, so answer extraction sees the whole block: a thought never closed has no answer."""
    return THINK_OPEN + completion if opened and isinstance(completion, str) else completion


# "final answer" may stand alone before a line break ("**Final Answer**\n18"); a bare "answer"
# needs "is", ":" or "=" after it, so "let me answer 2 questions" is not a marker.
_MARKER = re.compile(
    r"final\s+answer(?:\s*\*\*)?\s*(?:is\b\s*[:=]?|[:=]|(?=\n))"
    r"|answer(?:\s*\*\*)?\s*(?:is\b\s*[:=]?|[:=])",
    re.IGNORECASE,
)
_HASHES = re.compile(r"####[ \t]*([^\n]*)")
_SENTENCE_END = re.compile(r"\.(?=\s|$)|[;!?\n]")
# Math spans; an escaped ``\\$`` inside ``$...$`` (``$\\$18$``) neither opens nor closes one.
_MATH_SPAN = re.compile(
    r"(?<!\\)\$\$((?:\\.|[^\\])+?)\$\$|(?<!\\)\$((?:\\.|[^$\\])+?)\$"
    r"|\\\((.+?)\\\)|\\\[(.+?)\\\]",
    re.DOTALL,
)
_ARITHMETIC = set("+-*/×÷=−^")
# Where a worked result follows: "16 - 3 - 4 = 9", "5 + 3, which is 8".
_RESULT_IS = re.compile(r"=|,?\s*\b(?i:which\s+)?(?i:is|equals|gives|makes)\b")
_EQUALS = re.compile("=")
_WORD_OPERATOR = re.compile(r"(?i:minus|plus|times|divided\s+by|multiplied\s+by)\b")
_LATEX_HINT = re.compile(r"\\[a-zA-Z]|[\^_{}]")
_BOX_COMMANDS = ("\\boxed", "\\fbox")
_MAX_BOX_CHARS = 5000
_MAX_BOX_TRIES = 8


def strip_think(text: str) -> str | None:
    """The part of ``text`` that is outside the think block: what follows the last ``</think>``.

    No ``<think>`` and no ``</think>``: the text itself. A ``<think>`` that is never closed means
    the model never finished thinking (usually truncated): None, there is no answer to read.
    """
    close = text.rfind(THINK_CLOSE)
    if close >= 0:
        return text[close + len(THINK_CLOSE):]
    if THINK_OPEN in text:
        return None
    return text


def _balanced_group(text: str, start: int) -> tuple[str, int] | None:
    """Content of the ``{...}`` group opening at ``text[start]``, and the index after it.

    Gives up after ``_MAX_BOX_CHARS``: no real answer is that long, and the bound keeps a
    pathological completion (thousands of unclosed boxes) linear.
    """
    depth = 0
    for k in range(start, min(len(text), start + _MAX_BOX_CHARS)):
        ch = text[k]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1:k], k + 1
    return None


def _boxed_at(text: str, i: int, command: str) -> str | None:
    """Read ``\\boxed{...}`` or ``\\boxed x`` starting at ``text[i]``; None if unterminated."""
    j = i + len(command)
    if j < len(text) and text[j].isalpha():  # \boxedfoo is another macro
        return None
    while j < len(text) and text[j] in " \t":
        j += 1
    if j < len(text) and text[j] == "{":
        group = _balanced_group(text, j)
        return None if group is None else group[0]
    match = re.match(r"[^\s$]+", text[j:j + 200])  # "\boxed 5": one token
    return match.group(0) if match and j > i + len(command) else None


def find_last_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{}``/``\\fbox{}`` in ``text`` (nested braces kept).

    A box that is never closed (a truncated completion) is skipped in favour of an earlier one.
    """
    candidates = []
    for command in _BOX_COMMANDS:
        pos, tries = text.rfind(command), 0
        while pos >= 0 and tries < _MAX_BOX_TRIES:
            content = _boxed_at(text, pos, command)
            if content is not None:
                candidates.append((pos, content))
                break
            pos, tries = text.rfind(command, 0, pos), tries + 1
    if not candidates:
        return None
    return max(candidates)[1].strip()


def _first_math_span(clause: str) -> tuple[int, str] | None:
    """The first ``$...$`` / ``\\(...\\)`` / ``\\[...\\]`` in ``clause`` that looks like math.

    ``$5 and $6`` is two prices, not a formula: a ``$...$`` pair counts as math only if its
    content has LaTeX in it or no spaces.
    """
    for match in _MATH_SPAN.finditer(clause):
        content = next(g for g in match.groups() if g is not None).strip()
        dollar = match.group(0).startswith("$")
        if content and (not dollar or _LATEX_HINT.search(content) or " " not in content):
            return match.start(), content
    return None


def _answer_from_clause(clause: str, choices: bool = False) -> str | None:
    """The answer in the text that follows a marker or ``####``: first formula, else first number.

    The clause stops at the end of its sentence, so "Answer: 18. I hope this helps with your 2
    questions" reads 18. A clause that opens with a choice reads whole ("(D), not (B)"); with
    ``choices`` (the reference is a choice) "C: 12" and "C" count as choices too.
    A clause that opens with a number reads that number, unless arithmetic follows it: a worked
    equation ("16 - 3 - 4 = 9", "x = 9") reads the part after the last ``=``, a false one
    ("5 = 4") reads whole. A clause with neither a number nor a formula counts only if it is
    one short word ("yes", "Monday"); "the answer is not obvious" is no answer.
    """
    clause = clause[:4000].strip().lstrip("*:= \t").strip()
    end = _SENTENCE_END.search(clause)
    stop = end.start() if end else len(clause)
    if leading_choice(clause[:stop], lenient=choices) is not None:  # "(C) 12", "(D), not (B)"
        return clause[:stop].strip().strip("*").rstrip(".,;:").strip()
    math = _first_math_span(clause[:2000])
    if math is not None and math[0] < stop:
        return math[1]
    clause = clause[:stop].strip().strip("*").strip()
    if not clause:
        return None
    if _LATEX_HINT.search(clause):
        return clause.rstrip(".,;:").strip() or None
    first = _NUMBER_IN_TEXT.match(clause)
    rest = clause[first.end():].lstrip() if first else ""
    if first and rest[:1] not in _ARITHMETIC and not _WORD_OPERATOR.match(rest):
        return first.group(0).strip()  # "18 (since 9*2 = 17+1)" reads 18
    sides = (_RESULT_IS if first else _EQUALS).split(clause)  # words count after a number only
    number = _NUMBER_IN_TEXT.search(sides[-1])
    if number:
        sides[-1] = number.group(0).strip()
        return " = ".join(map(str.strip, sides)) if _false_equation(sides) else sides[-1]
    if " " not in clause and len(clause) <= 30:
        return clause.rstrip(".,;:")
    return None


def _false_equation(sides: list[str]) -> bool:
    """True if ``a = b = ... = result`` is arithmetic whose sides differ in value."""
    if len(sides) < 2:
        return False
    values = [evaluate_arithmetic(side) for side in sides]
    return None not in values and len(set(values)) > 1


def _last_match(pattern: re.Pattern, text: str) -> re.Match | None:
    """The last non-overlapping match of pattern in text, or None."""
    last = None
    for last in pattern.finditer(text):
        pass
    return last


def _last_number(text: str) -> str | None:
    last = _last_match(_NUMBER_IN_TEXT, text)
    return last.group(0).strip() if last else None


def extract_answer(text: str, *, choices: bool = False) -> str | None:
    """The final answer written in ``text`` as a string, or None if there is none.

    See the module docstring for the order of trust. When a ``<think>...</think>`` block exists
    only the text after it is read, so a wrong intermediate number inside the thinking never
    counts; an unclosed ``<think>`` gives None. ``choices=True`` (the reference is a choice
    letter) also reads a bare letter after a marker as the answer ("The answer is C: 12").
    """
    if not isinstance(text, str):
        return None
    visible = strip_think(text)
    if visible is None or not visible.strip():
        return None
    boxed = find_last_boxed(visible)
    if boxed:
        return boxed
    hashes, marker = _last_match(_HASHES, visible), _last_match(_MARKER, visible)
    clauses = ([hashes.group(1)] if hashes else []) + ([visible[marker.end():marker.end() + 4000]] if marker else [])
    for clause in clauses:  # "#### x" first, then the text after the last answer marker
        found = _answer_from_clause(clause, choices)
        if found:
            return found
    return _last_number(visible)


def extract_gold(answer: str) -> str:
    """The reference answer from a dataset field: the part after ``####`` (GSM8K solutions), the
    last ``\\boxed{}`` (MATH solutions), otherwise the whole string (MATH-500 ``answer``)."""
    text = str(answer)
    if "####" in text:
        return text.rsplit("####", 1)[1].strip()
    if "\\boxed" in text or "\\fbox" in text:
        boxed = find_last_boxed(text)
        if boxed is not None:
            return boxed
    return text.strip()
