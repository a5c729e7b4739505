"""The environment protocol and the episode record that rewards and logs see."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol


@dataclass
class ToolCall:
    """One call the model made: the tool's name and arguments as parsed, and what came back."""

    name: str
    arguments: dict
    output: str = ""  # the observation text the model reads (an error's message included)
    error: str = ""  # "" when the tool ran; else why not (unknown tool, bad arguments, raised, timeout)


@dataclass
class Turn:
    """One model turn: its text (special tokens kept, end-of-turn token removed) and its calls."""

    text: str
    tokens: int  # sampled tokens of the turn
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass
class Episode:
    """A whole conversation of one sampled row: the messages as a chat template takes them, the
    model's turns, and how it ended. ``final_text`` (the last turn, special tokens removed) is what
    a reward's ``completion`` argument receives; the reward's example gets ``episode`` (as_dict)."""

    messages: list[dict]
    turns: list[Turn] = field(default_factory=list)
    final_text: str = ""
    stop: str = ""  # answer (the environment ended it) | max_turns | max_tokens | max_turn_tokens
    retokenize_mismatch: int = -1  # first position where a full re-render tokenizes differently; -1 = none

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [c for t in self.turns for c in t.tool_calls]

    def as_dict(self) -> dict:
        return {"messages": self.messages, "turns": [asdict(t) for t in self.turns], "final_text": self.final_text,
                "stop": self.stop, "retokenize_mismatch": self.retokenize_mismatch}


class Environment(Protocol):
    """What the multi-turn rollout needs from an environment.

    tools: JSON schemas passed to the chat template's ``tools=`` (empty: none). stop_strings:
    texts that end a model turn besides the end-of-turn token (a tool-call close tag), kept in
    the turn. start(example) -> Episode with the first messages. step(episode, text) -> the new
    messages (tool results) that the model reads next, or [] when the episode ends; it records the
    turn's calls on the episode and never raises for anything the model wrote."""

    tools: list[dict]
    stop_strings: tuple[str, ...]

    def start(self, example: dict) -> Episode: ...

    def step(self, episode: Episode, text: str) -> list[dict]: ...
