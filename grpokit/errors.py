"""Every error grpokit raises on purpose, in one place at the bottom of the package.

Each message names the config field, file, row or reward it is about (docs/design.md, "Errors").
The command line turns these into one line and an exit status; anything else is a bug.
"""

from __future__ import annotations


class GrpokitError(Exception):
    """Base of grpokit's own errors."""


class ConfigError(GrpokitError, ValueError):
    """A config problem, found before any model is loaded; the message names the field."""


class DataError(ConfigError):
    """A dataset cannot be read or mapped; the message names the file, row or column."""


class RewardError(GrpokitError, ValueError):
    """A reward could not be loaded, or failed on too many completions of a step."""


class CheckpointError(GrpokitError, RuntimeError):
    """A checkpoint cannot be read, or does not match the run that resumes from it."""
