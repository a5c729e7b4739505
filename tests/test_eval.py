"""Evaluation: pass@k against the closed form, summaries, per-sample rows, and a real model."""

import itertools
import math

import pytest

from grpokit.eval.evaluate import (
    Samples,
    breakdown,
    default_ks,
    evaluate_examples,
    greedy_accuracy,
    pass_at_k,
    sample_rows,
    score_completions,
    summarize,
)


def brute_pass_at_k(n: int, c: int, k: int) -> float:
    """Share of the k-subsets of n samples (c of them right) that hold at least one right one."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n, c, k, expected", [
    (5, 2, 1, 2 / 5),  # pass@1 = c / n
    (5, 2, 2, 1 - 3 / 10),  # 1 - C(3,2)/C(5,2)
    (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5)
    (5, 1, 5, 1.0),  # n = k: any right sample counts
    (5, 0, 5, 0.0),  # n = k, c = 0
    (4, 0, 1, 0.0),  # c = 0
    (4, 4, 1, 1.0),  # c = n
    (4, 4, 4, 1.0),  # c = n = k
    (6, 4, 3, 1.0),  # n - c < k: every k-subset holds a right one
])
def test_pass_at_k_matches_the_closed_form(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)
    assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_is_stable_for_large_n_and_checks_its_arguments():
    assert pass_at_k(200, 10, 1) == pytest.approx(0.05)
    assert pass_at_k(200, 10, 100) == pytest.approx(1 - math.comb(190, 100) / math.comb(200, 100))
    for bad in [(4, 5, 1), (4, 2, 0), (4, 2, 5), (4, -1, 1)]:
        with pytest.raises(ValueError, match="pass@k needs"):
            pass_at_k(*bad)


def test_default_ks_are_powers_of_two_and_n():
    assert default_ks(1) == [1] and default_ks(8) == [1, 2, 4, 8] and default_ks(6) == [1, 2, 4, 6]


def test_summary_averages_pass_at_k_over_problems():
    correct = [[True, False, False, False], [True, True, True, True], [False] * 4]
    s = summarize(correct, [1, 2, 4])
    assert s["problems"] == 3 and s["accuracy"] == pytest.approx(5 / 12)
    assert s["pass@1"] == pytest.approx((0.25 + 1 + 0) / 3)
    assert s["pass@2"] == pytest.approx((0.5 + 1 + 0) / 3)  # 1 - C(3,2)/C(4,2) = 1/2
    assert s["pass@4"] == pytest.approx(2 / 3)


def test_breakdown_groups_by_column_in_natural_order():
    examples = [{"level": lv, "subject": s} for lv, s in [(10, "A"), (2, "A"), (2, "B"), (1, "B")]]
    correct = [[True], [False], [True], [True]]
    out = breakdown(examples, correct, ["level", "subject"], [1])
    assert list(out["level"]) == ["1", "2", "10"]
    assert out["level"]["2"] == {"problems": 2, "accuracy": 0.5, "pass@1": 0.5}
    assert out["subject"]["A"]["accuracy"] == 0.5 and out["subject"]["B"]["accuracy"] == 1.0


def test_sample_rows_record_extraction_think_and_truncation():
    examples = [{"prompt": "2+2?", "message": "Q: 2+2?", "answer": "4", "level": 1},
                {"prompt": "def f():", "test": "def check(c): pass", "entry_point": "f"}]
    samples = Samples(["<think>hmm</think> The answer is 4.", "so 5", "```python\ndef f():\n    return 1\n```", "x"],
                      [7, 2, 9, 8], [True, True, True, False])
    rows = sample_rows(examples, samples, [1.0, -0.5, 1.0, None], 2, ["level"])
    assert [(r["index"], r["sample"]) for r in rows] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert rows[0]["prompt"] == "Q: 2+2?" and rows[0]["extracted"] == "4" and rows[0]["think"] is True
    assert rows[1]["extracted"] == "5" and rows[1]["correct"] is False and rows[1]["think"] is False
    assert rows[2]["extracted"] == "def f():\n    return 1\n" and rows[2]["correct"] is True
    assert rows[3]["truncated"] is True and rows[3]["correct"] is False and rows[3]["reward"] is None
    assert rows[0]["level"] == 1 and rows[2]["level"] is None


def test_score_completions_counts_reward_failures_instead_of_stopping():
    scores, failures = score_completions("math", ["4", "5", "6"], [{"answer": "4"}, {"answer": "4"}, {}])
    assert scores == [1.0, -0.5, None] and failures == 1
    assert score_completions(lambda c, ex: float(c == "a"), ["a", "b"], [{}, {}]) == ([1.0, 0.0], 0)


# ----------------------------------------------------------------------------- on the demo model


@pytest.fixture(scope="module")
def demo(arithmetic_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from grpokit.tasks.arithmetic import ArithmeticSpec, split_problems

    model = AutoModelForCausalLM.from_pretrained(arithmetic_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(arithmetic_model_dir)
    return model, tok, split_problems(ArithmeticSpec())["eval"][:64]


def test_greedy_evaluation_agrees_with_its_rows_and_greedy_accuracy(demo):
    from grpokit.tasks.arithmetic import arithmetic_reward

    model, tok, problems = demo
    result = evaluate_examples(model, tok, problems, "arithmetic", max_new_tokens=6, batch_size=32)
    rows, s = result.samples, result.summary
    assert len(rows) == 64 and s["problems"] == 64 and s["samples_per_problem"] == 1
    assert s["accuracy"] == s["pass@1"] == sum(r["correct"] for r in rows) / 64
    assert all(r["correct"] == (r["extracted"] == r["answer"]) for r in rows)  # exact integers here
    assert s["accuracy"] == greedy_accuracy(model, tok, problems, arithmetic_reward, max_new_tokens=6)
    assert s["mean_completion_tokens"] == sum(r["tokens"] for r in rows) / 64
    assert s["truncated_share"] == sum(r["truncated"] for r in rows) / 64
    assert s["problems_per_second"] > 0 and s["think_share"] == 0.0


def test_sampled_evaluation_is_seeded_and_pass_at_k_grows_with_k(demo):
    model, tok, problems = demo
    kw = dict(max_new_tokens=6, n=4, temperature=1.0, seed=5)
    a = evaluate_examples(model, tok, problems[:16], "arithmetic", **kw)
    b = evaluate_examples(model, tok, problems[:16], "arithmetic", **kw)
    assert [r["completion"] for r in a.samples] == [r["completion"] for r in b.samples]
    s = a.summary
    assert len(a.samples) == 64 and s["accuracy"] == pytest.approx(s["pass@1"])
    assert s["pass@1"] <= s["pass@2"] <= s["pass@4"]
    per_problem = [sum(r["correct"] for r in a.samples if r["index"] == i) for i in range(16)]
    assert s["pass@4"] == pytest.approx(sum(c > 0 for c in per_problem) / 16)
    with pytest.raises(ValueError, match="need temperature > 0"):
        evaluate_examples(model, tok, problems[:2], "arithmetic", max_new_tokens=6, n=2)
    with pytest.raises(ValueError, match=r"1 <= k <= n=4"):
        evaluate_examples(model, tok, problems[:2], "arithmetic", max_new_tokens=6, n=4, temperature=1.0, ks=[8])


def test_truncated_completions_are_the_ones_that_hit_the_limit(demo):
    model, tok, problems = demo
    result = evaluate_examples(model, tok, problems[:32], "arithmetic", max_new_tokens=2)
    assert result.summary["truncated_share"] > 0.5  # two tokens hold no sum of two-digit numbers plus EOS
    assert all(r["tokens"] == 2 for r in result.samples if r["truncated"])
