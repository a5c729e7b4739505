"""Output comparison, limits that fit the check, and the code reward's settings in the config."""

from __future__ import annotations

import pytest

from grpokit.cli.main import parse_config
from grpokit.config import Config, validate
from grpokit.errors import ConfigError
from grpokit.train.run import accuracy_judge, build_scorer
from grpokit.sandbox import Limits, same_output
from grpokit.sandbox.compare import same_token


@pytest.mark.parametrize(
    ("actual", "expected", "same"),
    [
        ("0.333333", "0.333333333333", True),
        ("0.30000000000000004", "0.3", True),
        ("1000000.5", "1000000", True),  # relative: 5e-7
        ("1e-7", "0", True),  # absolute
        ("3.0", "3", True),
        ("-0.0000001", "0", True),
        (".5", "0.5", True),
        ("0.5000011", "0.5", False),
        ("1e400", "1e400", True),  # same text, even when not finite as a float
        ("inf", "1e400", False),
        ("007", "7", True),
        ("-0", "0", True),
        ("+5", "5", True),
        ("-5", "5", False),
        ("123456789012345678901", "123456789012345678900", False),  # integers: exact, no float rounding
        ("9" * 5000, "9" * 5000, True),
        ("9" * 5000 + "0", "9" * 5000 + "1", False),
        ("YES", "yes", False),
        ("1,5", "1.5", False),
        ("nan", "nan", True),
    ],
)
def test_same_token(actual, expected, same):
    assert same_token(actual, expected) is same


def test_same_output_is_token_by_token_with_a_settable_tolerance():
    assert same_output("1\t2\r\n\r\n3   ", "1 2 3\n")
    assert not same_output("1 2", "1 2 3") and not same_output("", "0") and same_output(" \n", "")
    assert same_output("0.31", "0.3", 0.05) and not same_output("0.31", "0.3")
    assert not same_output("0.30000000000000004", "0.3", 0.0) and same_output("3.0", "3", 0.0)
    with pytest.raises(ValueError, match="tolerance"):
        same_output("1", "1", -0.1)


def test_limits_fit_the_expected_output_and_scale_with_the_tests():
    base = Limits(timeout=2.0, max_output_bytes=1 << 20)
    assert base.fitting_output(1000) is base
    assert base.fitting_output(1_288_895).max_output_bytes == 2 * 1_288_895 + 65536
    scaled = base.scaled(8)
    assert (scaled.timeout, scaled.cpu, scaled.memory_mb) == (16.0, 17, base.memory_mb)
    assert Limits(timeout=1.0, cpu_seconds=2).scaled(3).cpu == 6
    with pytest.raises(ValueError, match="tests"):
        base.scaled(0)


def code_config(**reward) -> Config:
    cfg = Config()
    cfg.data.source = "humaneval"
    for key, value in reward.items():
        setattr(cfg.reward, key, value)
    return validate(cfg)


def test_code_reward_settings_reach_the_scorer_and_the_judge():
    cfg = code_config(code_timeout=2.5, code_max_output_mb=4.0, code_tolerance=1e-3)
    assert cfg.reward.names == ["code"]
    want = {"timeout": 2.5, "max_output_bytes": 4 << 20, "tolerance": 1e-3}
    with build_scorer(cfg) as scorer:
        assert scorer.kwargs == {"code": want}
    assert accuracy_judge(cfg).keywords == want
    cli = parse_config(["--data.source", "humaneval", "--reward.code-timeout", "3", "--reward.code-tolerance", "0"])
    assert (cli.reward.code_timeout, cli.reward.code_tolerance) == (3.0, 0.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [("code_timeout", 0), ("code_timeout", -1.0), ("code_timeout", float("nan")), ("code_max_output_mb", 0),
     ("code_max_output_mb", "big"), ("code_tolerance", -1e-6), ("code_tolerance", 1.0)],
)
def test_bad_code_reward_settings_name_the_field(field, value):
    with pytest.raises(ConfigError, match=f"reward.{field}"):
        code_config(**{field: value})
