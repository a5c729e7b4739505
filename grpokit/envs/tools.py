"""Tools as plain Python functions, and the environment that serves them.

A tool is described by its signature and its Google-style docstring (``Args:`` lists every
argument); transformers.utils.get_json_schema turns that into the JSON schema chat templates take
as ``tools=``. A call's result is ``str(return value)``; anything that goes wrong (an unknown
tool, wrong arguments, an exception, a timeout) becomes the observation text, never an exception
in the trainer. The function itself is trusted code (the model's arguments are data); model-written
code runs only through the python tool (envs/python_tool.py), inside the sandbox.
"""

from __future__ import annotations

import concurrent.futures
import inspect
from dataclasses import dataclass, field
from typing import Callable

from .base import Episode, ToolCall
from .parsing import TOOL_CALL_CLOSE, parse_tool_calls

_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="grpokit-tool")


@dataclass
class Tool:
    """A callable the model may call by name; schema is the chat template's description of it."""

    name: str
    fn: Callable[..., object]
    schema: dict
    timeout: float | None = None  # seconds a call may take, overriding the environment's tool_timeout

    @classmethod
    def from_function(cls, fn: Callable[..., object], name: str = "") -> "Tool":
        """A tool from a documented function. Raises ValueError when the docstring does not
        describe every argument (transformers' get_json_schema explains which)."""
        from transformers.utils import get_json_schema

        try:
            schema = get_json_schema(fn)
        except Exception as exc:  # DocstringParsingException, TypeHintParsingException
            raise ValueError(f"tool {getattr(fn, '__name__', fn)!r}: {exc}") from None
        if name:
            schema = {**schema, "function": {**schema["function"], "name": name}}
        return cls(schema["function"]["name"], fn, schema)

    def call(self, arguments: dict, timeout: float) -> ToolCall:
        """Run the tool on the model's arguments: a ToolCall with the output or the error."""
        timeout = self.timeout or timeout
        out = ToolCall(self.name, dict(arguments))
        try:
            inspect.signature(self.fn).bind(**arguments)
        except TypeError as exc:
            out.error = out.output = f"error: {self.name}: {exc}"
            return out
        future = _POOL.submit(self.fn, **arguments)
        try:
            out.output = str(future.result(timeout=timeout))
        except concurrent.futures.TimeoutError:
            out.error = out.output = f"error: {self.name} timed out after {timeout:g} s"
        except Exception as exc:  # the tool's own failure is the model's observation
            out.error = out.output = f"error: {type(exc).__name__}: {exc}"
        return out


@dataclass
class ToolEnvironment:
    """An episode of turns until the model writes no tool call (its answer), served by `tools`.

    bare_argument: a tool whose name and argument non-JSON ``<tool_call>`` contents call (the demo);
    python: also run fenced python blocks (needs a tool named python); tool_timeout: seconds per
    call; max_calls: calls run per turn (more are answered with an error)."""

    tool_list: list[Tool]
    bare_argument: tuple[str, str] | None = None
    tool_timeout: float = 5.0
    max_calls: int = 4
    stop_strings: tuple[str, ...] = (TOOL_CALL_CLOSE,)
    by_name: dict[str, Tool] = field(init=False)

    def __post_init__(self):
        self.by_name = {t.name: t for t in self.tool_list}

    @property
    def tools(self) -> list[dict]:
        return [t.schema for t in self.tool_list]

    def start(self, example: dict) -> Episode:
        from grpokit.data.chat import messages_of
        from grpokit.data.records import user_message

        return Episode(messages=messages_of(example, user_message(example)))

    def step(self, episode: Episode, text: str) -> list[dict]:
        calls = parse_tool_calls(text, bare_tool=self.bare_argument, python="python" in self.by_name)
        done = []
        for i, call in enumerate(calls):
            if call.error:
                call.output = f"error: {call.error}"
            elif i >= self.max_calls:
                call.error = call.output = f"error: at most {self.max_calls} tool calls per turn"
            elif call.name not in self.by_name:
                call.error = call.output = f"error: no tool named {call.name!r} (tools: {', '.join(self.by_name)})"
            else:
                call = self.by_name[call.name].call(call.arguments, self.tool_timeout)
            done.append(call)
        episode.turns[-1].tool_calls.extend(done)
        return [{"role": "tool", "name": c.name, "content": c.output} for c in done]
