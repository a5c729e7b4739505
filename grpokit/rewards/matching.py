"""Is a predicted answer the same as the reference? ``answers_match(gold, pred)``.

The verdict is True, False, or None when it could not be judged (math-verify ran out of time,
or read only part of an answer; see latex.py). Cheapest first:

1. both sides plain numbers (``1,234``, ``$18.00``, ``negative 5``, ``1.5e3``, ``\\frac{3}{4}``,
   ``50\\%``): exact value comparison with ``fractions.Fraction``, no sympy at all;
2. the same text after light normalisation (spacing macros, ``\\left``/``\\right``, ``\\dfrac``);
3. a prediction that opens with a choice (``(C) 12``): against a choice reference (``C``,
   ``(C)``, ``\\text{(C)}``) its letter, against any other the value after the letter
   (see choices.py);
4. a prediction that is an equation while the reference is not: ``x = 5`` (a lone variable,
   possibly with a subscript or an argument: ``x_1``, ``\\theta``, ``f(2)``, ``AB``) is compared
   by its other side (``5 = x`` too); any other equation only if it holds (``16-3-4 = 9``
   reads as 9), so ``5 = 4`` is not 4; a system (``x = 2, y = 3``) goes to math-verify whole;
5. math-verify, under a time limit, with the partial-parse guard (latex.py).
"""

from __future__ import annotations

import re

from .choices import choice_letter, split_choice
from .latex import DEFAULT_TIMEOUT_S, latex_equivalent
from .numbers import evaluate_arithmetic, normalize_text, parse_number

__all__ = ["answers_match", "equation_sides"]

_MAX_ANSWER_CHARS = 1000
_SIGN_WORD = re.compile(r"^(?i:negative|minus)\s+(?=[\d.$\\(])")
_LONE_VARIABLE = re.compile(
    r"^(?:\\(?:angle|overline|vec|hat|bar|mathbf)\s*\{?\s*)?(?:[A-Za-z]{1,3}|\\[a-zA-Z]+)\s*\}?"
    r"(?:_\s*(?:\{[^{}=]*\}|\w))?'*(?:\s*\([^()=]*\))?$"
)
_OPENERS, _CLOSERS = "{([", "})]"
_NOT_EQUATION = ("<", ">", "!", "=")  # before "=": <=, >=, !=, ==
_AND = re.compile(r"\\(?:text|mbox|textrm)\s*\{\s*and\s*\}|\\quad|\band\b")


def _split_top_level(answer: str, separators: str) -> list[str]:
    """``answer`` split at each character of ``separators`` outside brackets.

    An ``=`` that is part of ``<=``, ``>=``, ``!=`` or ``==`` does not split.
    """
    parts, depth, start = [], 0, 0
    for k, ch in enumerate(answer):
        if ch in _OPENERS:
            depth += 1
        elif ch in _CLOSERS:
            depth -= 1
        elif ch in separators and depth == 0:
            if ch == "=" and (answer[k - 1:k] in _NOT_EQUATION or answer[k + 1:k + 2] == "="):
                continue
            parts.append(answer[start:k])
            start = k + 1
    parts.append(answer[start:])
    return [part.strip() for part in parts]


def equation_sides(answer: str) -> list[str]:
    """The sides of ``answer`` split at each ``=`` outside brackets (one side if none)."""
    return _split_top_level(answer, "=")


def _is_system(answer: str) -> bool:
    """``x = 2, y = 3`` (or ``;``, ``\\text{ and }``): several variables' values (math-verify's)."""
    equations = [equation_sides(item) for item in _split_top_level(_AND.sub(",", answer), ",;")]
    equations = [sides for sides in equations if len(sides) > 1]
    return len(equations) >= 2 and all(_LONE_VARIABLE.match(sides[0]) for sides in equations)


def _equation_verdict(gold: str, sides: list[str], timeout_s: float | None):
    """Verdict for a predicted equation ``sides[0] = sides[1] = ...`` against a non-equation."""
    if _LONE_VARIABLE.match(sides[0]):
        return answers_match(gold, "=".join(sides[1:]), timeout_s=timeout_s)
    if len(sides) == 2 and _LONE_VARIABLE.match(sides[1]):  # "5 = x"
        return answers_match(gold, sides[0], timeout_s=timeout_s)
    values = [evaluate_arithmetic(side) for side in sides]
    if None not in values:
        holds = len(set(values)) == 1
    else:
        holds = latex_equivalent(sides[0], sides[-1], timeout_s=timeout_s)
        if holds is None:
            return None
    return answers_match(gold, sides[-1], timeout_s=timeout_s) if holds else False


def answers_match(gold: str, pred: str, *, timeout_s: float | None = DEFAULT_TIMEOUT_S):
    """True if ``pred`` is the same answer as ``gold``; None if it could not be judged.

    ``gold`` is the bare reference answer (see ``extract_gold``), ``pred`` the extracted one.
    """
    gold_value = parse_number(gold)
    if gold_value is not None:
        pred_value = parse_number(pred)
        if pred_value is not None:
            return gold_value == pred_value
    if normalize_text(gold) == normalize_text(pred):
        return True
    letter = choice_letter(gold)
    chosen = split_choice(pred, lenient=letter is not None)
    if chosen is not None:
        if letter is not None:
            return chosen[0] == letter
        if chosen[1]:  # "(C) 12" against 12: the value after the letter is the answer
            return answers_match(gold, chosen[1], timeout_s=timeout_s)
    if len(pred) > max(_MAX_ANSWER_CHARS, 4 * len(gold)):
        return False  # a page-long "answer" is wrong; no need to spend seconds in sympy on it
    pred = _SIGN_WORD.sub("-", pred.strip())
    if len(equation_sides(gold)) == 1:
        sides = equation_sides(pred)
        if len(sides) > 1 and not _is_system(pred):
            return _equation_verdict(gold, sides, timeout_s)
    return latex_equivalent(gold, pred, timeout_s=timeout_s)
