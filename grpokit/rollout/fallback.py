"""One log line per slower path taken, with the reason: shared by the decoders, the lean
decoder's matrix products and the update's forward (policy/forward.py)."""

from __future__ import annotations

import logging

log = logging.getLogger("grpokit")
_NOTED: set[tuple[str, str]] = set()


def note_fallback(what: str, reason: str) -> None:
    """Log, once per process for each (what, reason), that a slower path runs and why."""
    if (what, reason) not in _NOTED:
        _NOTED.add((what, reason))
        log.warning("grpokit: %s (%s)", what, reason)
