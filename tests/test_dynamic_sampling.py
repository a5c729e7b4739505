"""Dynamic sampling (algo.dynamic_sampling, DAPO): only informative groups are trained on, the cap
on extra rounds holds, the prompt order learns from skipped prompts, rounds of different widths
are joined correctly, resume stays exact (test_checkpoint's check, with it on), and two
processes give the one-process gradient (helpers/dist_grad_dynamic.py)."""

import json
import zlib

import pytest
import torch

from grpokit.config import Config, validate
from grpokit.errors import ConfigError
from grpokit.data.order import CurriculumOrder
from grpokit.rewards.scorer import ScoreResult
from grpokit.rollout.generate import Rollout, concat_rollouts
from grpokit.train.dynamic_sampling import informative_groups
from grpokit.train.trainer import Trainer
from tests.test_checkpoint import _assert_identical, _final_state, _flags, _train
from tests.test_distributed import HELPERS, _torchrun

P, G = 4, 4


class RuleScorer:
    """Rewards by rule: 0 for every completion of an example marked constant (an all-equal
    group), else one bit of a CRC of the text (mixed except with chance 2/2^G)."""

    def score(self, texts, records):
        total = [0.0 if r["constant"] else float(zlib.crc32(f"{r['id']}:{t}:{i}".encode()) & 1)
                 for i, (t, r) in enumerate(zip(texts, records))]
        return ScoreResult(total=total, components={"rule": list(total)})


def _trainer(tiny_llama, constant, *, cap=3, order=None, rollouts=True):
    model, tok = tiny_llama
    cfg = Config()
    cfg.rollout.prompts_per_step, cfg.rollout.group_size, cfg.rollout.max_new_tokens = P, G, 4
    cfg.algo.dynamic_sampling, cfg.algo.dynamic_sampling_max_rounds = True, cap
    cfg.train.warmup_steps, cfg.log.rollouts = 0, rollouts
    examples = [{"prompt": f"{i}+{i}", "answer": str(2 * i), "id": i, "constant": constant(i)} for i in range(40)]
    return Trainer(cfg, model, tok, examples, RuleScorer(), prompt_order=order)


def _groups(record):
    return [record["rewards"][k:k + G] for k in range(0, len(record["rewards"]), G)]


def test_every_group_trained_on_is_informative_and_the_step_has_p_of_them(tiny_llama):
    trainer = _trainer(tiny_llama, constant=lambda i: i % 3 != 0, cap=8)  # 2 prompts in 3 give equal rewards
    seen = []
    make_batch = trainer.make_batch
    trainer.make_batch = lambda *a, **k: seen.append(make_batch(*a, **k)) or seen[-1]
    for _ in range(3):
        row = trainer.step()
        record = trainer.last_record
        assert len(record["indices"]) == P == row["rollout/groups_used"]
        assert all(i % 3 == 0 for i in record["indices"])  # no constant-reward prompt was trained on
        assert all(len(set(g)) > 1 for g in _groups(record))
        assert row["rollout/groups_generated"] == P * row["rollout/rounds"] and row["rollout/rounds"] >= 2
        assert not set(record["indices"]) & set(record["skipped_indices"])
        assert len(record["skipped_indices"]) == row["rollout/groups_generated"] - P
        batch = seen[-1]  # the loss is normalised by the P informative groups alone
        assert batch.num_seqs == P * G and batch.rollout.lengths_B.shape == (P * G,)
        assert batch.num_tokens == int(batch.rollout.lengths_B.sum())
        assert all(bool(batch.adv_B[k:k + G].any()) for k in range(0, P * G, G))
    assert row["rollout/groups_skipped_total"] == trainer.groups_skipped > 0
    assert trainer.state_dict()["groups_skipped"] == trainer.groups_skipped


@pytest.mark.parametrize("cap", [0, 2])
def test_the_cap_holds_and_a_step_with_no_informative_group_trains_on_nothing(tiny_llama, cap):
    order = CurriculumOrder(40, seed=0)
    trainer = _trainer(tiny_llama, constant=lambda i: True, cap=cap, order=order)
    row = trainer.step()
    assert row["rollout/rounds"] == 1 + cap and row["rollout/groups_used"] == 0
    assert row["update/seqs"] == 0 and row["reward/zero_std_share"] == 1.0
    assert len(trainer.last_record["indices"]) == P  # the first round's batch, every advantage 0
    assert sum(order.seen) == (1 + cap) * P * G  # the curriculum recorded every round's prompts


def test_when_the_cap_is_hit_the_step_trains_on_the_informative_groups_found(tiny_llama):
    trainer = _trainer(tiny_llama, constant=lambda i: i % 8 != 0, cap=1, rollouts=False)
    row = trainer.step()
    drawn = trainer.prompt_order.state_dict()["position"]
    assert row["rollout/rounds"] == 2 and drawn == 2 * P
    used = row["rollout/groups_used"]
    assert 0 < used < P and row["update/seqs"] == used * G
    assert all(i % 8 == 0 for i in trainer.last_record["indices"]) and len(trainer.last_record["indices"]) == used


def test_informative_groups_in_round_and_prompt_order_leaving_nan_out():
    nan = float("nan")
    r0 = torch.tensor([[1.0, 1.0], [0.0, 1.0], [nan, 1.0], [nan, nan]])
    r1 = torch.tensor([[0.5, 0.0], [2.0, 2.0], [1.0, nan], [3.0, 1.0]])
    assert informative_groups([r0, r1], 3) == [(0, 1), (1, 0), (1, 3)]
    assert informative_groups([r0, r1], 1) == [(0, 1)]
    assert informative_groups([r0], 5) == [(0, 1)]


def test_concat_rollouts_pads_prompts_left_and_completions_right():
    a = Rollout(torch.tensor([[7, 8]]), torch.tensor([[1, 1]]), torch.tensor([[5, 2, 0]]), torch.tensor([2]),
                torch.tensor([True]), 1, torch.tensor([[0.1, 0.2, 0.0]]), None)
    b = Rollout(torch.tensor([[0, 0, 9]]), torch.tensor([[0, 0, 1]]), torch.tensor([[6]]), torch.tensor([1]),
                torch.tensor([False]), 1, torch.tensor([[0.3]]), torch.tensor([[-1.0]]))
    c = concat_rollouts([a, b], pad_id=0)
    assert c.prompt_ids_BL.tolist() == [[0, 7, 8], [0, 0, 9]] and c.prompt_mask_BL.tolist() == [[0, 1, 1], [0, 0, 1]]
    assert c.completion_ids_BT.tolist() == [[5, 2, 0], [6, 0, 0]] and c.lengths_B.tolist() == [2, 1]
    assert c.ended_B.tolist() == [True, False] and c.logprobs_BT is None
    assert torch.allclose(c.entropy_BT, torch.tensor([[0.1, 0.2, 0.0], [0.3, 0.0, 0.0]]))
    assert c.completion_mask_BT.tolist() == [[True, True, False], [True, False, False]]
    with pytest.raises(ValueError, match="group sizes"):
        concat_rollouts([a, Rollout(**{**a.__dict__, "group_size": 2})], pad_id=0)


def test_max_rounds_below_zero_is_refused_naming_the_field():
    cfg = Config()
    cfg.algo.dynamic_sampling_max_rounds = -1
    with pytest.raises(ConfigError, match="algo.dynamic_sampling_max_rounds: must be an integer >= 0"):
        validate(cfg)


@pytest.mark.slow
def test_stop_and_resume_is_bit_identical_with_dynamic_sampling(arithmetic_model_dir, tmp_path):
    flags = ["--algo.dynamic-sampling", "--algo.dynamic-sampling-max-rounds", "2"]
    straight = _train(_flags(arithmetic_model_dir, tmp_path / "straight") + flags)
    assert straight.returncode == 0, straight.stderr[-3000:]
    first = _train(_flags(arithmetic_model_dir, tmp_path / "split", **{"train.stop-at-step": 5}) + flags)
    assert first.returncode == 0, first.stderr[-3000:]
    second = _train(_flags(arithmetic_model_dir, tmp_path / "split", **{"train.resume": "auto"}) + flags)
    assert second.returncode == 0 and "resumed from" in second.stdout, second.stderr[-3000:]
    want, got = _final_state(tmp_path / "straight"), _final_state(tmp_path / "split")
    for state in (want, got):  # wall-clock timings (time/extra_rounds among them) differ
        state["rows"] = [{k: v for k, v in r.items() if not k.startswith("time/")} for r in state["rows"]]
    _assert_identical(got, want)
    rounds = [r["rollout/rounds"] for r in want["rows"] if "rollout/rounds" in r]
    assert len(rounds) == 12 and max(rounds) > 1  # extra rounds happened, before and after the stop


def test_two_process_gradient_equals_single_process_gradient_with_dynamic_sampling(tmp_path):
    """Rank 1's prompts are all uninformative in one layout: it trains on no group at all."""
    out = tmp_path / "grads.json"
    for sharding in ("none", "fsdp"):
        proc = _torchrun([str(HELPERS / "dist_grad_dynamic.py"), str(out), sharding], timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        report = json.loads(out.read_text())
        assert report["world"] == 2 and len(report["results"]) == 2
        for name, r in report["results"].items():
            assert r["grad_norm"] > 1e-3 and r["max_abs_diff"] < 1e-6, (sharding, name, r)
            assert r["groups"] == r["want_groups"], (sharding, name, r)
