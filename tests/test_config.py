"""The typed config of every command: one parser, one help source, checks by message, a
validate() that leaves its input alone, the public API, and the one did-you-mean."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest
import yaml

import grpokit
from grpokit.cli.eval import EvalCommandConfig
from grpokit.cli.main import main
from grpokit.cli.sample import SampleCommandConfig
from grpokit.config import Config, load_yaml, to_dict, validate
from grpokit.errors import ConfigError
from grpokit.registry import did_you_mean

COMMANDS = {"train": Config, "eval": EvalCommandConfig, "sample": SampleCommandConfig}
PACKAGE = Path(grpokit.__file__).resolve().parent


def _help(command: str, capsys, monkeypatch) -> dict[str, str]:
    """`grpokit COMMAND --help` as {flag: its help text}, read from what the command prints."""
    monkeypatch.setenv("COLUMNS", "100")  # one column of options
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    flags, current = {}, None
    for line in capsys.readouterr().out.splitlines():
        text = line.strip().strip("│").strip()
        if text.startswith("--"):
            current = text.split()[0].rstrip(",")
            flags[current] = ""
        elif current and text and not text.startswith(("╭", "╰")):
            flags[current] += " " + text
        elif text.startswith("╰"):
            current = None
    return flags


def _fields(cls, prefix: str = "") -> list[str]:
    """Every leaf field of a config dataclass as its flag, e.g. --train.adam-beta1."""
    out = []
    for f in dataclasses.fields(cls):
        value = getattr(cls(), f.name)
        name = f"{prefix}{f.name.replace('_', '-')}"
        out += _fields(type(value), name + ".") if dataclasses.is_dataclass(value) else [f"--{name}"]
    return out


@pytest.mark.parametrize("command", COMMANDS)
def test_help_documents_every_field(command, capsys, monkeypatch):
    shown = _help(command, capsys, monkeypatch)
    fields = [f for f in _fields(COMMANDS[command]) if f != "--sample.prompts"]  # positional: no flag
    assert [f for f in fields if f not in shown] == []
    undocumented = [f for f in fields if re.fullmatch(r"\s*\(default: .*\)\s*", shown[f])]
    assert undocumented == []
    if command == "train":
        assert "β1" in shown["--train.adam-beta1"] and "β2" in shown["--train.adam-beta2"]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_misspelt_flag_names_the_nearest_in_each_command(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--rollout.temperatur", "0.5"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "--rollout.temperatur" in err and "Perhaps you meant" in err and "--rollout.temperature" in err


@pytest.mark.parametrize("command", COMMANDS)
def test_a_misspelt_config_key_names_the_nearest_in_each_command(command, tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"rollout": {"temperatur": 0.5}}))
    assert main([command, "--config", str(path)]) == 2
    assert f"{path}: unknown config key 'rollout.temperatur'; did you mean 'temperature'?" in capsys.readouterr().err


def test_eval_and_sample_parse_into_the_sections_train_uses(tmp_path):
    from grpokit.cli.eval import parse as parse_eval
    from grpokit.cli.main import parse_config
    from grpokit.cli.sample import parse as parse_sample

    flags = ["--model", "runs/a/model", "--rollout.temperature", "0.7", "--rollout.group_size", "4",
             "--rollout.top_p", "0.9", "--model.dtype", "bf16"]
    train, ev = parse_config(flags + ["--data", "gsm8k"]), parse_eval(flags + ["--data", "gsm8k", "--eval.k", "1", "4"])
    sample = parse_sample(flags + ["--sample.no-think", "12+34"])
    for cfg in (ev, sample):
        assert type(cfg.model) is type(train.model) and type(cfg.rollout) is type(train.rollout)
        assert cfg.model == train.model and cfg.model.name_or_path == "runs/a/model"
        assert (cfg.rollout.temperature, cfg.rollout.group_size, cfg.rollout.top_p) == (0.7, 4, 0.9)
    assert ev.data == train.data and ev.data.source == "gsm8k" and ev.eval.k == [1, 4]
    assert sample.sample.prompts == ["12+34"] and sample.sample.think is False
    # each command's own defaults: eval is greedy with the preset's length, sample a mild temperature
    assert (parse_eval([]).rollout.temperature, parse_eval([]).rollout.max_new_tokens) == (0.0, 0)
    assert parse_sample([]).rollout.temperature == 0.7 and Config().rollout.temperature == 1.0
    # one YAML file of shared sections works for every command that has them
    path = tmp_path / "shared.yaml"
    path.write_text(yaml.safe_dump({"model": {"dtype": "fp16"}, "rollout": {"top_k": 5}}))
    for parse in (parse_config, parse_eval, parse_sample):
        cfg = parse(["--config", str(path), "--rollout.top_k", "7"])
        assert (cfg.model.dtype, cfg.rollout.top_k) == ("fp16", 7)  # the file, then the flags


def test_eval_checks_name_the_field_before_loading_anything(capsys):
    cases = [(["--rollout.group_size", "4"], "rollout.group_size: 4 completions per prompt need rollout.temperature > 0"),
             (["--rollout.top_p", "0"], "rollout.top_p: must be in (0, 1]"),
             (["--eval.k", "1", "8", "--rollout.group_size", "4", "--rollout.temperature", "1"],
              "eval.k: pass@k needs 1 <= k <= rollout.group_size=4"),
             (["--eval.limit", "-1"], "eval.limit: must be >= 0")]
    for flags, message in cases:
        assert main(["eval", "--model", "/no/such/model", "--data", "arithmetic", *flags]) == 2
        assert message in capsys.readouterr().err  # not "model not found": the config is checked first


def test_validate_returns_a_filled_copy_and_leaves_its_input_unchanged():
    cfg = Config()
    before = to_dict(cfg)
    out = validate(cfg)
    assert to_dict(cfg) == before and cfg.reward.names == [] and cfg.reward.weights == []
    assert out is not cfg and out.reward.names == ["arithmetic"] and out.reward.weights == [1.0]
    assert validate(out) == out  # filling is idempotent
    cfg.reward.names = ["math", "think_format"]
    assert validate(cfg).reward.weights == [1.0, 1.0] and cfg.reward.weights == []


def test_validate_errors_name_the_field():
    cfg = Config()
    cfg.train.sharding = "fsbp"
    with pytest.raises(ConfigError, match=r"train.sharding: unknown value 'fsbp'; did you mean 'fsdp'\?"):
        validate(cfg)
    cfg = Config()
    cfg.reward.weights = [1.0, 2.0]
    with pytest.raises(ConfigError, match="reward.weights: 2 weights for 1 rewards"):
        validate(cfg)


def test_eval_split_none_holds_rows_out_of_training_as_its_help_says():
    from grpokit.config import DataConfig
    from grpokit.data.records import load_examples, load_split

    cfg = DataConfig(source="arithmetic", eval_split="none", eval_size=5)
    train, held = load_examples(cfg, None)  # before: "preset 'arithmetic' has no split 'none'"
    assert len(held) == 5 and len(train) == len(load_split(cfg, "train")) - 5
    assert not {ex["prompt"] for ex in held} & {ex["prompt"] for ex in train}


def test_shipped_recipes_load_by_name_and_a_near_miss_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no recipes/ folder here: an installed grpokit's situation
    assert load_yaml("textbook-qwen3-8b-qlora").model.name_or_path == "Qwen/Qwen3-8B"
    assert load_yaml("small-gpu-qwen3-1.7b-qlora.yaml") == load_yaml(PACKAGE / "recipes" / "small-gpu-qwen3-1.7b-qlora.yaml")
    assert load_yaml("recipes/textbook-qwen3-8b-qlora.yaml") == load_yaml("textbook-qwen3-8b-qlora")  # the old path
    with pytest.raises(ConfigError, match=r"config file not found: textbok-qwen3-8b-qlora; "
                                          r"did you mean 'textbook-qwen3-8b-qlora'\?"):
        load_yaml("textbok-qwen3-8b-qlora")
    with pytest.raises(ConfigError, match=r"config file not found: /no/such.yaml \(shipped recipes, by name: "):
        load_yaml("/no/such.yaml")


def test_the_public_api_resolves():
    assert grpokit.__all__[0] == "__version__"
    for name in grpokit.__all__:
        value = getattr(grpokit, name)
        assert value is not None and (name == "__version__" or value.__name__ == name), name
        assert name in grpokit.__doc__, f"{name} is exported but not listed in grpokit's docstring"
    with pytest.raises(AttributeError, match="no attribute 'Trainr'"):
        grpokit.Trainr  # noqa: B018


def test_did_you_mean_is_the_only_one():
    assert did_you_mean("gsm8", ["gsm8k", "math500"]) == "; did you mean 'gsm8k'?"
    assert did_you_mean("zzz", ["gsm8k", "math500"]) == ""
    users = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
             if any(isinstance(n, (ast.Import, ast.ImportFrom)) and "difflib" in ast.unparse(n)
                    for n in ast.walk(ast.parse(p.read_text())))]
    assert users == ["registry.py"]
