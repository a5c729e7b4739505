"""Answer extraction and grading: a table of response/answer pairs, traps, and time limits."""

import signal
import threading
import time

import pytest

from grpokit.rewards import (
    answers_match,
    extract_answer,
    extract_gold,
    find_last_boxed,
    from_textbook,
    grade,
    latex_equivalent,
    math_reward,
    parse_number,
    strip_think,
)

# (response, reference answer, three-tier reward: +1 right, -0.5 wrong, -1 no answer)
CASES = [
    # boxed
    (r"so \boxed{42}", "42", 1.0),
    (r"so \boxed{\frac{1}{2}}", r"\frac12", 1.0),
    (r"\boxed{\dfrac{3}{4}}", "0.75", 1.0),
    (r"first \boxed{3}, corrected: \boxed{5}", "5", 1.0),
    (r"\boxed{5} ... no, actually \boxed{3}", "5", -0.5),
    (r"\boxed{\frac{\sqrt{3}}{2}}", r"\frac{\sqrt3}{2}", 1.0),
    (r"\boxed{2\sqrt{3}}", r"\sqrt{12}", 1.0),
    (r"polar: \boxed{\left( 3, \frac{\pi}{2} \right)}", r"\left( 3, \frac{\pi}{2} \right)", 1.0),
    (r"\boxed{(3, \pi)}", r"\left( 3, \frac{\pi}{2} \right)", -0.5),
    (r"\boxed{[2, 5)}", "[2,5)", 1.0),
    (r"\boxed{(2, 5)}", "[2,5)", -0.5),
    (r"\boxed{2\pi}", r"2\pi", 1.0),
    (r"\boxed{\pi}", "3.14", -0.5),
    (r"\boxed{90^\circ}", "90", 1.0),
    (r"\boxed{\text{Monday}}", r"\text{Monday}", 1.0),
    (r"\boxed{5.4 \text{ cents}}", "5.4", 1.0),
    (r"\boxed{10{,}000}", "10000", 1.0),
    (r"\boxed{11,\! 111,\! 111,\! 100}", "11111111100", 1.0),
    (r"\boxed{7} and then \boxed{8", "7", 1.0),
    (r"\fbox{12}", "12", 1.0),
    (r"The result is \boxed 5.", "5", 1.0),
    (r"\boxed{-2+7i}", "-2 + 7i", 1.0),
    (r"\boxed{-13x+3}", "3-13x", 1.0),
    (r"\boxed{\begin{pmatrix} 1 \\ 2 \end{pmatrix}}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", 1.0),
    (r"\boxed{40_9}", "40_9", 1.0),
    (r"\boxed{\sqrt{51}}", r"\sqrt{50}", -0.5),
    (r"\boxed{x=5}", "5", 1.0),
    (r"\boxed{\$18}", "18", 1.0),
    (r"\boxed{18 \text{ dollars}}", "18", 1.0),
    (r"\boxed{50\%}", "50", 1.0),
    (r"\boxed{0.5}", r"\frac{1}{2}", 1.0),
    (r"\boxed{\frac{1}{3}}", "0.33", -0.5),
    # gsm8k ####
    ("She makes 9 * 2 = $<<9*2=18>>18.\n#### 18", "18", 1.0),
    ("#### 1,450,000", "1450000", 1.0),
    ("#### $18.00", "18", 1.0),
    ("3 + 4 = 7 more, so 17.\n#### 17", "18", -0.5),
    ("#### -5", "-5", 1.0),
    # markers
    ("Answer: 18. I hope this helps with your 2 questions", "18", 1.0),
    ("The answer is 42 apples.", "42", 1.0),
    (r"The final answer is $\frac{3}{4}$.", "0.75", 1.0),
    ("**Final Answer:** 1,234", "1234", 1.0),
    ("Final answer: x = 7", "7", 1.0),
    ("The answer is: 16 - 3 - 4 = 9", "9", 1.0),
    ("So the answer is 25%.", "25", 1.0),
    (r"The answer is therefore \$5.50", "5.5", 1.0),
    ("answer is -3/4", r"-\frac{3}{4}", 1.0),
    ("The answer is 12. Check: 3*4 = 12, and 12/2 = 6", "12", 1.0),
    ("The answer is not obvious. After some work we get 42", "42", 1.0),
    ("Answer: 7\n\nWait, I made an error. The answer is 8", "8", 1.0),
    ("The answer is 3.5 hours", "3.5", 1.0),
    ("The answer is 18 (since 9*2 = 17+1).", "18", 1.0),
    ("Final Answer: The final answer is 18. I hope it is correct.", "18", 1.0),
    (r"So, the answer is \( \frac{1}{2} \).", "0.5", 1.0),
    ("Hence the answer is:\n\n$$\n\\frac{7}{3}\n$$", r"\frac{7}{3}", 1.0),
    ("The answer is 3.50", "7/2", 1.0),
    ("The answer is 5,000 meters", "5000", 1.0),
    ("Let me answer 2 questions. First 3+3=6.", "6", 1.0),
    # last number
    ("She makes 9 * 2 = $18 every day.", "18", 1.0),
    ("The total is 1,000,000.", "1000000", 1.0),
    ("So 16-3-4=9", "9", 1.0),
    ("It is 0.5", "1/2", 1.0),
    ("We get \u22127", "-7", 1.0),
    ("I think it's 17.", "18", -0.5),
    ("I think it's 18.0", "18", 1.0),
    ("Counting: 1, 2, 3", "3", 1.0),
    ("The price is $1,234.56", "1234.56", 1.0),
    # think blocks
    ("<think>16-3 = 13, maybe 12?</think> The answer is 9", "9", 1.0),
    ("<think>the answer is 9</think> The answer is 12", "9", -0.5),
    (r"<think>hmm, \boxed{9} perhaps", "9", -1.0),
    (r"<think>compute 2+2=4</think>\boxed{4}", "4", 1.0),
    (r"<think>\boxed{5}</think> Final answer: 6", "5", -0.5),
    # nothing to read
    ("", "5", -1.0),
    ("   \n\t ", "5", -1.0),
    ("I don't know.", "5", -1.0),
    ("No idea, sorry", r"\frac{1}{2}", -1.0),
]


def _case_id(case):
    response = case[0].replace("\n", " ")
    return response[:40] or "<empty>"


@pytest.mark.parametrize("response, gold, expected", CASES, ids=[_case_id(c) for c in CASES])
def test_three_tier_reward_table(response, gold, expected):
    assert math_reward(response, gold) == expected, extract_answer(response)


def test_table_is_large_and_covers_every_tier():
    assert len(CASES) >= 60
    assert {expected for _, _, expected in CASES} == {1.0, -0.5, -1.0}


@pytest.mark.parametrize("response, gold, expected", CASES[:12] + CASES[-4:])
def test_binary_mode_is_one_for_right_and_zero_otherwise(response, gold, expected):
    assert math_reward(response, gold, binary=True) == (1.0 if expected == 1.0 else 0.0)


def test_tier_values_are_configurable():
    tiers = dict(correct=2.0, wrong=-3.0, missing=-7.0)
    assert math_reward("Answer: 5", "5", **tiers) == 2.0
    assert math_reward("Answer: 6", "5", **tiers) == -3.0
    assert math_reward("no idea", "5", **tiers) == -7.0


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Answer: 18. I hope this helps with your 2 questions", "18"),
        (r"\boxed{1} \boxed{\frac{a}{b^{2}}} \boxed{3", r"\frac{a}{b^{2}}"),
        ("<think>it is 7</think>It is 8", "8"),
        ("<think>it is 7", None),
        ("#### 1,234\nThanks!", "1,234"),
        ("The answer is yes.", "yes"),
        ("costs $5 and then $6 more, so the answer is $11.", "$11"),
        ("", None),
        ("\n \t", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_strip_think_reads_only_after_the_block():
    assert strip_think("<think>12</think> 13") == " 13"
    assert strip_think("plain 5") == "plain 5"
    assert strip_think("<think> still going") is None


def test_find_last_boxed_keeps_nested_braces():
    assert find_last_boxed(r"x \boxed{\frac{\sqrt{2}}{\left\{2\right\}}} y") == (
        r"\frac{\sqrt{2}}{\left\{2\right\}}"
    )
    assert find_last_boxed("no box here") is None


@pytest.mark.parametrize(
    "field, gold",
    [
        ("She sells 9 eggs.\n#### 18", "18"),
        (r"So $x=\boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
        (r" \left( 3, \frac{\pi}{2} \right) ", r"\left( 3, \frac{\pi}{2} \right)"),
    ],
)
def test_extract_gold(field, gold):
    assert extract_gold(field) == gold


@pytest.mark.parametrize(
    "text, value",
    [
        ("1,234", 1234), ("$18.00", 18), (r"\$18", 18), ("-5", -5), ("\u22125", -5),
        ("3/4", 0.75), (r"\frac{3}{4}", 0.75), (r"-\dfrac{1}{2}", -0.5), (r"\frac34", 0.75),
        ("50%", 50), (r"50\%", 50), (r"90^\circ", 90), ("18 dollars", 18),
        (r"5.4 \text{ cents}", 5.4), ("10{,}000", 10000), (".5", 0.5),
    ],
)
def test_parse_number_reads_values(text, value):
    assert parse_number(text) == pytest.approx(value)


@pytest.mark.parametrize("text", [r"2\sqrt{3}", "x=5", "40_9", "1, 2", "3x", "", "abc", "1/0"])
def test_parse_number_refuses_what_is_not_a_plain_number(text):
    assert parse_number(text) is None


def test_grade_reports_extracted_answer_and_verdict():
    assert grade(r"so \boxed{\frac{2}{4}}", "0.5") == (r"\frac{2}{4}", True)
    assert grade("nothing", "0.5") == (None, False)


def test_from_textbook_adapts_response_ground_truth_functions():
    def textbook(response, ground_truth):
        return 1.0 if ground_truth in response else 0.0

    reward = from_textbook(textbook)
    assert reward("it is 42", {"answer": "42"}) == 1.0
    assert reward("it is 41", {"answer": "42"}) == 0.0
    assert reward.__name__ == "textbook"
    with pytest.raises(ValueError, match="needs example\\['answer'\\]"):
        reward("x", {"question": "?"})


# ----------------------------------------------------------------------------- speed and limits


def _long_completion(size=100_000):
    line = "Step: 12 + 7 = 19, then 19 * 3 = 57; carry the 1, so we keep going.\n"
    return (line * (size // len(line) + 1))[:size]


def test_100kb_completion_is_graded_by_its_final_answer():
    """A 100 kB completion is graded by its last answer (its speed is measured side by side with
    short ones in benchmarks/bench_rewards.py, not timed here)."""
    text = _long_completion() + "\nThe answer is 42."
    assert len(text) > 100_000
    assert math_reward(text, "42") == 1.0
    assert math_reward(text[:100_000], "42") == -0.5  # only the steps: its last number


def test_page_long_answers_are_wrong_without_sympy():
    start = time.perf_counter()
    assert math_reward("1" * 100_000, "5") == -0.5
    assert math_reward(r"\boxed{" + "(" * 2000 + ")" * 2000 + "}", "5") == -0.5
    assert time.perf_counter() - start < 0.5


def test_100kb_of_unclosed_boxes_stays_fast():
    text = r"\boxed{1" * 14_000  # every box is unterminated
    start = time.perf_counter()
    assert extract_answer(text) == "1"  # falls back to the last number
    assert time.perf_counter() - start < 0.5


# A real expression that sympy cannot compare quickly (expanding a 3000th power).
SLOW_GOLD, SLOW_PRED = "(x+1)^{3000}", "(x+2)^{3000}"


def test_pathological_latex_times_out_to_none_in_the_main_thread():
    start = time.perf_counter()
    assert latex_equivalent(SLOW_GOLD, SLOW_PRED, timeout_s=0.5) is None
    assert time.perf_counter() - start < 3.0
    assert math_reward(rf"\boxed{{{SLOW_PRED}}}", SLOW_GOLD, timeout_s=0.5) is None


def test_time_limit_restores_an_outer_timer():
    fired = []
    old = signal.signal(signal.SIGALRM, lambda *a: fired.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 30.0)
        assert answers_match(r"\sqrt{4}", "2", timeout_s=2.0) is True
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 20.0 < remaining <= 30.0
        assert signal.getsignal(signal.SIGALRM) is not None and not fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_latex_checks_work_and_time_out_outside_the_main_thread():
    results = {}

    def work():
        results["equal"] = answers_match(r"\frac{\sqrt{3}}{2}", r"\sqrt{3}/2", timeout_s=30.0)  # a cold helper process under load
        start = time.perf_counter()
        results["slow"] = latex_equivalent(SLOW_GOLD, SLOW_PRED, timeout_s=0.5)
        results["slow_s"] = time.perf_counter() - start

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=90)
    assert not thread.is_alive()
    assert results["equal"] is True
    assert results["slow"] is None and results["slow_s"] < 5.0
