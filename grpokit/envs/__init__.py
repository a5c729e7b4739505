"""Multi-turn environments: an example becomes the first messages, each model turn is read, and
the environment answers with tool results (another turn) or ends the episode (docs/tools.md).

    from grpokit.envs import ToolEnvironment, Tool
    env = ToolEnvironment([Tool.from_function(add)])
    episode = env.start(example)                         # Episode with the first messages
    new_messages = env.step(episode, "<tool_call>{...}</tool_call>")  # [] = the episode ends

The rollout loop (grpokit.rollout.multiturn) turns this into exact token ids.
"""

from .base import Environment, Episode, ToolCall, Turn
from .parsing import parse_tool_calls
from .registry import ENVIRONMENTS, make_environment
from .tools import Tool, ToolEnvironment

__all__ = ["ENVIRONMENTS", "Environment", "Episode", "Tool", "ToolCall", "ToolEnvironment", "Turn",
           "make_environment", "parse_tool_calls"]
