"""The trainer's metrics: each objective's own clipped share (at mu > 1, where ratios leave 1),
and every metric and rollout line over the global batch (merge_scores; the 2-process run is in
test_distributed.py)."""

import math

import pytest
import torch

from grpokit.config import Config
from grpokit.rewards.scorer import ScoreResult
from grpokit.train.trainer import Trainer, merge_scores
from tests.helpers.dist_grad import tiny_model_and_rollout

REWARDS_PG = [[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
EPS = 0.05


def _update_with_spy(objective: str):
    """One update with mu = 2 on a fixed rollout; the log-probs the trainer computed, in order."""
    tok, model, rollout = tiny_model_and_rollout()  # the rollout dist_grad.py splits over ranks
    cfg = Config()
    cfg.rollout.prompts_per_step, cfg.rollout.group_size, cfg.rollout.max_new_tokens = 4, 4, 5
    cfg.algo.objective, cfg.algo.mu, cfg.algo.eps_low, cfg.algo.eps_high = objective, 2, EPS, EPS
    cfg.train.lr, cfg.train.warmup_steps, cfg.train.micro_batch_size = 0.05, 0, 16  # one micro-batch
    trainer = Trainer(cfg, model, tok, [{}], scorer=None)
    seen, plain = [], trainer.policy_logprobs

    def spy(part):
        out = plain(part)
        seen.append(out.detach().clone())
        return out

    trainer.policy_logprobs = spy
    batch = trainer.make_batch(rollout, torch.tensor(REWARDS_PG))
    stats = trainer.update(batch)
    assert len(seen) == 3  # old (pi_old), pass 1, pass 2
    return stats, seen[0], seen[2], batch.adv_B, rollout.completion_mask_BT


@pytest.mark.parametrize("objective", ["gspo", "cispo"])
def test_each_objective_reports_its_own_clipped_share_at_mu_2(objective):
    stats, old, new, adv, mask = _update_with_spy(objective)
    ratio = torch.exp(new - old)
    if objective == "gspo":  # one ratio per sequence: the geometric mean of its token ratios
        s = torch.exp(((new - old) * mask).sum(-1) / mask.sum(-1).clamp(min=1))
        clipped_B = ((s > 1 + EPS) & (adv > 0)) | ((s < 1 - EPS) & (adv < 0))
        want = float((clipped_B[:, None] * mask).sum() / mask.sum())
    else:  # the importance weight truncated above only
        want = float(((ratio > 1 + EPS) * mask).sum() / mask.sum())
    ppo_band = float((((ratio < 1 - EPS) | (ratio > 1 + EPS)) * mask).sum() / mask.sum())
    assert abs(ppo_band - want) > 0.05  # the old metric (PPO's token band) would be wrong here
    assert stats["update/clipped_share"] == pytest.approx(want, abs=1e-6)


def test_merge_scores_describes_every_rank_s_completions():
    a = ScoreResult(total=[1.0, None], components={"x": [1.0, None], "y": [0.0, 0.5]}, failures={"x": 1, "y": 0})
    b = ScoreResult(total=[0.0, 0.0], components={"x": [0.0, 0.0], "y": [0.0, 0.0]}, errors=["boom"],
                    failures={"x": 0, "y": 0})
    merged = merge_scores([a, b])
    assert merged.total == [1.0, None, 0.0, 0.0] and merged.errors == ["boom"]
    m = merged.metrics()
    assert m["reward/x/mean"] == pytest.approx(1 / 3) and m["reward/x/none_share"] == 0.25
    assert m["reward/x/fail_share"] == 0.25 and m["reward/y/mean"] == pytest.approx(0.125)
    assert m["reward/total/mean"] == pytest.approx(1 / 3) and m["reward/fail_share"] == pytest.approx(1 / 8)
    assert math.isclose(merged.metrics()["reward/total/none_share"], 0.25)
