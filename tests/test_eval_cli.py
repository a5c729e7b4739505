"""`grpokit eval` end to end: before/after a short demo training run, sampling, defaults, errors."""

import json

import pytest

from grpokit.cli.main import main
from grpokit.cli.eval import EvalCommandConfig
from grpokit.config import Config
from grpokit.train.run import run_training

from .conftest import DATA


@pytest.fixture(scope="module")
def trained_run(arithmetic_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "run"
    cfg = Config(output_dir=str(out))
    cfg.model.name_or_path = str(arithmetic_model_dir)
    cfg.train.steps = 60
    cfg.rollout.prompts_per_step = cfg.rollout.group_size = 4  # small steps: matching needs no long run
    cfg.train.eval_every = 0
    cfg.log.progress = cfg.log.plot = cfg.log.tensorboard = False
    summary = run_training(cfg, log=lambda *a: None)
    return out, summary


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_eval_before_and_after_training_matches_the_training_summary(trained_run, arithmetic_model_dir,
                                                                     tmp_path, capsys):
    run_dir, summary = trained_run
    out = tmp_path / "eval"
    rc = main(["eval", "--model", str(arithmetic_model_dir), "--eval.compare", str(run_dir / "model"),
               "--data", "arithmetic", "--output-dir", str(out)])
    assert rc == 0
    before = json.loads((out / "before" / "results.json").read_text())
    after = json.loads((out / "after" / "results.json").read_text())
    # the same 200 held-out problems, greedy, the same completion limit: the same numbers
    assert before["problems"] == after["problems"] == 200
    assert before["accuracy"] == summary["accuracy_before"]
    assert after["accuracy"] == summary["accuracy_after"]
    for side, result in (("before", before), ("after", after)):
        rows = read_jsonl(out / side / "samples.jsonl")
        assert len(rows) == 200 and sum(r["correct"] for r in rows) / 200 == result["accuracy"]
        assert set(rows[0]) >= {"prompt", "completion", "extracted", "reward", "correct"}
    completions = [[r["completion"] for r in read_jsonl(out / side / "samples.jsonl")] for side in ("before", "after")]
    assert completions[0] != completions[1]  # the trained model answers differently
    table = json.loads((out / "comparison.json").read_text())["rows"]
    acc = next(r for r in table if r["metric"] == "accuracy")
    assert acc["change"] == pytest.approx(summary["accuracy_after"] - summary["accuracy_before"])
    printed = capsys.readouterr().out
    assert "before     after    change" in printed and printed.count("problems/s") == 2


def test_sampled_eval_writes_pass_at_k_and_prints_throughput(tmp_path, capsys):
    out = tmp_path / "ev"
    rc = main(["eval", "--model", "builtin:arithmetic", "--data", "arithmetic", "--eval.limit", "40",
               "--rollout.group_size", "4", "--rollout.temperature", "1.0", "--eval.k", "1", "4", "--output-dir", str(out)])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    rows = read_jsonl(out / "samples.jsonl")
    assert res["problems"] == 40 and res["samples_per_problem"] == 4 and len(rows) == 160
    assert res["reward"] == "arithmetic" and res["max_new_tokens"] == 8
    assert res["pass@1"] == pytest.approx(sum(r["correct"] for r in rows) / 160)
    assert res["pass@1"] <= res["pass@4"] and "pass@2" not in res
    assert "problems/s" in capsys.readouterr().out


def test_preset_defaults_choose_reward_length_and_breakdown():
    from grpokit.cli.eval import eval_settings, parse
    from grpokit.data.records import load_eval_examples

    def settings(data, *flags):
        cfg = parse(["--data", data, "--data.data_dir", str(DATA), *flags])
        assert type(cfg) is EvalCommandConfig
        return eval_settings(cfg, load_eval_examples(cfg.data, limit=3))

    assert settings("math500") == {"reward": "math", "max_new_tokens": 1024, "by": ["subject", "level"]}
    assert settings("gsm8k") == {"reward": "math", "max_new_tokens": 512, "by": []}
    assert settings("humaneval")["reward"] == "code"
    assert settings("arithmetic")["reward"] == "arithmetic"
    assert settings("math500", "--reward.names", "think_math", "--rollout.max_new_tokens", "64", "--eval.by") == {
        "reward": "think_math", "max_new_tokens": 64, "by": []}


def test_eval_errors_name_the_problem(capsys):
    assert main(["eval", "--model", "builtin:arithmetic", "--data", "gsm8", "--output-dir", "unused"]) == 2
    assert "unknown preset 'gsm8'; did you mean 'gsm8k'" in capsys.readouterr().err
    assert main(["eval", "--model", "builtin:arithmetic", "--data", "arithmetic", "--eval.by", "topic",
                 "--eval.limit", "2", "--output-dir", "unused"]) == 2
    assert "eval.by: no column 'topic' in the data; its columns are: prompt, answer" in capsys.readouterr().err


def test_top_level_usage_lists_eval(capsys):
    assert main(["--help"]) == 0
    assert "eval " in capsys.readouterr().out
