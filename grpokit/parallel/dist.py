"""Rank and world helpers over accelerate / torch.distributed.

Launched by `accelerate launch` or `torchrun`, every process runs the same `grpokit train`;
`init_distributed` joins the process group through accelerate's PartialState (gloo on CPU,
NCCL on CUDA). With one process every helper is a no-op, so the single-process path is the
same code.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as tdist


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def all_reduce_sum_(self, t: torch.Tensor) -> torch.Tensor:
        if self.active:
            tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
        return t

    def sum_floats(self, *values: float) -> list[float]:
        """Sum a few Python numbers over ranks (one collective)."""
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        return self.all_reduce_sum_(t).tolist()

    def max_int(self, value: int) -> int:
        """The largest of one integer over ranks."""
        if not self.active:
            return value
        t = torch.tensor([value], dtype=torch.int64, device=self._comm_device())
        tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
        return int(t)

    def gather_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate each rank's equally shaped tensor along dim 0, in rank order."""
        if not self.active:
            return x
        home, x = x.device, x.contiguous().to(self._comm_device())
        parts = [torch.empty_like(x) for _ in range(self.world)]
        tdist.all_gather(parts, x)
        return torch.cat(parts, dim=0).to(home)

    def gather_objects(self, obj) -> list:
        if not self.active:
            return [obj]
        out = [None] * self.world
        tdist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj):
        if not self.active:
            return obj
        box = [obj]
        tdist.broadcast_object_list(box, src=0)
        return box[0]

    def all_reduce_grads_(self, params: list[torch.nn.Parameter]) -> None:
        """Sum gradients over ranks. A rank with no sequences to train on contributes zeros."""
        if not self.active:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            tdist.all_reduce(p.grad, op=tdist.ReduceOp.SUM)

    def barrier(self) -> None:
        if self.active:
            tdist.barrier()

    def _comm_device(self):
        return self.device if (self.device is not None and self.device.type == "cuda") else torch.device("cpu")

    def shutdown(self, *, clean: bool = True) -> None:
        """Leave the process group. On a clean exit every rank first meets at a barrier: a rank
        tearing gloo down while another still talks to it can abort the process."""
        if self.active and tdist.is_initialized():
            if clean:
                tdist.barrier()
            tdist.destroy_process_group()


_JOINED = False  # whether this process has joined a process group


def leave_process(code: int) -> int:
    """End a process that joined a process group with `code`, without interpreter finalization.

    Call after shutdown(), with every file closed. A DeviceMesh (FSDP) keeps the gloo process
    group alive past destroy_process_group, and then one of gloo's worker threads can free a
    finished collective's Python tensor while the interpreter is finalizing: the process aborts
    ("terminate called without an active exception") after its work is done. os._exit skips
    finalization. A process that never joined a group returns `code` as usual."""
    if not _JOINED:
        return code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def launched_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: str = "auto", timeout_s: float = 600.0) -> Dist:
    """Join the process group when launched with several processes; otherwise a 1-process Dist."""
    if launched_world_size() <= 1:
        return Dist()
    # torch._dynamo, imported after the process group exists (transformers does so), keeps a
    # reference to it, so destroy_process_group cannot join gloo's worker threads; one of them
    # then frees a finished collective's Python tensor during interpreter shutdown and the
    # process aborts ("terminate called without an active exception"). Importing it first
    # keeps the group destroyable.
    import torch._dynamo  # noqa: F401
    from accelerate import PartialState

    cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    global _JOINED
    state = PartialState(cpu=cpu, timeout=timedelta(seconds=timeout_s))
    _JOINED = True
    return Dist(rank=state.process_index, world=state.num_processes, device=state.device)
