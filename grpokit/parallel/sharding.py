"""Sharded full fine-tuning on torch's FSDP2 (`train.sharding`: fsdp | fsdp_grad_op).

Every decoder layer is one FSDP unit and the root module another (embeddings, final norm, LM
head: tied weights live there); each process keeps 1/world of every weight, gradient and
AdamW moment. grpokit's data-parallel conventions carry over unchanged:

* Gradients are SUMMED over ranks (FSDP averages by default): losses are already normalised by
  the global batch's counts, so the sum is the single-process gradient, as with replicas.
* Collectives must line up. Every rank runs as many forward/backward passes as the busiest one
  (`passes_to_match`; the extra ones are zero-weighted). Forwards whose number differs between
  ranks (generation stops when a rank's rows have all ended, evaluation runs on rank 0 alone,
  fixed log-probs cover a rank's own rows) run inside `Sharding.gathered(model)`: one all-gather of the
  whole model on every rank, local forwards with no collective, then the shards are restored.
* Checkpoints and the saved model hold full tensors, gathered to rank 0 (`full_state`), in the
  same files as unsharded runs; `load_full_state` puts them back into the shards.

The run's layout is a `Sharding` object (shard_for_training returns it). With one process
nothing is sharded (a plain replica trains, and a line says so). Every function here is a plain
pass-through for a model that is not sharded, so callers need no branches of their own.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch

from grpokit.models.state import check_trainable_names, load_trainable, trainable_tensors
from grpokit.parallel.dist import Dist

# train.sharding -> whether the decoder layers free their gathered weights after forward
RESHARD_AFTER_FORWARD = {"fsdp": True, "fsdp_grad_op": False}


def is_sharded(model) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def _units(model) -> list:
    """The model's FSDP units, root first, in the same order on every rank."""
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


def decoder_layers(model) -> list[torch.nn.Module]:
    """The repeated blocks, found by transformers' `_no_split_modules` class names."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(f"train.sharding: cannot find the decoder layers of {type(model).__name__} "
                         "(its _no_split_modules names none)")
    return layers


@dataclass
class Sharding:
    """How a run's weights lie over its processes: `layout` is the train.sharding in effect
    ('none': every process holds a full replica), `dist` the processes. It shards models
    (`shard`) and holds them gathered (`gathered`); it keeps which models are gathered now, so a
    nested `gathered` of the same model is a pass-through. Nothing is stored on the model."""

    layout: str = "none"
    dist: Dist = field(default_factory=Dist)
    _held: set[int] = field(default_factory=set, repr=False)  # id() of the models gathered now

    def shard(self, model):
        """fully_shard each decoder layer, then the root; gradients summed, not averaged."""
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        if self.layout not in RESHARD_AFTER_FORWARD:
            raise ValueError(f"train.sharding: cannot shard with layout {self.layout!r}")
        mesh = init_device_mesh(self.dist.device.type, (self.dist.world,))
        for layer in decoder_layers(model):
            fully_shard(layer, mesh=mesh, reshard_after_forward=RESHARD_AFTER_FORWARD[self.layout])
        # The root's weights (embeddings, LM head) are the first used in backward: kept gathered.
        fully_shard(model, mesh=mesh, reshard_after_forward=False)
        for unit in _units(model):
            unit.set_gradient_divide_factor(1.0)
            unit.set_force_sum_reduction_for_comms(True)  # plain SUM (gloo has no PREMUL_SUM / AVG)
        return model

    @contextlib.contextmanager
    def gathered(self, model):
        """Hold the whole model gathered on every rank: forwards inside run no collective, so ranks
        may run different numbers of them. Entered by every rank (the gather is a collective)."""
        if model is None or not is_sharded(model) or id(model) in self._held:
            yield
            return
        units = _units(model)
        for unit in units:
            unit.unshard()
            unit.set_reshard_after_forward(False, recurse=False)
        self._held.add(id(model))
        try:
            yield
        finally:
            self._held.discard(id(model))
            for unit in units:  # the root stays gathered after forward (see shard)
                unit.set_reshard_after_forward(unit is not model and RESHARD_AFTER_FORWARD[self.layout],
                                               recurse=False)
                unit.reshard()


def shard_for_training(model, reference_copy, layout: str, dist: Dist, log=print) -> Sharding:
    """Shard the policy (and the KL's frozen reference copy, when there is one) in place; the
    Sharding in effect ('none' with one process, and a line says so)."""
    if layout == "none":
        return Sharding("none", dist)
    if not dist.active:
        log(f"train.sharding {layout}: one process, nothing to shard; training a full replica")
        return Sharding("none", dist)
    sharding = Sharding(layout, dist)
    sharding.shard(model)
    if reference_copy is not None:
        sharding.shard(reference_copy)
    return sharding


def passes_to_match(model, dist: Dist, mine: int) -> int:
    """How many extra forward/backward passes this rank runs so that every rank runs as many as
    the busiest (each pass all-gathers and reduce-scatters); 0 when not sharded."""
    return dist.max_int(mine) - mine if is_sharded(model) else 0


def full_norm(norm: torch.Tensor) -> torch.Tensor:
    """clip_grad_norm_'s result as a plain tensor (a DTensor when the gradients are sharded)."""
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm


# ------------------------------------------------------------------ full state dicts


def _options(**kwargs):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kwargs)


def _param_index(model, optimizer) -> dict[str, int]:
    """Every name of every optimised parameter (tied ones have several) -> its index in
    optimizer.state_dict(), which is the checkpoint's layout."""
    index = {id(p): i for i, p in enumerate(p for g in optimizer.param_groups for p in g["params"])}
    return {n: index[id(p)] for n, p in model.named_parameters(remove_duplicate=False) if id(p) in index}


def _param_names(model, optimizer) -> list[str]:
    names = {id(p): n for n, p in model.named_parameters()}
    return [names[id(p)] for g in optimizer.param_groups for p in g["params"]]


def full_model_state(model) -> dict[str, torch.Tensor] | None:
    """The sharded model's full state dict on CPU at rank 0 (None on other ranks, and for a model
    that is not sharded: it saves itself). Every rank calls it."""
    if not is_sharded(model):
        return None
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_options(cpu_offload=True)) or None


def full_state(model, optimizer, dist: Dist) -> tuple[dict[str, torch.Tensor], dict] | None:
    """(trainable tensors by name, optimizer.state_dict()-like dict indexed by position) on CPU,
    at rank 0; None elsewhere. Every rank calls it: gathering shards is a collective."""
    if not is_sharded(model):
        return (trainable_tensors(model), optimizer.state_dict()) if dist.is_main else None
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    model_sd = full_model_state(model)
    optim_sd = get_optimizer_state_dict(model, optimizer, options=_options(cpu_offload=True))
    if not dist.is_main:
        return None
    index = _param_index(model, optimizer)
    tensors = {n: model_sd[n] for n, p in model.named_parameters() if p.requires_grad}
    state = {index[n]: s for n, s in optim_sd["state"].items()}
    groups = [{**g, "params": sorted(index[n] for n in g["params"])} for g in optim_sd["param_groups"]]
    return tensors, {"state": state, "param_groups": groups}


def reads_weights(model, dist: Dist) -> bool:
    """Whether this rank reads a checkpoint's model and optimiser tensors: with shards only rank
    0 does (load_full_state sends every rank its part), so host memory holds one full copy."""
    return dist.is_main or not is_sharded(model)


def load_full_state(model, optimizer, tensors: dict[str, torch.Tensor], optim_sd: dict, dist: Dist) -> None:
    """Put full tensors (as full_state returns them) back into the model and the optimiser.
    Sharded: every rank calls it, and only rank 0's tensors are used (broadcast piece by piece)."""
    if not is_sharded(model):
        load_trainable(model, tensors)
        optimizer.load_state_dict(optim_sd)
        return
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    by_name: dict = {}
    if dist.is_main:
        check_trainable_names(model, tensors)
        names = _param_names(model, optimizer)
        groups = [{**g, "params": [names[int(i)] for i in g["params"]]} for g in optim_sd["param_groups"]]
        by_name = {"state": {names[int(i)]: s for i, s in optim_sd["state"].items()}, "param_groups": groups}
    else:
        tensors = {}
    set_model_state_dict(model, tensors, options=_options(strict=False, broadcast_from_rank0=True))
    set_optimizer_state_dict(model, optimizer, by_name, options=_options(broadcast_from_rank0=True))
