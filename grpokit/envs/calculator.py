"""The calculator tool, and the environment of the built-in arithmetic-tools task."""

from __future__ import annotations


from grpokit.rewards.numbers import evaluate_arithmetic

from .tools import Tool, ToolEnvironment

MAX_DIGITS = 60  # results longer than this are refused (no unbounded work on model input)


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression exactly.

    Args:
        expression: numbers joined by + - * / with parentheses, e.g. "123*45"
    """
    if len(expression) > 200:
        raise ValueError("expression longer than 200 characters")
    value = evaluate_arithmetic(expression)
    if value is None:
        raise ValueError(f"cannot evaluate {expression!r}")
    text = str(value.numerator) if value.denominator == 1 else f"{float(value):.6g}"
    if len(text) > MAX_DIGITS:
        raise ValueError("result too large")
    return text


def calculator_tool() -> Tool:
    return Tool.from_function(calculator, name="calculator")


def calculator_environment(tool_timeout: float = 5.0, *, bare: bool = True) -> ToolEnvironment:
    """The calculator as the only tool. bare: ``<tool_call>123*45</tool_call>`` calls it with the
    text as its expression (the demo's short syntax; JSON calls work too)."""
    return ToolEnvironment([calculator_tool()], bare_argument=("calculator", "expression") if bare else None,
                           tool_timeout=tool_timeout)


