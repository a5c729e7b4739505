"""A model's trainable parameters as a name -> tensor dict, and back (checkpoints, sharding)."""

from __future__ import annotations

import torch

from grpokit.errors import CheckpointError


def trainable_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}


def check_trainable_names(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> dict:
    """The model's trainable parameters by name; an error unless `tensors` has exactly those."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    missing, extra = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
    if missing or extra:
        raise CheckpointError(f"checkpoint parameters do not match the model: missing {missing[:5]}, extra {extra[:5]}")
    return params


def load_trainable(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    params = check_trainable_names(model, tensors)
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(tensors[name].to(p.device, p.dtype))
