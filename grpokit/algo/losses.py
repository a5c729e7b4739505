"""Per-token objectives (to be minimised) and KL estimators.

Every objective has the same signature:
    fn(logp_BT, old_logp_BT, adv_B, mask_BT, *, eps_low, eps_high) -> ObjectiveTerms
logp_BT carries the gradient; old_logp_BT is the sampling policy's (detached). An objective
returns its per-token loss and the tokens its own clip acted on (PPO's and GSPO's min took the
clipped term, so the token gives no gradient; CISPO's importance weight was truncated): the
trainer's `clipped_share` metric is that mask's share, whatever the objective. How the per-token
terms become one number is the aggregation's job (aggregate.py), not the objective's.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from grpokit.registry import Registry

OBJECTIVES = Registry("objective")
KL_ESTIMATORS = Registry("KL estimator")


class ObjectiveTerms(NamedTuple):
    """An objective's per-token loss [B, T] and the bool [B, T] mask of tokens its clip acted on."""

    loss_BT: torch.Tensor
    clipped_BT: torch.Tensor


class TokenTerms(NamedTuple):
    """objective + beta * KL per token [B, T]; the KL term [B, T] (None when beta == 0); the
    objective's clipped-token mask [B, T] (bool)."""

    loss_BT: torch.Tensor
    kl_BT: torch.Tensor | None
    clipped_BT: torch.Tensor


def importance_ratio_BT(logp_BT: torch.Tensor, old_logp_BT: torch.Tensor) -> torch.Tensor:
    """rho = pi / pi_old per token, from log-probs [B, T]."""
    return torch.exp(logp_BT - old_logp_BT)


def clipped_surrogate_BT(ratio_BT: torch.Tensor, adv_B: torch.Tensor, *, eps_low: float,
                         eps_high: float) -> ObjectiveTerms:
    """-min(rho A, clip(rho, 1-eps_low, 1+eps_high) A) per token (Schulman et al. 2017); a token
    counts as clipped where the min takes the clipped term (rho > 1+eps_high with A > 0, or
    rho < 1-eps_low with A < 0): its gradient is zero."""
    adv_B1 = adv_B[:, None]
    plain_BT = ratio_BT * adv_B1
    clipped_BT = torch.clamp(ratio_BT, 1.0 - eps_low, 1.0 + eps_high) * adv_B1
    return ObjectiveTerms(-torch.minimum(plain_BT, clipped_BT), (clipped_BT < plain_BT).detach())


@OBJECTIVES.register("reinforce")
def reinforce_BT(logp_BT, old_logp_BT, adv_B, mask_BT, *, eps_low: float, eps_high: float) -> ObjectiveTerms:
    """The textbook: -A_i * log pi(o_i,t). No ratio, no clipping (no token is ever clipped)."""
    return ObjectiveTerms(-adv_B[:, None] * logp_BT, torch.zeros_like(logp_BT, dtype=torch.bool))


@OBJECTIVES.register("ppo_clip")
def ppo_clip_BT(logp_BT, old_logp_BT, adv_B, mask_BT, *, eps_low: float, eps_high: float) -> ObjectiveTerms:
    """GRPO/PPO: -min(rho A, clip(rho, 1-eps_low, 1+eps_high) A), rho = pi/pi_old per token.
    Separate eps_low / eps_high is DAPO's clip-higher."""
    return clipped_surrogate_BT(importance_ratio_BT(logp_BT, old_logp_BT), adv_B, eps_low=eps_low, eps_high=eps_high)


@OBJECTIVES.register("gspo")
def gspo_BT(logp_BT, old_logp_BT, adv_B, mask_BT, *, eps_low: float, eps_high: float) -> ObjectiveTerms:
    """GSPO (Zheng et al. 2025): sequence ratio s_i = exp(mean_t log rho_i,t), clipped per
    sequence (so every token of a clipped sequence counts as clipped). Written in the paper's
    GSPO-token form s_i,t = sg[s_i] * pi/sg[pi], whose value is s_i at every token and whose
    gradient equals GSPO's when advantages are per sequence; use it with the sequence_mean
    aggregation to get the paper's objective exactly."""
    lengths_B = mask_BT.sum(-1).clamp(min=1)
    log_s_B = ((logp_BT - old_logp_BT) * mask_BT).sum(-1) / lengths_B
    s_BT = torch.exp(log_s_B.detach()[:, None] + logp_BT - logp_BT.detach())
    return clipped_surrogate_BT(s_BT, adv_B, eps_low=eps_low, eps_high=eps_high)


@OBJECTIVES.register("cispo")
def cispo_BT(logp_BT, old_logp_BT, adv_B, mask_BT, *, eps_low: float, eps_high: float) -> ObjectiveTerms:
    """CISPO (MiniMax-M1): -sg[min(rho, 1+eps_high)] * A * log pi. Every token keeps a gradient;
    only the importance weight is truncated, and a token counts as clipped where it is
    (rho > 1+eps_high; eps_low is unused: the paper sets no lower bound)."""
    ratio_BT = importance_ratio_BT(logp_BT, old_logp_BT).detach()
    weight_BT = torch.clamp(ratio_BT, max=1.0 + eps_high)
    return ObjectiveTerms(-weight_BT * adv_B[:, None] * logp_BT, ratio_BT > 1.0 + eps_high)


@KL_ESTIMATORS.register("k1")
def kl_k1_BT(logp_BT: torch.Tensor, ref_logp_BT: torch.Tensor) -> torch.Tensor:
    """k1 = log(pi/pi_ref)."""
    return logp_BT - ref_logp_BT


@KL_ESTIMATORS.register("k2")
def kl_k2_BT(logp_BT: torch.Tensor, ref_logp_BT: torch.Tensor) -> torch.Tensor:
    """k2 = 1/2 (log pi/pi_ref)^2."""
    return 0.5 * (logp_BT - ref_logp_BT) ** 2


@KL_ESTIMATORS.register("k3")
def kl_k3_BT(logp_BT: torch.Tensor, ref_logp_BT: torch.Tensor) -> torch.Tensor:
    """k3 = pi_ref/pi - log(pi_ref/pi) - 1 (Schulman's unbiased, non-negative estimator)."""
    log_r_BT = ref_logp_BT - logp_BT
    return torch.exp(log_r_BT) - log_r_BT - 1.0


def kl_BT(logp_BT: torch.Tensor, ref_logp_BT: torch.Tensor, estimator: str) -> torch.Tensor:
    """KL(pi || pi_ref) per token [B, T] by the named estimator (k1, k2, k3)."""
    return KL_ESTIMATORS.get_fn(estimator)(logp_BT, ref_logp_BT)


def per_token_loss_BT(
    logp_BT: torch.Tensor,
    old_logp_BT: torch.Tensor,
    adv_B: torch.Tensor,
    mask_BT: torch.Tensor,
    *,
    objective: str,
    eps_low: float,
    eps_high: float,
    beta: float = 0.0,
    ref_logp_BT: torch.Tensor | None = None,
    kl_estimator: str = "k3",
) -> TokenTerms:
    """objective + beta * KL per token, the KL term and the objective's clipped-token mask.
    Raises ValueError when beta > 0 and no reference log-probs are given."""
    loss_BT, clipped_BT = OBJECTIVES.get_fn(objective)(
        logp_BT, old_logp_BT, adv_B, mask_BT, eps_low=eps_low, eps_high=eps_high
    )
    kl = None
    if beta > 0.0:
        if ref_logp_BT is None:
            raise ValueError("beta > 0 needs reference log-probs (ref_logp_BT)")
        kl = kl_BT(logp_BT, ref_logp_BT, kl_estimator)
        loss_BT = loss_BT + beta * kl
    return TokenTerms(loss_BT, kl, clipped_BT)
