"""Length shaping as pure tensor functions: DAPO's overlong penalty and a truncation mask.

Shapes: ``_B`` is one entry per completion. Lengths count completion tokens only.
"""

from __future__ import annotations

import torch

__all__ = ["overlong_penalty_B", "truncated_B"]


def overlong_penalty_B(
    lengths_B: torch.Tensor, *, max_len: int, cache_len: int, penalty: float = 1.0
) -> torch.Tensor:
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13), scaled by ``penalty``.

    0 for ``len <= max_len - cache_len``; falls linearly from 0 to ``-penalty`` over the last
    ``cache_len`` tokens, reaching ``-penalty`` at ``len == max_len``; ``-penalty`` beyond.
    ``cache_len == 0`` is a step: 0 up to ``max_len``, ``-penalty`` above it. Returns float32
    (or the input's floating dtype) on the input's device, to be added to the rewards.
    """
    if max_len <= 0:
        raise ValueError(f"max_len must be positive, got {max_len}")
    if not 0 <= cache_len <= max_len:
        raise ValueError(f"cache_len must be within [0, max_len={max_len}], got {cache_len}")
    dtype = lengths_B.dtype if lengths_B.is_floating_point() else torch.float32
    lengths = lengths_B.to(dtype)
    free = max_len - cache_len
    if cache_len == 0:
        ramp = torch.zeros_like(lengths)
    else:
        ramp = (free - lengths) / cache_len  # 0 at free, -1 at max_len
    out = torch.where(lengths <= free, torch.zeros_like(lengths), ramp)
    out = torch.where(lengths > max_len, torch.full_like(lengths, -1.0), out)
    return out * penalty


def truncated_B(
    lengths_B: torch.Tensor, ended_with_eos_B: torch.Tensor, *, max_len: int | None = None
) -> torch.Tensor:
    """Bool mask of completions cut off by the length limit rather than ended by the model.

    A completion is truncated when it did not end with EOS; with ``max_len`` given it must also
    have reached ``max_len`` tokens (so one stopped early by a stop string is not "truncated").
    Use it to mask truncated completions out of the loss (DAPO's overlong filtering).
    """
    if lengths_B.shape != ended_with_eos_B.shape:
        raise ValueError(
            f"lengths_B {tuple(lengths_B.shape)} and ended_with_eos_B "
            f"{tuple(ended_with_eos_B.shape)} must have the same shape"
        )
    truncated = ~ended_with_eos_B.to(torch.bool)
    if max_len is not None:
        truncated = truncated & (lengths_B >= max_len)
    return truncated
