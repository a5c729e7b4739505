"""The reference policy pi_ref of the KL penalty, as a function rollout -> logp_BT (no grad).

An adapter model (lora / qlora) is its own reference: the same forward with the adapter
switched off is exactly the frozen base, so no second copy of the weights is held. A fully
fine-tuned model needs a frozen copy, made once, before the first update, and only when the KL
term is on (algo.beta > 0).
"""

from __future__ import annotations

import copy
import sys
from typing import Callable

import torch

from grpokit.config import Config
from grpokit.policy.forward import policy_logprobs_BT
from grpokit.rollout.generate import Rollout, eval_mode

RefLogprobs = Callable[[Rollout], torch.Tensor]


def is_adapter_model(model) -> bool:
    """Whether model is a peft adapter model (lora / qlora: its own reference with the adapter
    off), without importing peft (which imports bitsandbytes): a PeftModel can exist only once
    peft is imported."""
    peft = sys.modules.get("peft")
    return peft is not None and isinstance(model, peft.PeftModel)


def adapter_off_logprobs(model, *, temperature: float, chunk: int = 256) -> RefLogprobs:
    """Log-probs of a peft model with its adapter disabled: the base model, bit for bit."""

    @torch.no_grad()
    def ref_logprobs(rollout: Rollout) -> torch.Tensor:
        with model.disable_adapter(), eval_mode(model):
            return policy_logprobs_BT(model, rollout, temperature=temperature, chunk=chunk)

    return ref_logprobs


def frozen_copy_logprobs(model, *, temperature: float, chunk: int = 256) -> RefLogprobs:
    """Log-probs of a frozen copy of the model as it is now (full fine-tuning)."""
    frozen = copy.deepcopy(model)
    frozen.requires_grad_(False)
    frozen.eval()

    @torch.no_grad()
    def ref_logprobs(rollout: Rollout) -> torch.Tensor:
        return policy_logprobs_BT(frozen, rollout, temperature=temperature, chunk=chunk)

    ref_logprobs.model = frozen  # kept reachable for tests and for moving between devices
    return ref_logprobs


def build_reference(model, cfg: Config) -> RefLogprobs | None:
    """None when algo.beta == 0 (nothing is copied); else the reference for this model.

    Log-probs use the rollout temperature, like the policy's (DESIGN pitfall 5)."""
    if cfg.algo.beta <= 0:
        return None
    kwargs = dict(temperature=cfg.rollout.temperature, chunk=cfg.train.logprob_chunk)
    if is_adapter_model(model):
        return adapter_off_logprobs(model, **kwargs)
    return frozen_copy_logprobs(model, **kwargs)
