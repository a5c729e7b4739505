"""Run under torchrun with 2 processes: the summed gradient of each rank's half of a fixed
rollout must equal the single-process gradient of the whole batch, for every aggregation."""

import json
import sys

import torch

from grpokit.algo import AGGREGATIONS
from grpokit.config import Config
from grpokit.data import example_prompt_ids
from grpokit.dist import Dist, init_distributed
from grpokit.rollout import generate
from grpokit.tasks.arithmetic import ArithmeticSpec, build_model, build_tokenizer
from grpokit.trainer import Trainer

REWARDS = {
    "mixed": [[1, 0, 0, 1], [0, 0, 0, 0], [1, 1, 0, 1], [0.5, 0, 1, 0]],
    "rank1_idle": [[1, 0, 0, 1], [0, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0]],  # rank 1 has nothing to train
}


def grads_of(trainer: Trainer, rollout, rewards_PG):
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.accumulate_gradients(trainer.make_batch(rollout, rewards_PG))
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
            for n, p in trainer.model.named_parameters()}


def main(out_path: str) -> None:
    d = init_distributed("cpu")
    tok = build_tokenizer()
    model = build_model(ArithmeticSpec(hidden_size=32, layers=2, heads=2, intermediate_size=64), tok, seed=0)
    prompts = [example_prompt_ids(tok, {"prompt": p}) for p in ["1+2", "34+56", "7+80", "99+9"]]
    rollout = generate(model, prompts, group_size=4, max_new_tokens=5, eos_id=tok.eos_token_id,
                       pad_id=tok.pad_token_id, generator=torch.Generator().manual_seed(0))
    mine = rollout.select(torch.arange(d.rank * 8, d.rank * 8 + 8))
    result = {}
    for name, rewards in REWARDS.items():
        rewards_PG = torch.tensor(rewards, dtype=torch.float32)
        for agg in sorted(AGGREGATIONS):
            cfg = Config()
            cfg.rollout.prompts_per_step, cfg.rollout.group_size, cfg.rollout.max_new_tokens = 4, 4, 5
            cfg.algo.aggregation, cfg.train.micro_batch_size = agg, 3
            single = grads_of(Trainer(cfg, model, tok, [{}], scorer=None, dist=Dist()), rollout, rewards_PG)
            split = grads_of(Trainer(cfg, model, tok, [{}], scorer=None, dist=d), mine, rewards_PG)
            diff = max(float((single[k] - split[k]).abs().max()) for k in single)
            norm = sum(float(g.norm()) for g in single.values())
            result[f"{name}/{agg}"] = {"max_abs_diff": diff, "grad_norm": norm}
    if d.is_main:
        with open(out_path, "w") as fh:
            json.dump({"world": d.world, "results": result}, fh)
    d.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
