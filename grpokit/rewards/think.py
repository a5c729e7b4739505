"""Think-token rewards (textbook ch. 6): a format check and the ``reward_with_thinking`` tiers.

A well-formed completion is ``<think> reasoning </think> answer``: exactly one block, opened
before anything else is said, with some reasoning inside and something after it. When the chat
template already opened the block in the prompt (DeepSeek-R1 style ``...<think>\\n``), the
completion holds only the reasoning and ``</think>``. grpokit records that per example when it
builds the prompt ids (``example["think_opened_in_prompt"]``, see grpokit/data/chat.py); every
reward here reads it unless ``opened_in_prompt`` is given explicitly (True/False overrides).
"""

from __future__ import annotations

from .answers import THINK_CLOSE, THINK_OPEN, THINK_OPENED_KEY, as_written, opened_in
from .latex import DEFAULT_TIMEOUT_S
from .math_rewards import gold_answer, grade

__all__ = ["THINK_OPENED_KEY", "has_think_block", "opened_in", "as_written", "think_format_reward",
           "think_math_reward", "reward_with_thinking"]


def has_think_block(completion: str, *, opened_in_prompt: bool = False) -> bool:
    """True for exactly one non-empty ``<think>...</think>`` at the start, followed by an answer."""
    if not isinstance(completion, str):
        return False
    opens = completion.count(THINK_OPEN)
    if completion.count(THINK_CLOSE) != 1 or opens != (0 if opened_in_prompt else 1):
        return False
    head, _, after = completion.partition(THINK_CLOSE)
    if opened_in_prompt:
        reasoning = head
    else:
        before, _, reasoning = head.partition(THINK_OPEN)
        if before.strip() or THINK_OPEN not in head:
            return False
    return bool(reasoning.strip()) and bool(after.strip())


def think_format_reward(completion: str, example: dict | None = None, *,
                        opened_in_prompt: bool | None = None) -> float:
    """Registry name ``think_format``: 1.0 for a well-formed think block before the answer.
    ``opened_in_prompt``: None reads the record (see ``opened_in``)."""
    return 1.0 if has_think_block(completion, opened_in_prompt=opened_in(example, opened_in_prompt)) else 0.0


def reward_with_thinking(
    response: str,
    ground_truth: str,
    *,
    correct_think: float = 1.0,
    correct_plain: float = 0.5,
    wrong_think: float = -0.2,
    otherwise: float = -0.5,
    opened_in_prompt: bool = False,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
) -> float | None:
    """The textbook's tiers: +1 right with a think block, +0.5 right without, -0.2 wrong (or no
    answer) with a think block, -0.5 otherwise. None if the answer check timed out.

    The answer is read from the text after ``</think>``, so a number inside the reasoning
    never counts as the answer.
    """
    thought = has_think_block(response, opened_in_prompt=opened_in_prompt)
    unfinished = opened_in_prompt and THINK_CLOSE not in response  # still thinking: no answer
    verdict = False if unfinished else grade(response, ground_truth, timeout_s=timeout_s)[1]
    if verdict is None:
        return None
    if verdict:
        return float(correct_think if thought else correct_plain)
    return float(wrong_think if thought else otherwise)


def think_math_reward(
    completion: str,
    example: dict,
    *,
    correct_think: float = 1.0,
    correct_plain: float = 0.5,
    wrong_think: float = -0.2,
    otherwise: float = -0.5,
    opened_in_prompt: bool | None = None,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
) -> float | None:
    """Registry name ``think_math``: ``reward_with_thinking`` against ``example["answer"]``.
    ``opened_in_prompt``: None reads the record (see ``opened_in``)."""
    return reward_with_thinking(
        completion, gold_answer(example),
        correct_think=correct_think, correct_plain=correct_plain, wrong_think=wrong_think,
        otherwise=otherwise, opened_in_prompt=opened_in(example, opened_in_prompt), timeout_s=timeout_s,
    )
