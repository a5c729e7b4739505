"""Reading plain numbers by exact value: signs (also in words), currency, units, percent,
degrees, fractions, scientific notation, and the arithmetic of a worked equation.

Every value is a ``fractions.Fraction``, so ``1.5e3`` and ``1500`` or ``6.02 \\times 10^{23}``
and ``6.02e23`` are equal exactly, never up to a float tolerance. Pure string work with
linear-time regexes; no sympy.
"""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["parse_number", "normalize_text", "evaluate_arithmetic", "NUMBER_IN_TEXT"]

NUM = r"(?:\d{1,3}(?:(?:,|\{,\})\d{3})+|\d+)(?:\.\d+)?|\.\d+"
# Signs as people write them: "-", the minus sign, dashes, and the words "negative"/"minus".
# A sign word counts only where no operand stands before it ("16 minus 3" is a subtraction).
_MINUS_CHARS = "-−–‒﹣－"
_SIGN_WORD = r"(?<![\d)\]}%]\s)(?<![\d)\]}%])\b(?i:negative|minus)\s*"
_CURRENCY_SIGN = r"(?:\\?\$|[€£¥₹])"
# "6.02 \times 10^{23}", "6.02\cdot10^{23}", "6.02 × 10^23", "6.02 × 10²³", "6.02*10^23";
# and "1.5e3", "2.5E-4".
_SUPERSCRIPTS = "⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺"
_TIMES_TEN = (r"\s*(?:\\times|\\cdot|[×·*x])\s*10\s*(?:\^\s*(?:\{\s*[-−+]?\d+\s*\}|[-−+]?\d+)"
              rf"|[{_SUPERSCRIPTS}]+)")
_E_EXPONENT = r"[eE][-+]?\d+(?![\w.])"
# A number token in running text: optional sign (a sign character not glued to a preceding word
# or number, so "16-3" reads as 16 and 3; or a sign word), optional currency, digits with
# thousands separators, decimals, an optional exponent, an optional "/denominator", an
# optional percent sign.
# (The leading lookahead only skips positions where no token can start: 2x faster scans.)
NUMBER_IN_TEXT = re.compile(
    rf"(?=[{_MINUS_CHARS}\d.$\\€£¥₹nNmM])"
    rf"(?:(?<![\w.])[{_MINUS_CHARS}]|{_SIGN_WORD})?(?:{_CURRENCY_SIGN}\s*[{_MINUS_CHARS}]?\s*)?"
    rf"(?:{NUM})(?:{_E_EXPONENT}|{_TIMES_TEN})?(?:\s*/\s*\d+(?:\.\d+)?)?(?:\s*\\?%)?"
)

_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mbox|textrm)\s*\{([^{}]*)\}")
_FRAC = re.compile(r"^(-?)\\[dt]?frac\s*(?:\{([^{}]+)\}|(\d))\s*(?:\{([^{}]+)\}|(\d))$")
_PLAIN = re.compile(r"^[-+]?(?:" + NUM + r")(?:/(?:" + NUM + r"))?$")
_SCIENTIFIC = re.compile(
    r"^([-+]?(?:\d+(?:\.\d+)?|\.\d+))(?:[eE]([-+]?\d+)|(?:\\times|\\cdot|[×·*x])10\^"
    r"(?:\{([-+]?\d+)\}|([-+]?\d+)))$"
)
_UNIT_WORDS = re.compile(r"(?<=[\d%])\s+([A-Za-z][A-Za-z.\s]*)$")
_SINGLE_LETTER_UNITS = {"m", "g", "s", "h", "l", "L"}
_SPACING = re.compile(r"\\[,!;: ]|\\quad|\\qquad|~")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree")
_CURRENCY = re.compile(r"\\\$|\$|€|£|¥|₹|\b(?:USD|EUR|GBP|Rs\.?)\s*")
_LEADING_SIGN_WORD = re.compile(r"^(?i:negative|minus)\s*(?=[\d.$\\€£¥₹])")
_MINUS = re.compile(f"[{_MINUS_CHARS}]")
_SUPERSCRIPT = re.compile(f"[{_SUPERSCRIPTS}]+")
_FROM_SUPERSCRIPT = str.maketrans(_SUPERSCRIPTS, "0123456789-+")
_INTEGER = re.compile(r"-?\d{1,30}")


def normalize_text(answer: str) -> str:
    """Light canonical form used for exact string comparison before any parsing.

    Drops spacing macros, ``\\left``/``\\right``, ``$`` delimiters and all whitespace, maps
    ``\\dfrac``/``\\tfrac`` to ``\\frac``, and lower-cases nothing (``x`` and ``X`` differ).
    """
    s = answer.strip()
    if len(s) >= 2 and s[0] == "$" and s[-1] == "$":
        s = s.strip("$")
    s = _SPACING.sub("", s)
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = re.sub(r"\s+", "", s)
    return s.rstrip(".")


def _strip_decorations(s: str) -> str:
    """Remove what does not change a number's value: currency, percent, degrees, unit words;
    a leading sign word becomes ``-``."""
    s = _TEXT_WRAPPER.sub(lambda m: " " + m.group(1), s).strip()
    s = _LEADING_SIGN_WORD.sub("-", s)
    s = _SUPERSCRIPT.sub(lambda m: "^{" + m.group(0).translate(_FROM_SUPERSCRIPT) + "}", s)
    s = _SPACING.sub("", s).replace("{,}", ",")
    s = _MINUS.sub("-", s).replace("\\%", "").replace("%", "")
    s = _DEGREES.sub("", s)
    s = _CURRENCY.sub("", s).strip().rstrip(".")
    unit = _UNIT_WORDS.search(s)
    if unit:
        word = unit.group(1).strip()
        if len(word) >= 2 or word in _SINGLE_LETTER_UNITS:
            s = s[: unit.start()]
    s = s.replace(" ", "")
    return "-" + s[2:] if s.startswith("--") else s  # "-$-5" is not "+5": the sign said twice


def parse_number(answer: str) -> Fraction | None:
    """The exact value of an answer that is a plain number, else None.

    Plain means: an optional sign (``-``, ``−``, "negative", "minus"), digits (``1,234``
    separators allowed), an optional decimal part, an optional exponent (``1.5e3``,
    ``6.02 \\times 10^{23}``), an optional ``/denominator`` or a ``\\frac{a}{b}`` of such
    numbers, with currency, percent, degrees and trailing unit words ignored. ``2\\sqrt{3}``,
    ``x=5`` or ``40_9`` are not plain and return None (they go to math-verify).
    """
    if not isinstance(answer, str) or len(answer) > 100:
        return None
    s = answer.strip()
    if _INTEGER.fullmatch(s):  # the common case, kept cheap: "18", "-5"
        return Fraction(int(s))
    if len(s) >= 2 and s[0] == "$" and s[-1] == "$" and not s[1:-1].strip().startswith("$"):
        s = s[1:-1]
    s = _strip_decorations(s)
    if not s:
        return None
    frac = _FRAC.match(s)
    if frac:
        sign, num_a, num_b, den_a, den_b = frac.groups()
        num, den = _plain_value(num_a or num_b), _plain_value(den_a or den_b)
        if num is None or den is None or den == 0:
            return None
        return -num / den if sign else num / den
    return _plain_value(s)


def _plain_value(s: str) -> Fraction | None:
    s = s.strip()
    scientific = _SCIENTIFIC.match(s)
    if scientific:
        mantissa, *exponents = scientific.groups()
        exponent = int(next(e for e in exponents if e is not None))
        if abs(exponent) > 400:  # no answer is that large; keep Fraction arithmetic cheap
            return None
        return Fraction(mantissa) * Fraction(10) ** exponent
    if not _PLAIN.match(s):
        return None
    s = s.replace(",", "")
    if "/" in s:
        num, den = s.split("/")
        den_value = Fraction(den)
        return None if den_value == 0 else Fraction(num) / den_value
    return Fraction(s)


# ----------------------------------------------------------------------------- worked arithmetic

_OPERATORS = {"\\times": "*", "\\cdot": "*", "\\div": "/", "×": "*", "÷": "/", "·": "*"}
_ARITH_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?|\.\d+)|([-+*/()]))")


def evaluate_arithmetic(expression: str) -> Fraction | None:
    """Exact value of ``expression`` if it is arithmetic on plain numbers, else None.

    Numbers, ``+ - * / × ÷ \\times \\cdot \\div`` and parentheses, with the usual precedence;
    also anything ``parse_number`` reads whole (``$18``, ``1.5e3``). Division by zero, letters
    or any other LaTeX give None. Used to tell a worked equation (``16 - 3 - 4 = 9``) from a
    false one (``5 = 4``).
    """
    value = parse_number(expression)
    if value is not None:
        return value
    s = _MINUS.sub("-", expression)
    for macro, op in _OPERATORS.items():
        s = s.replace(macro, op)
    s = s.replace("\\left", "").replace("\\right", "")
    tokens, pos = [], 0
    s = s.strip()
    while pos < len(s):
        match = _ARITH_TOKEN.match(s, pos)
        if not match:
            return None
        tokens.append(Fraction(match.group(1)) if match.group(1) else match.group(2))
        pos = match.end()
    if not tokens or len(tokens) > 200:
        return None
    try:
        value, rest = _sum(tokens)
    except (IndexError, ZeroDivisionError, TypeError):
        return None
    return value if not rest else None


def _sum(tokens):
    value, tokens = _product(tokens)
    while tokens and tokens[0] in ("+", "-"):
        op, (right, tokens) = tokens[0], _product(tokens[1:])
        value = value + right if op == "+" else value - right
    return value, tokens


def _product(tokens):
    value, tokens = _unary(tokens)
    while tokens and tokens[0] in ("*", "/"):
        op, (right, tokens) = tokens[0], _unary(tokens[1:])
        value = value * right if op == "*" else value / right
    return value, tokens


def _unary(tokens):
    head = tokens[0]
    if head == "-":
        value, rest = _unary(tokens[1:])
        return -value, rest
    if head == "(":
        value, rest = _sum(tokens[1:])
        if not rest or rest[0] != ")":
            raise IndexError("unclosed parenthesis")
        return value, rest[1:]
    if isinstance(head, Fraction):
        return head, tokens[1:]
    raise TypeError(f"unexpected {head!r}")
