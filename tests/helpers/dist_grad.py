"""Run under torchrun with 2 processes: the summed gradient of each rank's half of a fixed
rollout must equal the single-process gradient of the whole batch, for every aggregation;
so must the global gradient norm and the gradient clipped by it.

    dist_grad.py OUT.json [none|fsdp|fsdp_grad_op] [episodes]

`episodes`: the rollout is a batch of multi-turn episodes with tool results (tests/test_multiturn.py's
scripted environment), whose loss mask leaves the tool-result tokens out. With a sharding layout the model's copy is sharded with FSDP2 (grpokit.parallel.sharding) and its
gradients, sharded over the ranks, are gathered before comparing."""

import copy
import json
import sys

import torch

from grpokit.algo import AGGREGATIONS
from grpokit.config import Config
from grpokit.data.records import example_prompt_ids
from grpokit.parallel.dist import Dist, init_distributed, leave_process
from grpokit.rollout.generate import generate
from grpokit.parallel.sharding import Sharding
from grpokit.tasks.arithmetic import ArithmeticSpec, build_model, build_tokenizer
from grpokit.train.trainer import Trainer

REWARDS = {
    "mixed": [[1, 0, 0, 1], [0, 0, 0, 0], [1, 1, 0, 1], [0.5, 0, 1, 0]],
    "rank1_idle": [[1, 0, 0, 1], [0, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0]],  # rank 1 has nothing to train
}
MAX_NORM = 0.05  # below every gradient norm here: clipping changes the gradient


def _full(grad: torch.Tensor | None, param: torch.Tensor) -> torch.Tensor:
    if grad is None:
        return torch.zeros(param.shape)
    return (grad.full_tensor() if hasattr(grad, "full_tensor") else grad).detach().clone()


def grads_of(trainer: Trainer, rollout, rewards_PG):
    """(gradients before clipping, the global norm, gradients after clipping), all full tensors."""
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.accumulate_gradients(trainer.make_batch(rollout, rewards_PG))
    params = dict(trainer.model.named_parameters())
    raw = {n: _full(p.grad, p) for n, p in params.items()}
    norm = float(trainer.clip_gradients())
    return raw, norm, {n: _full(p.grad, p) for n, p in params.items()}


def max_diff(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def tiny_model_and_rollout():
    """(tokenizer, a random tiny arithmetic model, its rollout of 4 prompts x G=4, 5 new tokens)."""
    tok = build_tokenizer()
    model = build_model(ArithmeticSpec(hidden_size=32, layers=2, heads=2, intermediate_size=64), tok, seed=0)
    prompts = [example_prompt_ids(tok, {"prompt": p}) for p in ["1+2", "34+56", "7+80", "99+9"]]
    rollout = generate(model, prompts, group_size=4, max_new_tokens=5, eos_id=tok.eos_token_id,
                       pad_id=tok.pad_token_id, generator=torch.Generator().manual_seed(0))
    return tok, model, rollout


def tiny_model_and_episodes():
    """(tokenizer, a random tiny model over the tool tokenizer, 4 prompts x G=4 multi-turn episodes)."""
    import pathlib

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
    from tests.test_multiturn import ScriptedEnv, episodes, stop_prone_model

    from grpokit.tasks.arithmetic_tools import build_tool_tokenizer

    tok = build_tool_tokenizer()
    model = stop_prone_model(tok).train()
    rollout = episodes(model, tok, ScriptedEnv(calls=2))
    assert int((rollout.completion_mask_BT * (1 - rollout.loss_mask_BT)).sum()) > 0  # tool results in the batch
    return tok, model, rollout


def main(out_path: str, sharding: str = "none", kind: str = "single") -> None:
    d = init_distributed("cpu")
    tok, model, rollout = tiny_model_and_episodes() if kind == "episodes" else tiny_model_and_rollout()
    mine = rollout.select(torch.arange(d.rank * 8, d.rank * 8 + 8))
    layout = Sharding(sharding, d)
    split_model = model if sharding == "none" else layout.shard(copy.deepcopy(model))
    result = {}
    for name, rewards in REWARDS.items():
        rewards_PG = torch.tensor(rewards, dtype=torch.float32)
        for agg in sorted(AGGREGATIONS):
            cfg = Config()
            cfg.rollout.prompts_per_step, cfg.rollout.group_size = 4, 4
            cfg.rollout.max_new_tokens = rollout.completion_ids_BT.shape[1]
            cfg.algo.aggregation, cfg.train.micro_batch_size, cfg.train.max_grad_norm = agg, 3, MAX_NORM
            single, single_norm, single_clipped = grads_of(
                Trainer(cfg, model, tok, [{}], scorer=None, dist=Dist()), rollout, rewards_PG)
            split, split_norm, split_clipped = grads_of(
                Trainer(cfg, split_model, tok, [{}], scorer=None, dist=d, sharding=layout), mine, rewards_PG)
            result[f"{name}/{agg}"] = {
                "max_abs_diff": max_diff(single, split), "grad_norm": single_norm,
                "norm_diff": abs(single_norm - split_norm), "clipped_max_abs_diff": max_diff(single_clipped, split_clipped),
                "sharded_params": sum(hasattr(p, "full_tensor") for p in split_model.parameters()),
            }
    if d.is_main:
        with open(out_path, "w") as fh:
            json.dump({"world": d.world, "sharding": sharding, "kind": kind, "results": result}, fh)
    d.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
    leave_process(0)  # as the grpokit command does: no interpreter finalization after gloo
