"""The reference policy pi_ref of the KL penalty (algo.beta > 0): a Reference, whose `logprobs`
gives the per-token log-probs of a rollout's completions under pi_ref (no grad).

An adapter model (lora / qlora) is its own reference: the same forward with the adapter
switched off is exactly the frozen base, so no second copy of the weights is held. A fully
fine-tuned model needs a frozen copy, made once, before the first update, and only when the KL
term is on. The KL estimators themselves are in grpokit.algo.losses.
"""

from __future__ import annotations

import contextlib
import copy
import sys

import torch

from grpokit.config import Config
from grpokit.policy.forward import policy_logprobs_BT
from grpokit.rollout.generate import Rollout, eval_mode


def is_adapter_model(model) -> bool:
    """Whether model is a peft adapter model (lora / qlora: its own reference with the adapter
    off), without importing peft (which imports bitsandbytes): a PeftModel can exist only once
    peft is imported."""
    peft = sys.modules.get("peft")
    return peft is not None and isinstance(model, peft.PeftModel)


class Reference:
    """pi_ref as a module and how to run it.

    `model` is what computes the log-probs: the policy itself with its adapter switched off
    (`adapter_off`), or a frozen copy. `frozen_copy` is that copy (None for an adapter model):
    the weights a sharded run shards and gathers besides the policy's.
    Log-probs use the rollout temperature, like the policy's (docs/design.md)."""

    def __init__(self, model: torch.nn.Module, *, adapter_off: bool, temperature: float, chunk: int = 256):
        self.model, self.adapter_off = model, adapter_off
        self.temperature, self.chunk = temperature, chunk

    @classmethod
    def of(cls, policy: torch.nn.Module, *, temperature: float, chunk: int = 256) -> "Reference":
        """The reference for `policy` as it is now: its adapter off, or a frozen deep copy."""
        if is_adapter_model(policy):
            return cls(policy, adapter_off=True, temperature=temperature, chunk=chunk)
        frozen = copy.deepcopy(policy)
        frozen.requires_grad_(False)
        frozen.eval()
        return cls(frozen, adapter_off=False, temperature=temperature, chunk=chunk)

    @property
    def frozen_copy(self) -> torch.nn.Module | None:
        return None if self.adapter_off else self.model

    @torch.no_grad()
    def logprobs(self, rollout: Rollout) -> torch.Tensor:
        """log pi_ref of each completion token [B, T] (T = the rollout's completion width)."""
        adapter = self.model.disable_adapter() if self.adapter_off else contextlib.nullcontext()
        with adapter, eval_mode(self.model):
            return policy_logprobs_BT(self.model, rollout, temperature=self.temperature, chunk=self.chunk)


def build_reference(model, cfg: Config) -> Reference | None:
    """None when algo.beta == 0 (nothing is copied); else Reference.of(model)."""
    if cfg.algo.beta <= 0:
        return None
    return Reference.of(model, temperature=cfg.rollout.temperature, chunk=cfg.train.logprob_chunk)
