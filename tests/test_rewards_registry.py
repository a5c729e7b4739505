"""Reward names and plug-ins: what resolves, and the message for each way it can go wrong."""

import subprocess
import sys
import textwrap

import pytest

from grpokit.rewards import REWARDS, RewardError, register_reward, resolve_reward
from grpokit.rewards import math_answer_reward, think_format_reward


def _write(path, source):
    path.write_text(textwrap.dedent(source))
    return path


@pytest.mark.parametrize("name", ["math", "math_binary", "think_format", "think_math"])
def test_builtin_names_resolve_to_two_argument_rewards(name):
    reward = resolve_reward(name)
    value = reward("<think>2+2</think> The answer is 4", {"answer": "4"})
    assert isinstance(value, float) and value > 0


def test_builtin_functions_are_the_registered_ones():
    assert resolve_reward("math") is math_answer_reward
    assert resolve_reward("think_format") is think_format_reward


def test_code_reward_is_registered_lazily_without_importing_it():
    assert REWARDS["code"] == "grpokit.rewards.code:code_reward"
    probe = "import sys, grpokit.rewards; print('grpokit.rewards.code' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unknown_name_suggests_the_closest():
    with pytest.raises(RewardError, match=r"unknown reward 'mathh'; did you mean 'math'\?"):
        resolve_reward("mathh")
    with pytest.raises(RewardError, match="built-in rewards: .*think_format"):
        resolve_reward("zzzz")


def test_module_function_plugin(tmp_path, monkeypatch):
    _write(tmp_path / "rwd_plugin_mod.py", """
        def short(completion, example):
            return -len(completion) / 100
        class Holder:
            @staticmethod
            def twice(completion, example):
                return 2.0
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve_reward("rwd_plugin_mod:short")("abcd", {}) == -0.04
    assert resolve_reward("rwd_plugin_mod:Holder.twice")("", {}) == 2.0


def test_file_plugin_absolute_and_relative(tmp_path, monkeypatch):
    path = _write(tmp_path / "my rewards.py", """
        from dataclasses import dataclass
        @dataclass
        class Cfg:
            bonus: float = 0.25
        def has_please(completion, example, bonus=Cfg().bonus):
            return 1.0 + bonus if "please" in completion else 0.0
    """)
    assert resolve_reward(f"{path}:has_please")("please", {}) == 1.25
    monkeypatch.chdir(tmp_path)
    assert resolve_reward("./my rewards.py:has_please")("no", {}) == 0.0


def test_missing_module_names_the_spec_and_module():
    with pytest.raises(RewardError) as err:
        resolve_reward("no_such_reward_pkg.sub:fn")
    message = str(err.value)
    assert "'no_such_reward_pkg.sub:fn'" in message
    assert "cannot import module 'no_such_reward_pkg.sub'" in message


def test_module_with_a_broken_import_says_so(tmp_path, monkeypatch):
    _write(tmp_path / "rwd_broken_dep.py", "import not_installed_dep_xyz\ndef f(c, e): return 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    expected = "importing module 'rwd_broken_dep' failed.*not_installed"
    with pytest.raises(RewardError, match=expected):
        resolve_reward("rwd_broken_dep:f")


def test_missing_file(tmp_path):
    with pytest.raises(RewardError, match=r"reward '.*nope\.py:f': file not found: .*nope\.py"):
        resolve_reward(f"{tmp_path}/nope.py:f")


def test_file_with_syntax_error(tmp_path):
    path = _write(tmp_path / "bad.py", "def f(c, e) return 1\n")
    with pytest.raises(RewardError, match=r"importing .*bad\.py failed: SyntaxError"):
        resolve_reward(f"{path}:f")


def test_missing_function_lists_and_suggests(tmp_path):
    path = _write(tmp_path / "plug.py", "def length_reward(c, e): return 0.0\n")
    with pytest.raises(RewardError) as err:
        resolve_reward(f"{path}:length_rewards")
    message = str(err.value)
    assert "has no function 'length_rewards'" in message
    assert "; did you mean 'length_reward'?" in message and str(path) in message


def test_not_callable(tmp_path):
    path = _write(tmp_path / "plug.py", "THRESHOLD = 3\n")
    expected = r"plug\.py:THRESHOLD' is a value of type int \(3\), not a function"
    with pytest.raises(RewardError, match=expected):
        resolve_reward(f"{path}:THRESHOLD")


@pytest.mark.parametrize(
    "signature, ok",
    [
        ("(completion)", False),
        ("(completion, example, extra)", False),
        ("(completion, *, example)", False),
        ("()", False),
        ("(completion, example)", True),
        ("(completion, example, scale=1.0)", True),
        ("(*args, **kwargs)", True),
        ("(completion, example=None, *, flag=False)", True),
    ],
)
def test_signature_is_checked(tmp_path, signature, ok):
    path = _write(tmp_path / "sig.py", f"def f{signature}:\n    return 0.0\n")
    if ok:
        assert callable(resolve_reward(f"{path}:f"))
    else:
        with pytest.raises(RewardError, match=r"must accept \(completion, example\) as two "
                                              r"positional arguments, but its signature is"):
            resolve_reward(f"{path}:f")


def test_malformed_specs():
    with pytest.raises(RewardError, match="expected 'module:function'"):
        resolve_reward("some.module:")
    with pytest.raises(RewardError, match="non-empty string"):
        resolve_reward("  ")


def test_register_reward_decorator():
    name = "test_only_reward_length"
    try:
        @register_reward(name)
        def length(completion, example):
            return float(len(completion))

        assert resolve_reward(name)("abc", {}) == 3.0
        with pytest.raises(RewardError, match="already registered"):
            register_reward(name)(lambda c, e: 0.0)
        with pytest.raises(RewardError, match="must accept"):
            register_reward(name + "_bad")(lambda c: 0.0)
    finally:
        REWARDS.pop(name, None)
