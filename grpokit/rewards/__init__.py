"""Rewards: plain functions ``(completion: str, example: dict) -> float | None``.

None means "could not judge". Built-ins are in ``REWARDS``; ``resolve_reward`` also loads
``package.module:function`` and ``path/to/file.py:function`` plug-ins; ``RewardScorer``
combines named rewards into a weighted sum with per-component metrics. See docs/rewards.md.
"""

from .answers import extract_answer, extract_gold, find_last_boxed, parse_number, strip_think
from .latex import latex_equivalent
from .matching import answers_match
from .math_rewards import (
    from_textbook,
    grade,
    math_answer_reward,
    math_binary_reward,
    math_reward,
)
from .registry import REWARDS, RewardError, register_reward, resolve_reward
from .scorer import RewardScorer, ScoreResult
from .think import has_think_block, reward_with_thinking, think_format_reward, think_math_reward


def __getattr__(name: str):
    # length.py needs torch; importing it lazily keeps reward worker processes light.
    if name in ("overlong_penalty_B", "truncated_B"):
        from . import length

        return getattr(length, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "REWARDS",
    "RewardError",
    "RewardScorer",
    "ScoreResult",
    "answers_match",
    "extract_answer",
    "extract_gold",
    "find_last_boxed",
    "from_textbook",
    "grade",
    "has_think_block",
    "latex_equivalent",
    "math_answer_reward",
    "math_binary_reward",
    "math_reward",
    "overlong_penalty_B",
    "parse_number",
    "register_reward",
    "resolve_reward",
    "reward_with_thinking",
    "strip_think",
    "think_format_reward",
    "think_math_reward",
    "truncated_B",
]
