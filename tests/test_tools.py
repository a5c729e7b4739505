"""Tools and environments (grpokit/envs): call parsing, schemas from functions, errors as
observations, the calculator, and the python tool under hostile programs in the sandbox."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from grpokit.envs import Episode, Tool, ToolEnvironment, Turn, make_environment, parse_tool_calls
from grpokit.envs.calculator import calculator, calculator_environment
from grpokit.errors import ConfigError


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first number
        b: the second number
    """
    return a + b


def slow(seconds: float) -> str:
    """Sleep.

    Args:
        seconds: how long
    """
    time.sleep(seconds)
    return "awake"


def undocumented(x):
    return x


def _episode(text: str) -> Episode:
    ep = Episode(messages=[{"role": "user", "content": "q"}])
    ep.turns.append(Turn(text=text, tokens=1))
    return ep


def test_json_bare_and_python_calls_are_parsed_in_order():
    text = ('I will compute. <tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}</tool_call>\n'
            '```python\nprint(6*7)\n```\n<tool_call>12*3</tool_call>'
            '<tool_call>{"name": "add", "arguments": "{\\"a\\": 1, \\"b\\": 1}"}</tool_call>')
    calls = parse_tool_calls(text, bare_tool=("calculator", "expression"), python=True)
    assert [(c.name, c.arguments) for c in calls] == [
        ("add", {"a": 2, "b": 3}), ("python", {"code": "print(6*7)\n"}), ("calculator", {"expression": "12*3"}),
        ("add", {"a": 1, "b": 1})]
    assert all(not c.error for c in calls)
    assert parse_tool_calls("no calls here, ```python\nx\n```") == []  # python blocks only when asked


def test_unreadable_calls_carry_an_error():
    bad_json, no_name, bad_args = parse_tool_calls(
        '<tool_call>{"name": "add", </tool_call><tool_call>{"x": 1}</tool_call>'
        '<tool_call>{"name": "add", "arguments": [1]}</tool_call>')
    assert "not valid JSON" in bad_json.error
    assert '"name"' in no_name.error
    assert bad_args.name == "add" and "JSON object" in bad_args.error


def test_schema_is_derived_from_signature_and_docstring():
    tool = Tool.from_function(add)
    params = tool.schema["function"]["parameters"]
    assert tool.name == "add" and tool.schema["function"]["description"] == "Add two integers."
    assert params["properties"] == {"a": {"type": "integer", "description": "the first number"},
                                    "b": {"type": "integer", "description": "the second number"}}
    assert params["required"] == ["a", "b"]
    with pytest.raises(ValueError, match="undocumented"):
        Tool.from_function(undocumented)


def test_every_failure_becomes_the_observation_never_an_exception():
    env = ToolEnvironment([Tool.from_function(add), Tool.from_function(slow)], tool_timeout=0.3, max_calls=5)
    ep = _episode("")
    text = ('<tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}</tool_call>'
            '<tool_call>{"name": "sub", "arguments": {}}</tool_call>'
            '<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>'
            '<tool_call>{"name": "add", "arguments": {"a": "x", "b": []}}</tool_call>'
            '<tool_call>{"name": "slow", "arguments": {"seconds": 5}}</tool_call>'
            '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 1}}</tool_call>')
    start = time.monotonic()
    out = env.step(ep, text)
    assert time.monotonic() - start < 2.0
    assert [m["role"] for m in out] == ["tool"] * 6
    contents = [m["content"] for m in out]
    assert contents[0] == "5"
    assert "no tool named 'sub'" in contents[1] and "add, slow" in contents[1]
    assert "missing a required argument: 'b'" in contents[2]
    assert contents[3].startswith("error: TypeError")
    assert contents[4] == "error: slow timed out after 0.3 s"
    assert contents[5] == "error: at most 5 tool calls per turn"
    calls = ep.turns[-1].tool_calls
    assert [bool(c.error) for c in calls] == [False, True, True, True, True, True]
    assert env.step(ep, "the answer is 5") == []  # no call: the episode ends


def test_calculator_is_exact_and_refuses_what_it_cannot_do():
    assert calculator("123*45") == "5535"
    assert calculator("(7+5)/4") == "3"
    assert calculator("1/3") == "0.333333"
    for bad in ("12*", "2**1000", "import os", "9" * 30 + "*" + "9" * 40):
        with pytest.raises(ValueError):
            calculator(bad)
    env = calculator_environment()
    assert env.tools[0]["function"]["name"] == "calculator"
    ep = _episode("")
    assert env.step(ep, "<tool_call>123*45</tool_call>") == [{"role": "tool", "name": "calculator", "content": "5535"}]
    assert env.step(ep, "<tool_call>12*</tool_call>")[0]["content"] == "error: ValueError: cannot evaluate '12*'"


def test_environment_names():
    class Cfg:
        name, tool_timeout = "calculater", 5.0

    with pytest.raises(ConfigError, match="did you mean 'calculator'"):
        make_environment(Cfg)
    Cfg.name = "tests.test_tools:no_such_factory"
    with pytest.raises(ConfigError, match="cannot load"):
        make_environment(Cfg)
    Cfg.name = "calculator"
    assert make_environment(Cfg).tools[0]["function"]["name"] == "calculator"


# ----------------------------------------------------------------------------- the python tool


@pytest.fixture(scope="module")
def python_env():
    from tests.conftest import real_sandbox

    from grpokit.envs.python_tool import python_tool
    from grpokit.sandbox import Limits

    box = real_sandbox(Limits(timeout=2.0, memory_mb=256, max_processes=16, tmpfs_mb=32, max_output_bytes=64 << 10))
    return ToolEnvironment([python_tool(sandbox=box, max_chars=500)])


def _run_python(env, code: str) -> tuple[str, float]:
    ep = _episode("")
    start = time.monotonic()
    out = env.step(ep, f"Let me run it.\n```python\n{code}```\n")
    assert len(out) == 1 and out[0]["name"] == "python"
    return out[0]["content"], time.monotonic() - start


def test_python_tool_returns_what_the_program_printed(python_env):
    assert _run_python(python_env, "print(6 * 7)\n")[0] == "42"
    text, _ = _run_python(python_env, "print('before')\nraise ValueError('boom')\n")
    assert text.startswith("before\n") and "ValueError: boom" in text


HOSTILE = {
    "infinite loop": ("while True:\n    pass\n", "TIMEOUT"),
    "fork bomb": ("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n", "TIMEOUT"),
    "memory bomb": ("blob = bytearray(8 * 1024 ** 3)\n", "MEMORY"),
    "endless output": ("while True:\n    print('spam' * 100)\n", "OUTPUT_LIMIT"),
    "network": ("import socket\nsocket.create_connection(('192.0.2.1', 80), timeout=1)\n", "Network is unreachable"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_python_tool_contains_hostile_programs_and_the_trainer_goes_on(python_env, name):
    import psutil

    code, expected = HOSTILE[name]
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    text, wall = _run_python(python_env, code)
    assert expected in text, text
    assert len(text) <= 500
    assert wall < 2.0 + 4.0
    assert [p.pid for p in psutil.Process().children(recursive=True) if p.pid not in before] == []
    assert _run_python(python_env, "print(1 + 1)\n")[0] == "2"  # the next call works


def test_python_tool_writes_do_not_reach_the_host(python_env):
    path = Path.home() / f"grpokit-tool-{uuid.uuid4().hex}"
    text, _ = _run_python(python_env, f"open({str(path)!r}, 'w').write('owned')\n")
    assert not path.exists() and ("Error" in text), text
    assert os.getpid() > 0
