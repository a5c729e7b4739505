"""Training on multi-turn episodes: `grpokit train --data.source arithmetic-tools` end to end on a
tiny model, the rollouts log's episodes, exact resume, and the config's env section."""

from __future__ import annotations

import json

import pytest

from grpokit.config import Config, validate
from grpokit.errors import ConfigError
from tests.model_helpers import save_tiny_llama
from tests.test_checkpoint import _assert_identical, _final_state, _flags, _train


@pytest.fixture(scope="module")
def tool_model_dir(tmp_path_factory):
    from grpokit.tasks.arithmetic_tools import build_tool_tokenizer

    return save_tiny_llama(tmp_path_factory.mktemp("toolmodel"), hidden=32, layers=2, heads=2, inter=64,
                           tokenizer=build_tool_tokenizer(), max_positions=96)


def _tool_flags(model_dir, out, *switches, **extra):
    """A short tool run on a random tiny model, which solves nothing: the pre-flight (which
    would rightly stop it) is skipped, these tests are about mechanics."""
    return _flags(model_dir, out, **{"data.source": "arithmetic-tools", "train.steps": 4, "rollout.max-new-tokens": 24,
                                     "env.max-turn-tokens": 10, "data.eval-size": 8, **extra}) + ["--doctor.no-preflight",
                                                                                                  *switches]


def test_the_preset_brings_its_environment_and_model_and_env_fields_are_checked():
    cfg = Config()
    cfg.data.source = "arithmetic-tools"
    out = validate(cfg)
    assert out.env.name == "calculator" and out.model.name_or_path == "builtin:arithmetic-tools"
    assert out.rollout.max_new_tokens == 40 and out.env.max_turn_tokens == 12  # the preset's episode budget
    assert cfg.env.name == ""  # validate() returns a copy
    cfg.model.name_or_path = "/some/model"
    assert validate(cfg).model.name_or_path == "/some/model"
    for field, value, message in [("max_turns", 0, "env.max_turns: must be >= 1"),
                                  ("max_turn_tokens", -1, "env.max_turn_tokens: must be >= 0"),
                                  ("tool_timeout", 0.0, r"env.tool_timeout: must be seconds in \(0, 3600\]")]:
        bad = Config()
        setattr(bad.env, field, value)
        with pytest.raises(ConfigError, match=message):
            validate(bad)


def test_stop_and_resume_of_a_tool_run_is_identical_and_the_log_holds_the_episodes(tool_model_dir, tmp_path):
    straight = tmp_path / "straight"
    proc = _train(_tool_flags(tool_model_dir, straight))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tool-call rate" in proc.stdout
    summary = json.loads((straight / "summary.json").read_text())
    assert 0 <= summary["tool_call_rate_before"] <= 1 and 0 <= summary["tool_call_rate_after"] <= 1
    rows = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    assert {"episode/turns_mean", "episode/tool_call_rate", "episode/retokenize_mismatch"} <= set(rows[1])
    assert all(r["episode/retokenize_mismatch"] == 0 for r in rows[1:-1])
    for line in (straight / "rollouts.jsonl").read_text().splitlines():
        rec = json.loads(line)
        assert len(rec["episodes"]) == len(rec["loss_mask"]) == len(rec["completion_ids"]) == 16
        for ids, mask, ep, text in zip(rec["completion_ids"], rec["loss_mask"], rec["episodes"], rec["texts"]):
            assert len(mask) == len(ids) and sum(mask) == sum(t["tokens"] for t in ep["turns"])
            assert text == ep["final_text"]
            assert ep["messages"][0]["role"] == "user"
    split = tmp_path / "split"
    first = _train(_tool_flags(tool_model_dir, split, **{"train.stop-at-step": 2}))
    assert first.returncode == 0, first.stderr[-3000:]
    second = _train(_tool_flags(tool_model_dir, split, **{"train.resume": "auto"}))
    assert second.returncode == 0, second.stderr[-3000:]
    _assert_identical(_final_state(split), _final_state(straight))


def test_two_processes_give_the_single_process_gradient_on_multi_turn_episodes(tmp_path):
    from tests.test_distributed import HELPERS, _torchrun

    out = tmp_path / "grads.json"
    proc = _torchrun([str(HELPERS / "dist_grad.py"), str(out), "none", "episodes"], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["world"] == 2 and report["kind"] == "episodes" and len(report["results"]) == 8
    for name, r in report["results"].items():
        assert r["grad_norm"] > 1e-3, name
        assert r["max_abs_diff"] < 1e-6 and r["norm_diff"] < 1e-6 and r["clipped_max_abs_diff"] < 1e-6, (name, r)


def test_dynamic_sampling_trains_only_informative_tool_episodes(tool_model_dir, tmp_path):
    """algo.dynamic_sampling with tool episodes: extra rounds sample new episodes (their own
    random stream), the rounds' episodes join, and every group trained on has unequal rewards."""
    out = tmp_path / "ds"
    proc = _train(_tool_flags(tool_model_dir, out, "--algo.dynamic-sampling", **{
        "algo.dynamic-sampling-max-rounds": 2, "rollout.prompts-per-step": 2, "train.steps": 3}))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()][1:-1]
    assert len(rows) == 3 and all(1 <= r["rollout/rounds"] <= 3 for r in rows)
    for line in (out / "rollouts.jsonl").read_text().splitlines():
        rec = json.loads(line)
        assert len(rec["episodes"]) == len(rec["completion_ids"]) == len(rec["loss_mask"])
        for g in range(0, len(rec["rewards"]), 4):  # G = 4
            judged = [x for x in rec["rewards"][g:g + 4] if x is not None]
            assert len(set(judged)) > 1 or not any(rec["advantages"][g:g + 4]), rec["rewards"][g:g + 4]
