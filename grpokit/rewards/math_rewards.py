"""Math answer rewards: the textbook's three tiers, a binary variant, and the textbook adapter.

Two calling conventions meet here:

* grpokit's: ``reward(completion: str, example: dict) -> float | None``, the reference answer in
  ``example["answer"]`` (a bare answer, a GSM8K solution ending in ``#### x``, or a MATH
  solution with ``\\boxed{}``: ``extract_gold`` finds the answer in each);
* the textbook's: ``reward_fn(response: str, ground_truth: str) -> float``, wrapped with
  ``from_textbook(fn)``.

None means "could not judge" (math-verify ran out of time): the trainer leaves such a
completion out of its group's statistics instead of teaching it a made-up score.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from .answers import as_written, extract_answer, extract_gold, opened_in, strip_think
from .choices import choice_letter, last_line_choice, leading_choice
from .latex import DEFAULT_TIMEOUT_S
from .matching import answers_match

__all__ = [
    "grade",
    "math_reward",
    "math_answer_reward",
    "math_binary_reward",
    "from_textbook",
    "gold_answer",
]


def gold_answer(example: dict) -> str:
    """The bare reference answer of a dataset record, with a clear error if there is none."""
    if not isinstance(example, dict) or "answer" not in example:
        keys = sorted(example) if isinstance(example, dict) else type(example).__name__
        raise ValueError(f"math rewards need example['answer'] (the reference); got keys {keys}")
    return extract_gold(example["answer"])


def grade(response: str, ground_truth: str, *, timeout_s: float | None = DEFAULT_TIMEOUT_S):
    """``(extracted answer, verdict)``: verdict True/False, or None if the check timed out.

    The extracted answer is None when the response states no answer at all. Against a
    multiple-choice reference, a response whose answer is not a choice may still end in one
    on its last line (``"...\n**(C)**"``).
    """
    gold = extract_gold(ground_truth)
    choices = choice_letter(gold) is not None
    predicted = extract_answer(response, choices=choices)
    if choices and (predicted is None or leading_choice(predicted, lenient=True) is None):
        visible = strip_think(response) if isinstance(response, str) else None
        letter = last_line_choice(visible) if visible else None
        predicted = f"({letter})" if letter else predicted
    if predicted is None:
        return None, False
    return predicted, answers_match(gold, predicted, timeout_s=timeout_s)


def math_reward(
    response: str,
    ground_truth: str,
    *,
    correct: float = 1.0,
    wrong: float = -0.5,
    missing: float = -1.0,
    binary: bool = False,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
) -> float | None:
    """The textbook's three-tier math reward, in the textbook's ``(response, ground_truth)`` form.

    ``correct`` if the final answer equals the reference, ``wrong`` if an answer is there but
    differs, ``missing`` if no answer can be found. ``binary=True`` gives 1.0 / 0.0 instead.
    None if math-verify could not decide within ``timeout_s`` seconds.
    """
    predicted, verdict = grade(response, ground_truth, timeout_s=timeout_s)
    if verdict is None:
        return None
    if binary:
        return 1.0 if verdict else 0.0
    if predicted is None:
        return float(missing)
    return float(correct) if verdict else float(wrong)


def math_answer_reward(
    completion: str,
    example: dict,
    *,
    correct: float = 1.0,
    wrong: float = -0.5,
    missing: float = -1.0,
    opened_in_prompt: bool | None = None,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
) -> float | None:
    """Registry name ``math``: three tiers (+1 right, -0.5 wrong, -1 no answer by default).
    When the prompt opened a think block (``opened_in_prompt``; None reads the record) a
    completion that never writes ``</think>`` has no answer."""
    return math_reward(
        as_written(completion, opened_in(example, opened_in_prompt)), gold_answer(example),
        correct=correct, wrong=wrong, missing=missing, timeout_s=timeout_s,
    )


def math_binary_reward(
    completion: str, example: dict, *, opened_in_prompt: bool | None = None,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
) -> float | None:
    """Registry name ``math_binary``: 1.0 if the final answer is right, else 0.0 (an unclosed
    thought opened by the prompt has no answer, as in ``math``)."""
    return math_reward(as_written(completion, opened_in(example, opened_in_prompt)), gold_answer(example),
                       binary=True, timeout_s=timeout_s)


class from_textbook:  # noqa: N801 - used like a function: ``from_textbook(fn)``
    """Adapt a textbook ``reward_fn(response, ground_truth)`` to ``(completion, example)``.

    The ground truth handed to ``fn`` is ``example[key]`` as stored (``"answer"`` by default).
    A class rather than a closure so that the adapted reward pickles into worker processes
    whenever ``fn`` itself does.
    """

    def __init__(self, fn: Callable[[str, str], Any], key: str = "answer") -> None:
        if not callable(fn):
            raise TypeError(f"from_textbook needs a function, got {type(fn).__name__}")
        self.fn = fn
        self.key = key
        functools.update_wrapper(self, fn)

    def __call__(self, completion: str, example: dict) -> Any:
        if not isinstance(example, dict) or self.key not in example:
            raise ValueError(f"textbook reward {self.__name__!r} needs example[{self.key!r}]")
        return self.fn(completion, example[self.key])

    def __repr__(self) -> str:
        return f"from_textbook({getattr(self.fn, '__qualname__', self.fn)!r})"
