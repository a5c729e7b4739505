"""Run under torchrun with 2 processes: with algo.dynamic_sampling, the summed gradient of the two
ranks' batches must equal the one-process gradient, for two sampling rounds of fixed rollouts
(of different widths) and fixed rewards.

    dist_grad_dynamic.py OUT.json [none|fsdp|fsdp_grad_op]

Layouts: 'split' selects two groups on each rank; 'rank1_idle' selects all four from rank 0's
prompts, so rank 1 trains on nothing and still joins every collective (with FSDP, its
zero-weighted passes run on a spare row)."""

import copy
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from grpokit.config import Config  # noqa: E402
from grpokit.data.records import example_prompt_ids  # noqa: E402
from grpokit.parallel.dist import Dist, init_distributed, leave_process  # noqa: E402
from grpokit.parallel.sharding import Sharding  # noqa: E402
from grpokit.rewards.scorer import ScoreResult  # noqa: E402
from grpokit.rollout.generate import generate  # noqa: E402
from grpokit.train.dynamic_sampling import dynamic_sampling_batch  # noqa: E402
from grpokit.train.trainer import SampledRound, Trainer  # noqa: E402
from tests.helpers.dist_grad import _full, max_diff, tiny_model_and_rollout  # noqa: E402

P, G = 4, 4
REWARDS = {  # [round][prompt][completion]
    "split": [[[1, 0, 0, 1], [0, 0, 0, 0], [1, 1, 0, 1], [0.5, 0, 1, 0]],
              [[0, 0, 0, 0], [1, 0, 1, 0], [1, 1, 1, 1], [0, 1, 1, 1]]],
    "rank1_idle": [[[1, 0, 0, 1], [0, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0]],
                   [[1, 0, 1, 1], [0, 0, 1, 0], [0, 0, 0, 0], [2, 2, 2, 2]]],
}


def rounds_of(tok, model, first, rewards, rank: int, world: int) -> list[SampledRound]:
    """Two rounds: the fixed rollout, then another of 3-token completions; this rank's share."""
    prompts = [example_prompt_ids(tok, {"prompt": p}) for p in ["5+5", "61+2", "8+13", "70+7"]]
    second = generate(model, prompts, group_size=G, max_new_tokens=3, eos_id=tok.eos_token_id,
                      pad_id=tok.pad_token_id, generator=torch.Generator().manual_seed(1))
    per_rank = P // world
    out = []
    for k, rollout in enumerate([first, second]):
        rows = torch.arange(rank * per_rank * G, (rank + 1) * per_rank * G)
        mine = rollout.select(rows)
        mine.group_size = G
        rewards_PG = torch.tensor(rewards[k], dtype=torch.float32)
        flat = rewards_PG.reshape(-1).tolist()
        local = list(range(rank * per_rank, (rank + 1) * per_rank))
        out.append(SampledRound(
            [10 * k + p for p in range(P)], [10 * k + p for p in local], [{"prompt": str(p)} for p in local], mine,
            [""] * len(rows), ScoreResult([flat[b] for b in rows.tolist()], {"r": [flat[b] for b in rows.tolist()]}),
            ScoreResult(flat, {"r": flat}), rewards_PG, 0.0, 0.0))
    return out


def grads_of(trainer: Trainer, rounds: list[SampledRound]):
    """(gradients, the global norm, informative groups used) of one dynamic-sampling step."""
    queue = list(rounds)
    trainer.sample_round = lambda round_=0: queue.pop(0)
    trainer.optimizer.zero_grad(set_to_none=True)
    batch = dynamic_sampling_batch(trainer)
    trainer.accumulate_gradients(batch)
    grads = {n: _full(p.grad, p) for n, p in trainer.model.named_parameters()}
    return grads, float(trainer.clip_gradients()), batch.metrics["rollout/groups_used"]


def main(out_path: str, sharding: str = "none") -> None:
    d = init_distributed("cpu")
    tok, model, rollout = tiny_model_and_rollout()
    layout = Sharding(sharding, d)
    split_model = model if sharding == "none" else layout.shard(copy.deepcopy(model))
    cfg = Config()
    cfg.rollout.prompts_per_step, cfg.rollout.group_size, cfg.rollout.max_new_tokens = P, G, 5
    cfg.algo.dynamic_sampling, cfg.train.micro_batch_size = True, 3
    result = {}
    for name, rewards in REWARDS.items():
        single, norm, used = grads_of(Trainer(cfg, model, tok, [{}], scorer=None, dist=Dist()),
                                      rounds_of(tok, model, rollout, rewards, 0, 1))
        split, split_norm, split_used = grads_of(
            Trainer(cfg, split_model, tok, [{}], scorer=None, dist=d, sharding=layout),
            rounds_of(tok, model, rollout, rewards, d.rank, d.world))
        result[name] = {"max_abs_diff": max_diff(single, split), "grad_norm": norm,
                        "norm_diff": abs(norm - split_norm), "groups": split_used, "want_groups": used}
    if d.is_main:
        with open(out_path, "w") as fh:
            json.dump({"world": d.world, "sharding": sharding, "results": result}, fh)
    d.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
    leave_process(0)
