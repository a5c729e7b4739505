"""Choosing the next token from logits: temperature, top-k, top-p (nucleus), greedy.

One sampler: an inverse-CDF draw (one uniform per row) from the temperature-scaled, filtered
distribution, with the entropy of the temperature-scaled distribution computed from the same
exp(z - max) (algo.logprobs.softmax_parts_NV, the package's one entropy formula).
"""

from __future__ import annotations

import torch

from grpokit.algo.logprobs import softmax_parts_NV


# what each extra stream index is multiplied by before it is added (primes, so streams stay apart)
_STREAM_WEIGHTS = (10_007, 101, 1_000_000_007)


def seeded_generator(device, seed: int, *stream: int) -> torch.Generator:
    """A torch.Generator on `device` whose state is fixed by `seed` and up to three stream indices
    (e.g. step, rank, sampling round), so the same (seed, stream) always draws the same tokens
    and a resumed run samples as the uninterrupted one. With no stream the seed is used as given;
    otherwise seed * 1_000_003 + sum(index_i * weight_i) mod 2^63 - 1.
    Raises ValueError for more than three stream indices."""
    if len(stream) > len(_STREAM_WEIGHTS):
        raise ValueError(f"seeded_generator takes at most {len(_STREAM_WEIGHTS)} stream indices, got {len(stream)}")
    value = seed if not stream else (seed * 1_000_003 + sum(
        int(i) * w for i, w in zip(stream, _STREAM_WEIGHTS))) % (2**63 - 1)
    g = torch.Generator(device=device)
    g.manual_seed(value)
    return g


def filter_logits_BV(logits_BV: torch.Tensor, *, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set logits outside the top-k and outside the smallest nucleus of mass >= top_p to -inf."""
    if top_k > 0 and top_k < logits_BV.shape[-1]:
        kth_B1 = torch.topk(logits_BV, top_k, dim=-1).values[:, -1:]
        logits_BV = logits_BV.masked_fill(logits_BV < kth_B1, float("-inf"))
    if top_p < 1.0:
        sorted_BV, order_BV = torch.sort(logits_BV, dim=-1, descending=True)
        cum_BV = torch.softmax(sorted_BV, dim=-1).cumsum(-1)
        drop_sorted_BV = (cum_BV - torch.softmax(sorted_BV, dim=-1)) >= top_p  # mass before token
        drop_BV = drop_sorted_BV.scatter(-1, order_BV, drop_sorted_BV)
        logits_BV = logits_BV.masked_fill(drop_BV, float("-inf"))
    return logits_BV


def inverse_cdf_draw_B(weights_BV: torch.Tensor, generator: torch.Generator | None = None,
                       block: int = 256) -> torch.Tensor:
    """One index per row drawn with probability weights_BV[b, v] / sum_v weights_BV[b, v] (the
    weights need not be normalised), from a single uniform u per row: the first index whose
    cumulative weight exceeds u * total. The same distribution as torch.multinomial (tested with
    a chi-square test in tests/test_fast_paths.py), but ~30x cheaper on a 32k vocabulary, where
    multinomial draws an exponential per entry; another random stream, so other tokens for the
    same seed.

    Two levels keep it to one pass over the vocabulary: u picks a block of `block` entries on
    the cumulative block sums (float64), then the position inside that block on the block's own
    cumulative sum. An index of weight 0 is never drawn."""
    B, V = weights_BV.shape
    nb = -(-V // block)
    p_BV = weights_BV.float().contiguous()
    if nb * block != V:
        p_BV = torch.nn.functional.pad(p_BV, (0, nb * block - V))
    p_BNK = p_BV.view(B, nb, block)
    cdf_BN = p_BNK.sum(-1).double().cumsum(-1)
    u_B1 = torch.rand(B, 1, generator=generator, dtype=torch.float64, device=weights_BV.device) * cdf_BN[:, -1:]
    blk_B = torch.searchsorted(cdf_BN, u_B1, right=True).squeeze(-1).clamp_(max=nb - 1)
    start_B = torch.where(blk_B > 0, cdf_BN.gather(1, (blk_B - 1).clamp(min=0)[:, None]).squeeze(1), 0.0)
    mass_B = cdf_BN.gather(1, blk_B[:, None]).squeeze(1) - start_B
    in_BK = p_BNK[torch.arange(B, device=p_BV.device), blk_B]
    cdf_in_BK = in_BK.double().cumsum(-1)
    frac_B1 = ((u_B1.squeeze(1) - start_B) / mass_B.clamp(min=torch.finfo(torch.float64).tiny)).clamp(0, 1)[:, None]
    pos_B = torch.searchsorted(cdf_in_BK, frac_B1 * cdf_in_BK[:, -1:], right=True).squeeze(-1)
    last_B = (torch.arange(block, device=p_BV.device) * (in_BK > 0)).amax(-1)  # rounding at the top edge
    return blk_B * block + torch.minimum(pos_B, last_B)


def sample_next_B(
    logits_BV: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(one token id per row [B]; entropy in nats of softmax(logits / temperature) [B]; the drawn
    token's log-prob under that distribution [B]). Entropy and log-prob are taken before
    top-k/top-p, and are None when greedy (temperature == 0: argmax).

    The draw is inverse-CDF (inverse_cdf_draw_B) on the unnormalised exp(z - max) that the
    entropy also uses, so the vocabulary is exponentiated once per step; the log-prob is
    z[token] - logsumexp(z) from the same pass (equal to algo.logprobs.token_logprobs_BT)."""
    if temperature == 0.0:
        return logits_BV.argmax(dim=-1), None, None
    z_BV = logits_BV.float() if temperature == 1.0 else logits_BV.float() / temperature
    e_BV, ent_B, logz_B = softmax_parts_NV(z_BV)
    if top_k > 0 or top_p < 1.0:
        e_BV = torch.softmax(filter_logits_BV(z_BV, top_k=top_k, top_p=top_p), dim=-1)
    tok_B = inverse_cdf_draw_B(e_BV, generator)
    return tok_B, ent_B, z_BV.gather(-1, tok_B[:, None]).squeeze(-1) - logz_B
