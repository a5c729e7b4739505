"""Advantage estimators: rewards_PG (prompts x group) -> advantages_PG.

A reward of NaN means "could not judge": it is left out of the group's statistics and its
advantage is 0, so it contributes nothing to the gradient.
"""

from __future__ import annotations

import torch

from grpokit.registry import Registry

ADVANTAGES = Registry("advantage estimator")


def _group_mean_P1(rewards_PG: torch.Tensor) -> torch.Tensor:
    return torch.nanmean(rewards_PG, dim=1, keepdim=True)


def _nan_std(x: torch.Tensor, dim=None, keepdim: bool = False) -> torch.Tensor:
    """Unbiased (n-1) standard deviation ignoring NaN; 0 where fewer than 2 values."""
    valid = ~torch.isnan(x)
    n = valid.sum(dim=dim, keepdim=True) if dim is not None else valid.sum()
    mean = torch.nanmean(x, dim=dim, keepdim=True) if dim is not None else torch.nanmean(x)
    sq = torch.where(valid, (x - mean) ** 2, torch.zeros_like(x))
    ss = sq.sum(dim=dim, keepdim=True) if dim is not None else sq.sum()
    var = ss / (n - 1).clamp(min=1)
    std = var.sqrt()
    if dim is not None and not keepdim:
        std = std.squeeze(dim)
    return std


@ADVANTAGES.register("group_mean")
def group_mean_PG(rewards_PG: torch.Tensor, *, eps: float = 1e-4) -> torch.Tensor:
    """The textbook's baseline: A_i = r_i - mean(r)."""
    return rewards_PG - _group_mean_P1(rewards_PG)


@ADVANTAGES.register("group_zscore")
def group_zscore_PG(rewards_PG: torch.Tensor, *, eps: float = 1e-4) -> torch.Tensor:
    """GRPO (DeepSeekMath): A_i = (r_i - mean r) / (std r + eps), std with n-1 like torch.std."""
    return (rewards_PG - _group_mean_P1(rewards_PG)) / (_nan_std(rewards_PG, dim=1, keepdim=True) + eps)


@ADVANTAGES.register("rloo")
def rloo_PG(rewards_PG: torch.Tensor, *, eps: float = 1e-4) -> torch.Tensor:
    """RLOO: A_i = r_i - mean_{j != i} r_j  (= n/(n-1) * (r_i - mean r), n valid rewards)."""
    n_P1 = (~torch.isnan(rewards_PG)).sum(dim=1, keepdim=True).float()
    scale_P1 = torch.where(n_P1 > 1, n_P1 / (n_P1 - 1).clamp(min=1), torch.zeros_like(n_P1))
    return scale_P1 * (rewards_PG - _group_mean_P1(rewards_PG))


@ADVANTAGES.register("batch_std")
def batch_std_PG(rewards_PG: torch.Tensor, *, eps: float = 1e-4) -> torch.Tensor:
    """Group-mean baseline, scaled by the std of all rewards in the batch (Liu et al. 2025,
    "Tricks or Traps", the Lite-PPO normalisation)."""
    return (rewards_PG - _group_mean_P1(rewards_PG)) / (_nan_std(rewards_PG) + eps)


def compute_advantages_PG(rewards_PG: torch.Tensor, estimator: str, *, eps: float = 1e-4) -> torch.Tensor:
    """Look up the estimator, apply it, and zero the advantage of unjudged (NaN) rewards."""
    adv_PG = ADVANTAGES.get_fn(estimator)(rewards_PG.float(), eps=eps)
    return torch.nan_to_num(adv_PG, nan=0.0)


def zero_std_P(rewards_PG: torch.Tensor) -> torch.Tensor:
    """True for groups whose judged rewards are all equal (no learning signal)."""
    return _nan_std(rewards_PG, dim=1) == 0
