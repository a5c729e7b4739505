"""Tool calls in the formats models are trained on, read from a model turn's text.

* ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``: Qwen2.5/Qwen3 and Hermes-style
  templates (arguments may also be a JSON string, as OpenAI-style messages carry them).
* ``<tool_call>TEXT</tool_call>`` whose TEXT is not JSON, when a ``bare_tool`` is given: a call of
  that tool with TEXT as its only argument (the demo's short syntax for a character model).
* a fenced ```` ```python ```` block: a call of the ``python`` tool with the block as ``code``.

A call that cannot be read becomes a ToolCall with ``error`` set (the model then reads the error).
"""

from __future__ import annotations

import json
import re

from .base import ToolCall

TOOL_CALL_RE = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
PYTHON_FENCE_RE = re.compile(r"```python[ \t]*\n(.*?)```", re.DOTALL)
TOOL_CALL_CLOSE = "</tool_call>"


def _json_call(body: str) -> ToolCall:
    try:
        obj = json.loads(body)
    except json.JSONDecodeError as exc:
        return ToolCall("", {}, error=f"the tool call is not valid JSON: {exc.msg} at character {exc.pos}")
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return ToolCall("", {}, error='the tool call needs {"name": ..., "arguments": {...}}')
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return ToolCall(obj["name"], {}, error="the tool call's arguments are not valid JSON")
    if not isinstance(args, dict):
        return ToolCall(obj["name"], {}, error="the tool call's arguments must be a JSON object")
    return ToolCall(obj["name"], args)


def parse_tool_calls(text: str, *, bare_tool: tuple[str, str] | None = None, python: bool = False) -> list[ToolCall]:
    """The calls in a model turn, in the order written. bare_tool: (tool name, argument name) that
    non-JSON ``<tool_call>`` contents call; python: read fenced python blocks as calls of the
    ``python`` tool (argument ``code``)."""
    found: list[tuple[int, ToolCall]] = []
    for m in TOOL_CALL_RE.finditer(text):
        body = m.group(1).strip()
        if bare_tool is not None and not body.startswith("{"):
            call = ToolCall(bare_tool[0], {bare_tool[1]: body})
        else:
            call = _json_call(body)
        found.append((m.start(), call))
    if python:
        found += [(m.start(), ToolCall("python", {"code": m.group(1)})) for m in PYTHON_FENCE_RE.finditer(text)]
    return [call for _, call in sorted(found, key=lambda x: x[0])]
