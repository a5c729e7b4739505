"""A rule reward for short stories (registry name ``story_words``): the story uses the words it
is asked for, and stops within a length.

Used by recipes/stories260k-words.yaml, which teaches a real pretrained TinyStories model
(stories260K) to bring given words into its story. The words come from the record's ``words``
column (a list, or a comma-separated string) unless ``words`` is given as a keyword argument.
"""

from __future__ import annotations

import re

__all__ = ["story_words_reward", "words_used"]

_WORD = re.compile(r"[a-z']+")


def _wanted(example: dict, words) -> list[str]:
    value = words if words else (example.get("words") if isinstance(example, dict) else None)
    if isinstance(value, str):
        value = value.split(",")
    if not value:
        raise ValueError("story_words needs the words to use: a 'words' column in the data "
                         "or reward.kwargs.story_words.words")
    return [w.strip().lower() for w in value if w.strip()]


def words_used(completion: str, wanted: list[str]) -> float:
    """Share of ``wanted`` words that occur in ``completion`` as whole words (any case; a plural
    or possessive counts: "dogs", "boxes", "dog's")."""
    seen = set(_WORD.findall(completion.lower()))
    seen |= {w[:-1] for w in seen if w.endswith("s")} | {w[:-2] for w in seen if w.endswith(("'s", "es"))}
    return sum(w in seen for w in wanted) / len(wanted)


def story_words_reward(completion: str, example: dict, *, words=None, max_words: int = 0,
                       too_long: float = 0.0) -> float:
    """Share of the asked-for words used in the story, in [0, 1]; a story longer than
    ``max_words`` words (0 = no limit) scores ``too_long`` instead."""
    if max_words and len(_WORD.findall(completion.lower())) > max_words:
        return float(too_long)
    return words_used(completion, _wanted(example, words))
