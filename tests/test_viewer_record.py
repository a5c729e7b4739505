"""The rollouts log's record: the log-probs kept while sampling equal the policy's log-probs of
the same tokens (what the loss uses as the old policy), and every field lines up per row."""

from __future__ import annotations

import json

import pytest
import torch

from grpokit.algo.advantages import compute_advantages_PG
from grpokit.data.records import example_prompt_ids
from grpokit.eval.evaluate import decode_completions
from grpokit.policy.forward import policy_logprobs_BT
from grpokit.rewards.scorer import ScoreResult
from grpokit.rollout.generate import generate
from grpokit.train.logs import rollout_record


def test_logged_logprobs_are_the_sampling_policys_and_fields_line_up(tiny_llama):
    model, tok = tiny_llama
    examples = [{"prompt": p, "answer": a} for p, a in [("1+2", "3"), ("34+56", "90"), ("7+80", "87")]]
    rollout = generate(model, [example_prompt_ids(tok, ex) for ex in examples], group_size=3, max_new_tokens=6,
                       eos_id=tok.eos_token_id, pad_id=tok.pad_token_id, temperature=0.7,
                       generator=torch.Generator().manual_seed(0), logprobs=True)
    logp_BT = policy_logprobs_BT(model, rollout, temperature=0.7)
    mask_BT = rollout.completion_mask_BT.bool()
    assert torch.allclose(rollout.logprobs_BT[mask_BT], logp_BT[mask_BT], atol=1e-5)

    texts = decode_completions(tok, rollout)
    totals = [1.0, 0.0, None, 0.5, 0.5, 0.5, 0.0, 1.0, 1.0]
    scored = ScoreResult(total=totals, components={"acc": totals, "fmt": [0.1] * 9})
    rewards_PG = torch.tensor([float("nan") if x is None else x for x in totals]).view(3, 3)
    adv_B = compute_advantages_PG(rewards_PG, "group_zscore", eps=1e-4).view(-1)
    rec = json.loads(json.dumps(rollout_record(examples, [4, 8, 15], rollout, texts, scored, adv_B)))
    lengths = rollout.lengths_B.tolist()
    assert rec["indices"] == [4, 8, 15] and rec["prompts"] == ["1+2", "34+56", "7+80"] and rec["answers"] == ["3", "90", "87"]
    assert rec["group_size"] == 3 and rec["lengths"] == lengths and rec["texts"] == texts
    assert rec["ended"] == rollout.ended_B.tolist() and rec["rewards"] == totals
    assert rec["components"] == {"acc": totals, "fmt": [0.1] * 9}
    assert rec["advantages"] == pytest.approx(adv_B.tolist(), abs=1e-6)
    for b, n in enumerate(lengths):
        assert rec["completion_ids"][b] == rollout.completion_ids_BT[b, :n].tolist()
        assert rec["logprobs"][b] == pytest.approx(logp_BT[b, :n].tolist(), abs=1e-4)
        assert rec["entropies"][b] == pytest.approx(rollout.entropy_BT[b, :n].tolist(), abs=1e-3)
