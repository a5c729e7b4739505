"""The GRPO benchmark's own pieces: one step of its grpokit and textbook paths on a tiny model,
and its FLOP count against a hand computation. Not a timing test."""

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import flops  # noqa: E402

RECORD_KEYS = {"step_s", "cpu_s", "gen_s", "reward_s", "update_s", "completions", "gen_tokens", "rows_updated",
               "zero_std_groups", "gen_flops", "update_flops"}


def test_grpokit_path_runs_a_step_at_grpokits_defaults():
    from benchmarks.grpokit_runner import GrpokitSession, make_config
    from grpokit.config import Config

    cfg, default = make_config("smoke", {}), Config()
    for section in ("algo", "train", "rollout"):  # only the workload's shape, not a speed switch, differs
        changed = {k for k, v in vars(getattr(cfg, section)).items() if getattr(getattr(default, section), k) != v}
        assert changed <= {"prompts_per_step", "group_size", "max_new_tokens", "min_new_tokens", "temperature",
                           "top_p", "lr", "warmup_steps", "min_lr_ratio", "micro_batch_size", "steps"}, changed
    session = GrpokitSession("smoke")
    rec = session.step()
    assert RECORD_KEYS <= set(rec) and rec["completions"] == 4 and 4 <= rec["gen_tokens"] <= 16
    assert rec["gen_flops"] > 0 and rec["step_s"] >= rec["gen_s"] > 0


@pytest.mark.parametrize("variant", ["full_logits", "no_trim", "multinomial", "no_lean_decode", "no_shared_prefill",
                                     "no_fused_logprobs"])
def test_grpokit_variants_that_patch_grpokit_run(variant, monkeypatch):
    import grpokit.policy.forward
    import grpokit.rollout.generate
    import grpokit.train.trainer
    from benchmarks.grpokit_runner import GrpokitSession

    # the patches are meant for a benchmark worker's own process: undo them after this test,
    # or later tests in this pytest worker would run the unoptimised code
    for module, name in ((grpokit.policy.forward, "completion_logits_BTV"), (grpokit.train.trainer, "generate"),
                         (grpokit.train.trainer, "policy_logprobs_BT"), (grpokit.rollout.generate, "sample_next_B")):
        monkeypatch.setattr(module, name, getattr(module, name))
    monkeypatch.setattr(grpokit.rollout.generate.Rollout, "select", grpokit.rollout.generate.Rollout.select)
    assert GrpokitSession("smoke", variant).step()["completions"] == 4


def test_seek_makes_the_next_step_sample_the_prompts_of_that_step():
    from benchmarks.grpokit_runner import GrpokitSession
    from benchmarks.textbook_loop import TextbookLoop

    session = GrpokitSession("smoke")  # 2 prompts per step, in file order
    session.step()
    session.seek(5)
    session.step()
    assert session.trainer.last_record["indices"] == [10, 11]
    loop = TextbookLoop("smoke")
    loop.seek(5)
    loop.step()
    assert loop.position == 12


def test_textbook_path_runs_a_step_and_trains():
    from benchmarks.textbook_loop import TextbookLoop

    loop = TextbookLoop("smoke")
    before = [p.detach().clone() for p in loop.model.parameters()]
    recs = [loop.step() for _ in range(3)]
    assert all(RECORD_KEYS <= set(r) and r["completions"] == 4 for r in recs)
    if any(r["rows_updated"] for r in recs):  # a group with mixed rewards: the update reached the weights
        assert any(not torch.equal(a, b) for a, b in zip(before, loop.model.parameters()))


def test_flops_match_a_hand_count():
    # hidden 4, one layer, 2 heads x 2 dims for q (q_dim 4), one kv head (kv_dim 2), MLP 8, vocab 10
    shape = flops.ModelShape(hidden=4, layers=1, q_dim=4, kv_dim=2, intermediate=8, vocab=10)
    # q,k,v: 2*4*(4+2+2) = 64; o: 2*4*4 = 32; gate/up/down: 3*2*4*8 = 192
    assert shape.body_per_token() == 288
    # one prompt of 3 tokens, G = 2, completions of 2 and 1 tokens, only row 0 has an advantage
    got = flops.step_flops(shape, [3], [2, 1], 2, [True, False])
    attn = 4 * 4  # per key, per layer: 2*q_dim for the scores + 2*q_dim for the weighted sum
    head = 2 * 4 * 10
    prefill = 3 * 288 + attn * (1 + 2 + 3) + head  # causal: the prompt's tokens see 1, 2, 3 keys
    decode = 288 + attn * 4 + head  # row 0 feeds its first token back (4 keys); row 1 feeds nothing
    assert got["gen"] == prefill + decode
    update_fwd = (3 * 288 + attn * 6) + (288 + attn * 4 + 2 * head)  # prompt once, 1 fed token, 2 heads
    assert got["update"] == 3 * update_fwd


def test_flops_per_token_equal_twice_the_models_matmul_weights():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg)
    linear = sum(m.weight.numel() for m in model.model.layers.modules() if isinstance(m, torch.nn.Linear))
    shape = flops.ModelShape.from_config(cfg)
    assert shape.body_per_token() == 2 * linear
    assert shape.head(1) == 2 * model.lm_head.weight.numel()
