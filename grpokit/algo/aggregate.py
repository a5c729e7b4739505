"""How per-token loss terms l_it (sequence i, token t; padding masked out) become one scalar:
the one argument that separates the textbook, GRPO, DAPO and Dr. GRPO. N is the batch's
sequence count, |o_i| sequence i's length, L the longest allowed completion (max_len):

    sequence_sum   (1/N) sum_i sum_t l_it            a SUM over each sequence's tokens
    sequence_mean  (1/N) sum_i (1/|o_i|) sum_t l_it  a mean over each sequence's tokens
    token_mean     (1/sum_i |o_i|) sum_i sum_t l_it  a mean over all tokens of the batch
    constant       (1/(N L)) sum_i sum_t l_it        a sum over all tokens, over a fixed number

Every aggregation takes the normalisers of the *whole* batch (num_seqs, num_tokens), not of the
slice it is given, so summing the results over micro-batches (or ranks) gives exactly the
full-batch value, and sequences left out because their advantage is zero change nothing.
"""

from __future__ import annotations

import torch

from grpokit.registry import Registry

AGGREGATIONS = Registry("aggregation")


@AGGREGATIONS.register("sequence_sum")
def sequence_sum(loss_BT, mask_BT, *, num_seqs: int, num_tokens: int, max_len: int):
    """The textbook: each sequence's per-token terms summed (not averaged), then divided by the
    number of sequences: -(1/G) sum_i A_i sum_t log pi for REINFORCE. Longer completions weigh more."""
    return (loss_BT * mask_BT).sum() / num_seqs


@AGGREGATIONS.register("sequence_mean")
def sequence_mean(loss_BT, mask_BT, *, num_seqs: int, num_tokens: int, max_len: int):
    """GRPO (DeepSeekMath): mean over each sequence's tokens, then mean over sequences."""
    lengths_B = mask_BT.sum(-1).clamp(min=1)
    return ((loss_BT * mask_BT).sum(-1) / lengths_B).sum() / num_seqs


@AGGREGATIONS.register("token_mean")
def token_mean(loss_BT, mask_BT, *, num_seqs: int, num_tokens: int, max_len: int):
    """DAPO: every token of the batch weighs the same."""
    return (loss_BT * mask_BT).sum() / max(num_tokens, 1)


@AGGREGATIONS.register("constant")
def constant(loss_BT, mask_BT, *, num_seqs: int, num_tokens: int, max_len: int):
    """Dr. GRPO: sum over all tokens divided by a constant, num_seqs * max_len."""
    return (loss_BT * mask_BT).sum() / (num_seqs * max_len)


def aggregate(
    loss_BT: torch.Tensor,
    mask_BT: torch.Tensor,
    kind: str,
    *,
    num_seqs: int | None = None,
    num_tokens: int | None = None,
    max_len: int | None = None,
) -> torch.Tensor:
    """Apply the named aggregation; normalisers default to this slice's own counts."""
    fn = AGGREGATIONS.get_fn(kind)
    return fn(
        loss_BT,
        mask_BT,
        num_seqs=num_seqs if num_seqs is not None else loss_BT.shape[0],
        num_tokens=num_tokens if num_tokens is not None else int(mask_BT.sum().item()),
        max_len=max_len if max_len is not None else loss_BT.shape[1],
    )
