"""Per-token log-probabilities and entropy of given token ids, chunked over the sequence.

The full-vocabulary log-softmax is never built for the whole batch: each chunk of positions
computes a logsumexp and gathers the chosen ids, so peak extra memory is B x chunk x V.
"""

from __future__ import annotations

import torch


def token_logprobs_BT(
    logits_BTV: torch.Tensor, ids_BT: torch.Tensor, *, temperature: float = 1.0, chunk: int = 256
) -> torch.Tensor:
    """log softmax(logits / temperature)[ids], in float32, differentiable.

    The temperature must be the one the sampler used (DESIGN pitfall 5)."""
    if logits_BTV.shape[:2] != ids_BT.shape:
        raise ValueError(f"logits {tuple(logits_BTV.shape)} and ids {tuple(ids_BT.shape)} disagree")
    pieces = []
    for start in range(0, ids_BT.shape[1], chunk):
        logits_BCV = logits_BTV[:, start : start + chunk].float()
        if temperature != 1.0:
            logits_BCV = logits_BCV / temperature
        chosen_BC = logits_BCV.gather(-1, ids_BT[:, start : start + chunk, None]).squeeze(-1)
        pieces.append(chosen_BC - torch.logsumexp(logits_BCV, dim=-1))
    return torch.cat(pieces, dim=1)


@torch.no_grad()
def entropy_BT(logits_BTV: torch.Tensor, *, temperature: float = 1.0, chunk: int = 256) -> torch.Tensor:
    """Entropy of the (temperature-scaled) next-token distribution at each position. No grad."""
    pieces = []
    for start in range(0, logits_BTV.shape[1], chunk):
        logits_BCV = logits_BTV[:, start : start + chunk].float()
        if temperature != 1.0:
            logits_BCV = logits_BCV / temperature
        logp_BCV = torch.log_softmax(logits_BCV, dim=-1)
        pieces.append(-(logp_BCV.exp() * logp_BCV).sum(-1))
    return torch.cat(pieces, dim=1)


def completion_mask_BT(lengths_B: torch.Tensor, T: int) -> torch.Tensor:
    """1.0 for the first lengths_B[b] positions of row b, else 0.0.

    Built from lengths, never from token ids: with pad == eos an id-based mask would drop the
    real EOS from the loss (DESIGN pitfall 4). The EOS token counts in the length."""
    positions_T = torch.arange(T, device=lengths_B.device)
    return (positions_T[None, :] < lengths_B[:, None]).float()
