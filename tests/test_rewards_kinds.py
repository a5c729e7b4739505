"""Kinds of answers that graders misread, one table per kind: each case the issue names, and
several more forms of the same kind. Three-tier reward: +1 right, -0.5 wrong, -1 no answer."""

import pytest

from grpokit.rewards import RewardScorer, answers_match, latex_equivalent, math_reward, parse_number
from grpokit.rewards.choices import choice_letter, leading_choice
from grpokit.rewards.numbers import evaluate_arithmetic

SIGN_WORDS = [
    ("The answer is negative 5.", "5", -0.5),  # the issue's case
    ("The answer is negative 5.", "-5", 1.0),  # the issue's case
    ("Answer: minus 12", "-12", 1.0),
    ("The final answer is Negative 3/4.", "-0.75", 1.0),
    ("The answer is MINUS 2.5 degrees", "-2.5", 1.0),
    (r"\boxed{\text{negative } 7}", "-7", 1.0),
    ("The answer is negative $5.", "-5", 1.0),
    ("At night it drops to negative 40.", "-40", 1.0),
    ("#### negative 8", "-8", 1.0),
    (r"The answer is negative \frac{1}{2}", r"-\frac12", 1.0),
    (r"The answer is negative \sqrt{2}", r"-\sqrt{2}", 1.0),
    ("The answer is \u20135", "-5", 1.0),  # an en dash as the sign
    ("The answer is negative 5.", "-6", -0.5),
    # a subtraction is not a sign, and "negative" without a number is prose
    ("So 20 minus 5 gives 15", "15", 1.0),
    ("So 20 minus 5 gives 15", "-5", -0.5),
    ("The slope is negative, so the answer is 3", "3", 1.0),
    ("The answer is 5 minus 3 = 2", "2", 1.0),
    ("The answer is negative 5 minus 2 = negative 7", "-7", 1.0),
    ("The answer is 10 minus 15, which is negative 5.", "-5", 1.0),
]

ESCAPES_AND_CURRENCY = [
    (r"The answer is $\$18$.", "18", 1.0),  # the issue's case
    (r"The answer is \(\$18.50\).", "18.5", 1.0),
    (r"The answer is \[\$1{,}200\]", "1200", 1.0),
    (r"The answer is $18\%$.", "18", 1.0),
    (r"It costs $\$5$ each, so the answer is $\$20$.", "20", 1.0),
    (r"The answer is $\text{\$}18$", "18", 1.0),
    (r"The answer is $18\text{ dollars}$", "18", 1.0),
    (r"It costs $\$5$ a kilo and $\$20$ in all", "20", 1.0),
    ("The answer is \u20ac1,250.", "1250", 1.0),
    ("The answer is \u00a33.50", "3.5", 1.0),
    ("The answer is 18 USD", "18", 1.0),
    ("The answer is \u20b9500", "500", 1.0),
    ("The answer is -$5", "-5", 1.0),
    ("The answer is $-5.", "-5", 1.0),
    (r"$$\$1{,}000$$", "1000", 1.0),
    (r"The answer is $18\$$", "18", 1.0),
    (r"The answer is $\$18$.", "17", -0.5),
]

EQUATIONS = [
    (r"\boxed{5 = 4}", "4", -0.5),  # the issue's case
    (r"\boxed{x = 5}", "5", 1.0),  # the issue's case
    (r"\boxed{y = -3}", "-3", 1.0),
    (r"\boxed{x_1 = 2}", "2", 1.0),
    (r"\boxed{\theta = \frac{\pi}{4}}", r"\frac{\pi}{4}", 1.0),
    (r"\boxed{f(2) = 7}", "7", 1.0),
    (r"\boxed{AB = 13}", "13", 1.0),
    (r"\boxed{x = 3 + 4 = 7}", "7", 1.0),
    (r"\boxed{16 - 3 - 4 = 9}", "9", 1.0),
    (r"\boxed{2 + 2 = 5}", "5", -0.5),
    (r"\boxed{3 \times 4 = 13}", "13", -0.5),
    (r"\boxed{2x = 10}", "10", -0.5),
    (r"\boxed{\sqrt{4} = 3}", "3", -0.5),
    (r"\boxed{\sqrt{9} = 3}", "3", 1.0),
    ("The answer is 5 = 4", "4", -0.5),
    ("The answer is: 16 - 3 - 4 = 9", "9", 1.0),
    ("The answer is 5 + 3, which is 9", "9", -0.5),
    ("The answer is 5 + 3 which makes 8", "8", 1.0),
    (r"\boxed{y = 2x + 3}", "y = 2x + 3", 1.0),
    (r"\boxed{x = 5}", "x=5", 1.0),
    (r"\boxed{5 = x}", "5", 1.0),
    (r"\boxed{\frac{1}{2} = 0.4}", "0.4", -0.5),
    (r"\boxed{x^2 = 4}", "4", -0.5),
    (r"\boxed{a + b = 7}", "7", -0.5),  # not a lone variable: the equation is the answer
    (r"\boxed{x = 2, y = 3}", "(2, 3)", 1.0),  # a system: math-verify compares it whole
    (r"\boxed{x = 2 \text{ and } y = 3}", "(2, 3)", 1.0),
    (r"\boxed{5 = 4, 3 = 2}", "(4, 2)", -0.5),
]

CONSTANTS_AND_PARTIAL_PARSES = [
    (r"\boxed{2\mathrm{e}}", "2", -0.5),  # math-verify alone reads "2\mathrm{e}" as 2
    (r"\boxed{3\mathrm{e}}", "3", -0.5),
    (r"\boxed{\mathrm{e}}", "e", 1.0),
    (r"\boxed{\exp(1)}", "e", 1.0),
    (r"\boxed{\mathrm{\pi}}", r"\pi", 1.0),
    (r"\boxed{\pi}", r"\mathrm{\pi}", 1.0),
    (r"\boxed{{\rm e}^{2}}", "e^2", 1.0),
    (r"\boxed{\mathrm{e}^{2}}", r"\exp(2)", 1.0),
    (r"\boxed{\mathrm{e}}", "2.718", -0.5),
    (r"\boxed{2\mathrm{\pi}}", r"2\pi", 1.0),
    (r"\boxed{\frac{\mathrm{e}}{2}}", r"\frac{e}{2}", 1.0),
    (r"\boxed{\mathrm{e}}", r"\pi", -0.5),
]

CHOICES = [
    ("Answer: (D), not (B)", "D", 1.0),  # the issue's case
    (r"\boxed{C}", r"\text{(C)}", 1.0),
    (r"\boxed{(C)}", r"\text{(C)}", 1.0),
    (r"\boxed{\text{(C)}}", "C", 1.0),
    (r"\boxed{\textbf{(C)}\ 12}", r"\text{(C)}", 1.0),
    ("The answer is C.", r"\text{(C)}", 1.0),
    ("The answer is (C) 12", r"\text{(C)}", 1.0),
    ("The answer is C: 12", "C", 1.0),
    ("The answer is C) 12", "(C)", 1.0),
    ("The correct answer is option C", "C", 1.0),
    ("Comparing the options...\n\n**(C)**", r"\text{(C)}", 1.0),
    ("Comparing the options...\nC) $\\frac{1}{2}$", "C", 1.0),
    ("It is 12, which is choice (C).", r"\text{(C)}", 1.0),
    ("Final Answer: The final answer is $(C)$. I hope it is correct.", r"\text{(C)}", 1.0),
    ("Option A is wrong. Not sure.", "A", -1.0),
    ("the answer is (c)", r"\text{(C)}", 1.0),
    ("Final Answer: (a) 12 (b) 15", "12", 1.0),  # parts of a question, not choices
    ("The answer is (C) 12", "12", 1.0),  # a numeric reference: the value after the letter
    (r"\boxed{(C)\ \frac{1}{2}}", "0.5", 1.0),
    (r"\boxed{A, B}", "B, A", 1.0),  # a set of points, not choice A
    (r"\boxed{A + B}", "B + A", 1.0),
    ("The answer is C: 12.\nThat was easy.", "C", 1.0),
    ("The answer is (B)", r"\text{(C)}", -0.5),
    (r"\boxed{B}", "C", -0.5),
    ("Answer: (B), not (D)", "D", -0.5),
    # capitals in prose are not choices
    ("A good guess: the answer is 12", "A", -0.5),
    ("I think so. A total of 5", "A", -0.5),
    ("The answer is A bit more than 5", "5", 1.0),
    ("Answer: I am not sure, maybe 7", "7", 1.0),
    ("Options (A) to (E) were listed. I cannot decide.", "A", -1.0),
]

SCIENTIFIC = [
    (r"\boxed{1.5e3}", "1500", 1.0),  # the issue's case
    ("The answer is 2.5E-4", "0.00025", 1.0),
    (r"\boxed{6.02 \times 10^{23}}", "6.02e23", 1.0),
    (r"\boxed{6.02\cdot10^{23}}", r"6.02 \times 10^{23}", 1.0),
    ("The answer is 6.02 \u00d7 10^23 molecules", "6.02e23", 1.0),
    ("The speed is about 3e8", "300000000", 1.0),
    ("#### 1.2e-3", "0.0012", 1.0),
    ("The answer is 4.0E+2 m", "400", 1.0),
    (r"\boxed{1.5 \times 10^{-3}}", "0.0015", 1.0),
    ("The answer is 5*10^3", "5000", 1.0),
    (r"\boxed{1.5e3}", "1501", -0.5),
    (r"\boxed{6.022 \times 10^{23}}", r"6.02 \times 10^{23}", -0.5),  # exact, not close
    (r"\boxed{2e}", "2", -0.5),  # Euler's number, not an exponent
    ("The answer is 6.02 \u00d7 10\u00b2\u00b3 atoms.", "6.02e23", 1.0),
    (r"We get 6.02 \times 10^{23} atoms", "6.02e23", 1.0),
    ("so about 1.5\u00d710\u207b\u00b3 m", "0.0015", 1.0),
]

KINDS = {
    "sign words": SIGN_WORDS,
    "escapes and currency": ESCAPES_AND_CURRENCY,
    "equations": EQUATIONS,
    "constants and partial parses": CONSTANTS_AND_PARTIAL_PARSES,
    "choices": CHOICES,
    "scientific notation": SCIENTIFIC,
}
ALL = [(kind, *case) for kind, cases in KINDS.items() for case in cases]


@pytest.mark.parametrize("kind, response, gold, expected", ALL,
                         ids=[f"{k}: {r[:40]!r} vs {g!r}" for k, r, g, _ in ALL])
def test_kinds_table(kind, response, gold, expected):
    assert math_reward(response, gold, timeout_s=30.0) == expected


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_has_the_issue_case_and_five_more_forms(kind):
    assert len(KINDS[kind]) >= 6


# Each is read by math-verify as 2 alone, and so "equal" to 2.
@pytest.mark.parametrize("fragmentary", [
    r"2\sqrt{3}+\text{m}", r"2 \cdot \unknown{3}", r"2\sqrt{3", r"2 \times \foo",
    r"2 \mathrm{cm}^2", r"2\mathbf{e}",
])
def test_a_fragment_that_math_verify_judges_equal_is_not_judged(fragmentary):
    assert latex_equivalent("2", fragmentary, timeout_s=30.0) is None


@pytest.mark.parametrize("whole", [
    r"3 \text{ apples}", r"3\;\mathrm{kg}", r"\frac{6}{2}", r"\sqrt{9}",
])
def test_unit_words_and_known_commands_are_read_whole(whole):
    assert latex_equivalent("3", whole, timeout_s=30.0) is True


def test_could_not_judge_is_counted_by_the_scorer():
    result = RewardScorer(["math"], [1.0], kwargs={"math": {"timeout_s": 30.0}}).score(
        [r"\boxed{2\sqrt{3}+\text{m}}", r"\boxed{2}"], [{"answer": "2"}] * 2)
    assert result.total == [None, 1.0]
    assert result.metrics()["reward/math/none_share"] == 0.5


@pytest.mark.parametrize("text, value", [
    ("1.5e3", 1500), ("2.5E-4", 0.00025), (r"6.02 \times 10^{23}", 6.02e23),
    (r"6.02\cdot10^{23}", 6.02e23), ("negative 5", -5), ("minus $3.50", -3.5), ("\u20137", -7),
    (r"1 \times 10^{-2}", 0.01),
])
def test_parse_number_reads_signs_and_exponents(text, value):
    assert parse_number(text) == pytest.approx(value, rel=1e-12)


def test_scientific_notation_is_exact():
    assert parse_number(r"6.02 \times 10^{23}") == 602 * 10**21
    assert parse_number("1e-500") is None  # out of any answer's range: not read
    assert answers_match("0.1", "1e-1") is True


@pytest.mark.parametrize("text, value", [
    ("16 - 3 - 4", 9), (r"3 \times (4 + 1)", 15), ("7 / 2", 3.5), (r"12 \div 4 - 1", 2),
    ("-(2 - 5)", 3), ("$18", 18), ("x + 1", None), ("1 / 0", None), ("(2 + 3", None),
])
def test_evaluate_arithmetic(text, value):
    assert evaluate_arithmetic(text) == value


@pytest.mark.parametrize("gold, letter", [
    ("C", "C"), ("(C)", "C"), (r"\text{(C)}", "C"), (r"\textbf{(E)}", "E"), ("(c)", "C"),
    ("c", None), ("12", None), (r"\text{Evelyn}", None), ("AB", None),
])
def test_choice_letter_of_a_reference(gold, letter):
    assert choice_letter(gold) == letter


@pytest.mark.parametrize("text, letter", [
    ("(D), not (B)", "D"), ("C: 12", "C"), ("option (B)", "B"), ("E.", "E"), ("**B**", "B"),
    ("(c)", "C"), ("A bit more", None), ("I think", None), ("A = 5", None), ("Monday", None),
])
def test_leading_choice_against_a_choice_reference(text, letter):
    assert leading_choice(text, lenient=True) == letter


@pytest.mark.parametrize("text, letter", [
    ("(D), not (B)", "D"), ("C) 12", "C"), ("C: 12", None), ("A, B", None), (r"A \cup B", None),
    ("(a) 12 (b) 15", None),
])
def test_leading_choice_in_any_answer_needs_a_parenthesis(text, letter):
    assert leading_choice(text) == letter
