"""`grpokit doctor`: configs made to fail are named with their fix and exit status 2; the demo
will learn (exit 0). The doctor runs on the warm-started demo model (conftest), 8 prompts x 16."""

import json
import re
from pathlib import Path

import pytest

from grpokit.config import Config
from grpokit.train.doctor_report import Problem, exit_code, find_problems, suggested_max_new_tokens
from grpokit.train.run import run_doctor

REWARDS = '''
def constant(completion, example):
    return 0.5


def flaky(completion, example):
    if not completion.endswith("7"):
        raise ValueError("cannot parse " + repr(completion))
    return float(len(completion))
'''


@pytest.fixture()
def rewards_file(tmp_path):
    path = tmp_path / "my_rewards.py"
    path.write_text(REWARDS)
    return path


def doctor_config(model_dir, tmp_path, measure: bool = False) -> Config:
    """The demo's config on 8 prompts; the step is measured only where a test needs it (faster)."""
    cfg = Config(output_dir=str(tmp_path / "run"))
    cfg.model.name_or_path = str(model_dir)
    cfg.data.eval_size = 16
    cfg.doctor.prompts, cfg.doctor.measure_step = 8, measure
    return cfg


def run(cfg) -> tuple[int, dict, str]:
    lines = []
    code = run_doctor(cfg, log=lines.append)
    report = json.loads((Path(cfg.output_dir) / "doctor.json").read_text())
    return code, report, "\n".join(lines)


def checks(report: dict, severity: str = "fail") -> set[str]:
    return {p["check"] for p in report["problems"] if p["severity"] == severity}


def test_the_demo_will_learn(arithmetic_model_dir, tmp_path):
    code, report, text = run(doctor_config(arithmetic_model_dir, tmp_path, measure=True))
    assert code == 0, text
    assert report["verdict"] == "will learn" and report["exit_status"] == 0
    f = report["findings"]
    assert f["completions"] == 8 * 16 and f["length"]["truncated_share"] < 0.1
    assert 0 < f["groups"]["pass@1"] <= f["groups"]["pass@16"] <= 1
    assert f["step"]["seconds"] > 0 and f["step"]["peak_rss_gib"] > 0.05
    assert f["projection"]["total_seconds"] > 600 * f["step"]["seconds"]  # steps plus evaluations
    assert "verdict: will learn (exit status 0)" in text and "one step" in text and "whole run" in text


def test_max_new_tokens_too_short_for_the_answers(arithmetic_model_dir, tmp_path):
    cfg = doctor_config(arithmetic_model_dir, tmp_path)
    cfg.rollout.max_new_tokens = 2  # answers are up to 3 digits, plus the end token
    code, report, text = run(cfg)
    assert code == 2 and "truncation" in checks(report), text
    limit = int(re.search(r"hit rollout.max_new_tokens=2 \(the longest answer alone needs 3\): "
                          r"raise rollout.max_new_tokens to >= (\d+)", text).group(1))
    answers = report["findings"]["length"]["answer_tokens_max"]
    assert answers == 3 and limit >= answers + 1  # room for the longest answer and its end token
    assert "verdict: will not learn (exit status 2)" in text


def test_a_reward_that_always_returns_the_same_value(arithmetic_model_dir, tmp_path, rewards_file):
    cfg = doctor_config(arithmetic_model_dir, tmp_path)
    cfg.reward.names = [f"{rewards_file}:constant"]
    code, report, text = run(cfg)
    assert code == 2 and {"reward_constant", "equal_groups"} <= checks(report), text
    assert f"reward '{rewards_file}:constant' gives the same value (0.5) to every completion" in text
    assert report["findings"]["groups"]["equal_groups_share"] == 1.0


def test_a_task_the_model_never_solves(arithmetic_model_dir, tmp_path):
    data = tmp_path / "impossible.jsonl"  # the demo's kind of prompt, answers the model never writes
    data.write_text("".join(json.dumps({"prompt": f"{a}+{a + 1}", "answer": "123456"}) + "\n" for a in range(10, 60)))
    cfg = doctor_config(arithmetic_model_dir, tmp_path)
    cfg.data.source, cfg.reward.names = str(data), ["arithmetic"]
    code, report, text = run(cfg)
    assert code == 2 and {"never_solved", "equal_groups"} <= checks(report), text
    assert "pass@16 = 0" in text and "the task is too hard for this model" in text
    assert report["findings"]["groups"]["pass@16"] == 0


def test_a_reward_that_raises_on_most_calls(arithmetic_model_dir, tmp_path, rewards_file):
    cfg = doctor_config(arithmetic_model_dir, tmp_path)
    cfg.reward.names = [f"{rewards_file}:flaky"]
    code, report, text = run(cfg)
    fail_share = report["findings"]["rewards"][f"{rewards_file}:flaky"]["fail_share"]
    assert fail_share > 0.5 and code == 2 and "reward_failures" in checks(report), text
    assert f"reward '{rewards_file}:flaky' raised or returned a non-number on {fail_share:.0%} of calls" in text
    assert "ValueError: cannot parse" in text  # the first failure, with its message


def test_a_batch_over_the_memory_limit(arithmetic_model_dir, tmp_path):
    cfg = doctor_config(arithmetic_model_dir, tmp_path, measure=True)
    cfg.doctor.memory_limit_gib = 0.01
    code, report, text = run(cfg)
    assert code == 2 and checks(report) == {"memory"}, text
    peak = report["findings"]["step"]["peak_rss_gib"]
    assert f"one step needs {peak:.2f} GiB (host RSS, longest prompts), over the memory limit 0.01 GiB" in text
    assert "lower rollout.prompts_per_step or train.micro_batch_size" in text


def test_the_doctor_command_exits_with_its_verdict(arithmetic_model_dir, tmp_path, capsys, rewards_file):
    from grpokit.cli.main import main

    args = ["doctor", "--model", str(arithmetic_model_dir), "--data.eval-size", "8", "--doctor.prompts", "4",
            "--doctor.no-measure-step",
            "--doctor.output", str(tmp_path / "d.json"), "--reward.names", f"{rewards_file}:constant"]
    assert main(args) == 2
    assert "verdict: will not learn (exit status 2)" in capsys.readouterr().out
    assert json.loads((tmp_path / "d.json").read_text())["exit_status"] == 2


# ----------------------------------------------------------------------------- the rules alone


def findings(**over) -> dict:
    f = {"group_size": 4, "max_fail_share": 0.5, "nondeterministic_rewards": [], "step": None,
         "pass_rule": "reward 'r' > 0",
         "length": {"max_new_tokens": 8, "truncated_share": 0.0, "ended_max": 5, "answer_tokens_max": 3},
         "rewards": {"r": {"weight": 1.0, "mean": 0.4, "std": 0.5, "none_share": 0.0, "fail_share": 0.0,
                           "distinct": 2, "first_failure": None}},
         "groups": {"equal_groups_share": 0.25, "pass@1": 0.4, "pass@4": 0.75}}
    f.update(over)
    return f


def test_suggested_limit_leaves_room_over_the_longest_ended_completion_or_answer():
    assert suggested_max_new_tokens({"max_new_tokens": 8, "ended_max": 20, "answer_tokens_max": 3}) == 30
    assert suggested_max_new_tokens({"max_new_tokens": 8, "ended_max": None, "answer_tokens_max": 3}) == 16
    assert suggested_max_new_tokens({"max_new_tokens": 2, "ended_max": 2, "answer_tokens_max": 3}) == 6


def test_thresholds_decide_warnings_and_failures():
    from grpokit.config import DoctorConfig

    c = DoctorConfig()
    assert find_problems(findings(), c) == []
    warn = find_problems(findings(length={**findings()["length"], "truncated_share": 0.2}), c)
    assert [p.severity for p in warn] == ["warn"] and exit_code(warn) == 1
    cut = {**findings()["length"], "truncated_share": 0.87}
    runs_on = find_problems(findings(length=cut), c)  # the answers fit: the cut completions may still earn
    assert [p.severity for p in runs_on] == ["warn"]
    fail = find_problems(findings(length=cut, mask_truncated=True), c)
    assert fail[0].line() == ("  FAIL  87% of completions hit rollout.max_new_tokens=8 (algo.mask_truncated leaves "
                              "them out of the loss): raise rollout.max_new_tokens to >= 16") and exit_code(fail) == 2
    long_answers = find_problems(findings(length={**cut, "answer_tokens_max": 9}), c)
    assert long_answers[0].text == ("87% of completions hit rollout.max_new_tokens=8 (the longest answer alone "
                                    "needs 9)") and exit_code(long_answers) == 2
    tool_cut = find_problems(findings(length=cut, multi_turn=True), c)  # a cut tool episode gives no answer
    assert tool_cut[0].text.endswith("(a tool episode's budget holds the call, the tool's answer and the final answer)")
    assert exit_code(tool_cut) == 2
    # never solved while some completions were cut: the length limit is named first
    unsolved = {"equal_groups_share": 1.0, "pass@1": 0.0, "pass@4": 0.0}
    some_cut = find_problems(findings(length={**findings()["length"], "truncated_share": 0.16}, groups=unsolved), c)
    never = [p for p in some_cut if p.check == "never_solved"][0]
    assert never.fix.startswith("raise rollout.max_new_tokens to >= 16 first (16% of completions were cut); else")
    equal = [p for p in some_cut if p.check == "equal_groups"][0]
    assert equal.fix == "16% of completions are cut by rollout.max_new_tokens: raise it to >= 16 first"
    none = findings(rewards={"r": {**findings()["rewards"]["r"], "none_share": 0.4}})
    assert [(p.check, p.severity) for p in find_problems(none, c)] == [("reward_none", "warn")]
    assert "returned None for 40%" in find_problems(none, c)[0].text
    assert exit_code([Problem("warn", "x", "", ""), Problem("fail", "y", "", "")]) == 2
    nondet = find_problems(findings(nondeterministic_rewards=["r"]), c)
    assert [(p.check, p.severity) for p in nondet] == [("nondeterministic", "warn")]
