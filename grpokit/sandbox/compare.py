"""How an io program's stdout is judged against the expected output, as code judges do it.

Both texts are split into tokens at any whitespace (spaces, tabs, line breaks, ``\\r``), so spacing
and line layout do not matter. Tokens are compared one by one:

* two integers (``[+-]?digits``) must be the same integer (exact, any number of digits: compared
  as digit strings, never through ``int()``, so Python's integer-string conversion limit cannot
  reject a correct long answer);
* two other numbers (decimal or exponent notation) match within `tolerance`, absolute or relative
  to the expected value: ``|a - e| <= tolerance`` or ``|a - e| <= tolerance * |e|`` (the usual
  1e-6 of competitive-programming checkers; 0 = equal as floats);
* anything else must be the same text.
"""

from __future__ import annotations

import math
import re

DEFAULT_TOLERANCE = 1e-6
_INT = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _int_key(token: str) -> str:
    digits = token.lstrip("+-").lstrip("0") or "0"
    return digits if digits == "0" or not token.startswith("-") else "-" + digits


def same_token(actual: str, expected: str, tolerance: float = DEFAULT_TOLERANCE) -> bool:
    """One token of the output against one of the expected output (rules in the module doc)."""
    if actual == expected:
        return True
    if _INT.fullmatch(actual) and _INT.fullmatch(expected):
        return _int_key(actual) == _int_key(expected)
    if not (_NUMBER.fullmatch(actual) and _NUMBER.fullmatch(expected)):
        return False
    a, e = float(actual), float(expected)
    if not (math.isfinite(a) and math.isfinite(e)):
        return a == e
    diff = abs(a - e)
    return diff <= tolerance or diff <= tolerance * abs(e)


def check_tolerance(tolerance: float) -> None:
    """Raise ValueError unless `tolerance` is a number >= 0."""
    if not (isinstance(tolerance, (int, float)) and tolerance >= 0):
        raise ValueError(f"tolerance must be a number >= 0, got {tolerance!r}")


def same_output(actual: str, expected: str, tolerance: float = DEFAULT_TOLERANCE) -> bool:
    """True when `actual` has the tokens of `expected`, numbers within `tolerance` (module doc)."""
    check_tolerance(tolerance)
    got, want = actual.split(), expected.split()
    return len(got) == len(want) and all(same_token(a, e, tolerance) for a, e in zip(got, want))
