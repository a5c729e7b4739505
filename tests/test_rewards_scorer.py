"""RewardScorer: weighted sums, kwargs, failure messages, max_fail_share, metrics, workers."""

import json
import logging
import math
import os
import textwrap
from pathlib import Path

import pytest

from grpokit.rewards import RewardError, RewardScorer

PLUGIN = textwrap.dedent("""
    import math, os

    def flaky(completion, example):
        mode = example.get("mode", "ok")
        if mode == "raise":
            return 1 / 0
        if mode == "nan":
            return math.nan
        if mode == "inf":
            return -math.inf
        if mode == "str":
            return "0.5"
        if mode == "list":
            return [1.0]
        if mode == "none":
            return None
        return float(len(completion) % 7)

    def pid(completion, example):
        return float(os.getpid())
""")


@pytest.fixture
def plugin(tmp_path):
    path = tmp_path / "plugin_rewards.py"
    path.write_text(PLUGIN)
    return str(path)


def test_weighted_total_and_components():
    scorer = RewardScorer(["math", "think_format"], [1.0, 0.5])
    completions = ["<think>7*6</think> The answer is 42", "The answer is 41", "no answer here"]
    examples = [{"answer": "42"}] * 3
    result = scorer.score(completions, examples)
    assert result.components == {"math": [1.0, -0.5, -1.0], "think_format": [1.0, 0.0, 0.0]}
    assert result.total == [1.5, -0.5, -1.0]
    assert result.errors == []


def test_kwargs_are_bound_and_checked():
    scorer = RewardScorer(["math"], [1.0], kwargs={"math": {"correct": 3.0, "wrong": 0.0}})
    assert scorer.score(["Answer: 2", "Answer: 3"], [{"answer": "2"}] * 2).total == [3.0, 0.0]
    with pytest.raises(RewardError, match=r"reward.kwargs.math: reward .math. does not accept .*corect"):
        RewardScorer(["math"], [1.0], kwargs={"math": {"corect": 3.0}})
    with pytest.raises(RewardError, match=r"reward.kwargs: given for \['think'\]"):
        RewardScorer(["math"], [1.0], kwargs={"think": {}})


def test_construction_errors():
    with pytest.raises(RewardError, match=r"2 reward names .* but 1 weights"):
        RewardScorer(["math", "think_format"], [1.0])
    with pytest.raises(RewardError, match=r"unknown reward 'think_fromat'.*'think_format'"):
        RewardScorer(["think_fromat"], [1.0])
    with pytest.raises(RewardError, match="weights must be finite"):
        RewardScorer(["math"], [float("nan")])
    with pytest.raises(RewardError, match=r"repeated: \['math'\]"):
        RewardScorer(["math", "math"], [1.0, 1.0])
    with pytest.raises(RewardError, match="max_fail_share"):
        RewardScorer(["math"], [1.0], max_fail_share=1.5)
    with pytest.raises(ValueError, match="2 completions but 1 examples"):
        RewardScorer(["math"], [1.0]).score(["a", "b"], [{"answer": "1"}])


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("raise", r"raised ZeroDivisionError: division by zero on example 1 \(id='q-1'\) at "
                  r".*plugin_rewards\.py:\d+"),
        ("nan", r"returned nan on example 1 \(id='q-1'\); expected a finite float"),
        ("inf", r"returned -inf on example 1 \(id='q-1'\)"),
        ("str", r"returned str '0\.5' on example 1 \(id='q-1'\)"),
        ("list", r"returned list \[1\.0\] on example 1 \(id='q-1'\)"),
    ],
)
def test_bad_returns_become_none_with_a_message(plugin, mode, expected, caplog):
    spec = f"{plugin}:flaky"
    scorer = RewardScorer([spec, "math"], [1.0, 1.0])
    examples = [{"answer": "1", "id": f"q-{i}", "mode": m} for i, m in enumerate(["ok", mode])]
    with caplog.at_level(logging.WARNING, logger="grpokit.rewards"):
        result = scorer.score(["Answer: 1", "Answer: 1"], examples)
    assert result.components[spec][1] is None and result.total[1] is None
    assert result.components[spec][0] == float(len("Answer: 1") % 7)
    assert len(result.errors) == 1
    assert result.errors[0].startswith(f"reward {spec!r} ")
    assert __import__("re").search(expected, result.errors[0]), result.errors[0]
    assert result.errors[0] in caplog.text


def test_legitimate_none_is_not_a_failure(plugin):
    spec = f"{plugin}:flaky"
    result = RewardScorer([spec], [1.0], max_fail_share=0.0).score(["x"], [{"mode": "none"}])
    assert result.total == [None] and result.errors == []
    metrics = result.metrics()
    assert metrics[f"reward/{spec}/none_share"] == 1.0
    assert metrics["reward/fail_share"] == 0.0


def test_zero_weight_component_is_logged_but_does_not_void_total(plugin):
    spec = f"{plugin}:flaky"
    scorer = RewardScorer(["math", spec], [1.0, 0.0])
    result = scorer.score(["Answer: 3"], [{"answer": "3", "mode": "none"}])
    assert result.total == [1.0] and result.components[spec] == [None]


def _modes(n_fail, n=10, mode="raise"):
    return [{"answer": "1", "mode": mode if i < n_fail else "ok"} for i in range(n)]


def test_max_fail_share_tolerates_up_to_the_share(plugin, caplog):
    scorer = RewardScorer([f"{plugin}:flaky"], [1.0], max_fail_share=0.5)
    with caplog.at_level(logging.WARNING, logger="grpokit.rewards"):
        result = scorer.score(["x"] * 10, _modes(5))
    assert sum(v is None for v in result.total) == 5
    assert "... and 2 more reward failures" in caplog.text  # 3 logged in full, then a count
    assert result.metrics()["reward/fail_share"] == 0.5


def test_max_fail_share_exceeded_raises_with_the_messages(plugin):
    spec = f"{plugin}:flaky"
    scorer = RewardScorer([spec, "math"], [1.0, 1.0], max_fail_share=0.5)
    with pytest.raises(RewardError) as err:
        scorer.score(["Answer: 1"] * 10, _modes(6, mode="nan"))
    message = str(err.value)
    assert f"{spec!r} failed on 6 of 10" in message and "max_fail_share=0.5" in message
    assert "returned nan on example 0" in message
    strict = RewardScorer([spec], [1.0], max_fail_share=0.0)
    with pytest.raises(RewardError, match="failed on 1 of 10"):
        strict.score(["x"] * 10, _modes(1))


def test_share_is_per_reward_not_diluted_by_healthy_ones(plugin):
    # One reward broken on every call must stop the run even beside two healthy rewards.
    scorer = RewardScorer([f"{plugin}:flaky", "math", "think_format"], [1, 1, 1])
    with pytest.raises(RewardError, match="failed on 4 of 4"):
        scorer.score(["Answer: 1"] * 4, _modes(4, n=4))


def test_metrics_keys_and_values(plugin):
    spec = f"{plugin}:flaky"
    scorer = RewardScorer(["math", spec], [1.0, 1.0])
    examples = [{"answer": "2", "mode": m} for m in ["ok", "ok", "raise", "none"]]
    result = scorer.score(["Answer: 2", "Answer: 5", "Answer: 2", "nothing"], examples)
    m = result.metrics()
    assert m["reward/math/mean"] == pytest.approx((1.0 - 0.5 + 1.0 - 1.0) / 4)
    assert m["reward/math/none_share"] == 0.0
    assert m[f"reward/{spec}/none_share"] == 0.5
    assert m[f"reward/{spec}/fail_share"] == 0.25
    assert m["reward/fail_share"] == pytest.approx(1 / 8)
    assert m["reward/total/none_share"] == 0.5
    all_none = RewardScorer([spec], [1.0]).score(["x"], [{"mode": "none"}]).metrics()
    assert math.isnan(all_none[f"reward/{spec}/mean"])


def _gsm8k_batch(n):
    path = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k" / "test.jsonl"
    if not path.exists():
        pytest.skip(f"data not found: {path}")
    rows = [json.loads(line) for line, _ in zip(path.open(), range(n))]
    completions, examples = [], []
    for i, row in enumerate(rows):
        body, answer = row["answer"].rsplit("####", 1)
        # a mix of right, wrong, think-wrapped, unanswered and failing completions
        variants = [
            row["answer"],
            f"<think>{body}</think> The answer is {int(answer.replace(',', '')) + 1}",
            "I am not sure.",
            rf"\boxed{{{answer.strip()}}}",
        ]
        completions.append(variants[i % 4])
        mode = "raise" if i % 9 == 0 else ("nan" if i % 13 == 0 else "ok")
        examples.append({"answer": answer.strip(), "id": f"gsm8k-{i}", "mode": mode})
    return completions, examples


def test_parallel_workers_match_serial(plugin):
    names = ["math", "think_math", f"{plugin}:flaky", f"{plugin}:pid"]
    weights = [1.0, 0.5, 0.1, 0.0]
    completions, examples = _gsm8k_batch(96)
    serial = RewardScorer(names, weights).score(completions, examples)
    with RewardScorer(names, weights, workers=2, parallel_min=64) as scorer:
        parallel = scorer.score(completions, examples)
        assert scorer._pool is not None  # the pool really ran
        again = scorer.score(completions, examples)  # and is reused
    assert scorer._pool is None  # closed on exit
    pids = set(parallel.components[f"{plugin}:pid"])
    assert os.getpid() not in {int(p) for p in pids} and 1 <= len(pids) <= 2
    for result in (parallel, again):
        for name in names[:3]:
            assert result.components[name] == serial.components[name], name
        assert result.total == serial.total
        assert result.errors == serial.errors
    assert len(serial.errors) > 0 and any(v is None for v in serial.total)


def test_small_steps_stay_serial_even_with_workers():
    scorer = RewardScorer(["math"], [1.0], workers=2, parallel_min=64)
    scorer.score(["Answer: 1"] * 10, [{"answer": "1"}] * 10)
    assert scorer._pool is None
    scorer.close()
