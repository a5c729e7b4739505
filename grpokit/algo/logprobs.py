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

    The temperature must be the one the sampler used (docs/design.md, pitfall 5)."""
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


def softmax_parts_NV(z_NV: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(e_NV = exp(z - max z), the unnormalised probabilities; entropy_N of softmax(z) in nats;
    logz_N = logsumexp(z), so log softmax(z)[i] = z[i] - logz_N) for float logits z_NV (already
    divided by the temperature). The package's one entropy formula, shared by the sampler (which
    draws from e_NV and reads the drawn token's log-prob off logz_N) and entropy_BT:
    H = log S - sum(e * d) / S with d = z - max z and S = sum e. A banned token (z = -inf) has
    e = 0 and adds nothing (its 0 * -inf is dropped)."""
    max_N1 = z_NV.amax(-1, keepdim=True)
    d_NV = z_NV - max_N1
    e_NV = d_NV.exp()
    sum_N = e_NV.sum(-1)
    log_sum_N = sum_N.log()
    return e_NV, log_sum_N - d_NV.mul_(e_NV).nansum(-1) / sum_N, max_N1.squeeze(-1) + log_sum_N


@torch.no_grad()
def entropy_BT(logits_BTV: torch.Tensor, *, temperature: float = 1.0, chunk: int = 256) -> torch.Tensor:
    """Entropy in nats of the (temperature-scaled) next-token distribution at each position,
    chunk by chunk over positions (softmax_parts_NV). No grad."""
    pieces = []
    for start in range(0, logits_BTV.shape[1], chunk):
        logits_BCV = logits_BTV[:, start : start + chunk].float()
        if temperature != 1.0:
            logits_BCV = logits_BCV / temperature
        pieces.append(softmax_parts_NV(logits_BCV)[1])
    return torch.cat(pieces, dim=1)


def completion_mask_BT(lengths_B: torch.Tensor, T: int) -> torch.Tensor:
    """1.0 for the first lengths_B[b] positions of row b, else 0.0.

    Built from lengths, never from token ids: with pad == eos an id-based mask would drop the
    real EOS from the loss (docs/design.md, pitfall 4). The EOS token counts in the length."""
    positions_T = torch.arange(T, device=lengths_B.device)
    return (positions_T[None, :] < lengths_B[:, None]).float()


class _HeadLogprobs(torch.autograd.Function):
    """log softmax(hidden @ weight.T / temperature)[ids] per position, chunk by chunk.

    The forward turns each chunk's logits into probabilities in place and keeps them; the backward
    turns those into the logits' gradient in place (p * -g, plus g at the chosen id) and feeds
    it straight to the two matmuls. Autograd would instead build, for the whole batch, the logits,
    the log-softmax, a zero-filled gather gradient and their sum: several more vocabulary-sized
    tensors, each a pass over memory and a fresh allocation."""

    @staticmethod
    def forward(ctx, hidden_NH, weight_VH, ids_N, temperature: float, chunk: int):
        logp_N = torch.empty(hidden_NH.shape[0], dtype=torch.float32, device=hidden_NH.device)
        probs = []
        for start in range(0, hidden_NH.shape[0], chunk):
            sl = slice(start, start + chunk)
            z_CV = (hidden_NH[sl] @ weight_VH.t()).float()
            if temperature != 1.0:
                z_CV.div_(temperature)
            max_C1 = z_CV.amax(-1, keepdim=True)
            chosen_C = z_CV.gather(-1, ids_N[sl, None]).squeeze(-1)
            sum_C1 = z_CV.sub_(max_C1).exp_().sum(-1, keepdim=True)
            logp_N[sl] = chosen_C - (max_C1 + sum_C1.log()).squeeze(-1)
            probs.append(z_CV.div_(sum_C1))
        ctx.save_for_backward(hidden_NH, weight_VH, ids_N)
        ctx.probs, ctx.temperature, ctx.chunk = probs, temperature, chunk
        return logp_N

    @staticmethod
    def backward(ctx, grad_N):
        hidden_NH, weight_VH, ids_N = ctx.saved_tensors
        probs, ctx.probs = ctx.probs, None  # consumed in place: a second backward is not supported
        if probs is None:
            raise RuntimeError("fused log-probs: backward can run only once")
        grad_hidden = torch.empty_like(hidden_NH) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros(weight_VH.shape, dtype=torch.float32, device=weight_VH.device) \
            if ctx.needs_input_grad[1] else None  # accumulated over chunks in float32
        for i, start in enumerate(range(0, hidden_NH.shape[0], ctx.chunk)):
            sl = slice(start, start + ctx.chunk)
            g_C1 = grad_N[sl, None].float()
            dz_CV = probs[i].mul_(-g_C1).scatter_add_(-1, ids_N[sl, None], g_C1)
            if ctx.temperature != 1.0:
                dz_CV.div_(ctx.temperature)
            dz_CV = dz_CV.to(hidden_NH.dtype)
            if grad_hidden is not None:
                grad_hidden[sl] = dz_CV @ weight_VH
            if grad_weight is not None and dz_CV.dtype == torch.float32:
                grad_weight.addmm_(dz_CV.t(), hidden_NH[sl])
            elif grad_weight is not None:
                grad_weight += dz_CV.t() @ hidden_NH[sl]
            probs[i] = None
        grad_weight = None if grad_weight is None else grad_weight.to(weight_VH.dtype)
        return grad_hidden, grad_weight, None, None, None


def head_logprobs_N(
    hidden_NH: torch.Tensor, weight_VH: torch.Tensor, ids_N: torch.Tensor, *, temperature: float = 1.0,
    chunk: int = 256
) -> torch.Tensor:
    """log softmax(hidden @ weight.T / temperature)[ids] for N positions, differentiable in hidden
    and weight, in float32: the LM head fused with the log-softmax (see _HeadLogprobs). Same
    values as token_logprobs_BT on the head's logits, to float rounding."""
    if hidden_NH.shape[0] != ids_N.shape[0]:
        raise ValueError(f"hidden {tuple(hidden_NH.shape)} and ids {tuple(ids_N.shape)} disagree")
    return _HeadLogprobs.apply(hidden_NH, weight_VH, ids_N, float(temperature), int(chunk))
