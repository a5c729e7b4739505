"""Chat-model conventions (issue 15): end-of-turn ids, thinking templates, reward options, and the
errors at the model/data boundary. Each case named in the issue is a test here."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from grpokit.data.chat import end_of_turn_token, opens_think_block, stop_token_ids
from grpokit.rewards import RewardScorer
from grpokit.rewards.answers import THINK_OPENED_KEY
from grpokit.rollout.generate import generate

CLOSED = "Okay, 3 apples and 5 apples make 8.\n</think>\n\nThe answer is \\boxed{8}."
CUT_OFF = "Okay, first 3 + 5 = 8 apples, then she gives away"


class ScriptedLM(torch.nn.Module):
    """Greedy output is `script[t]` at completion step t, whatever the prompt (a causal LM's
    interface as rollout.generate calls it, without share_prefill)."""

    def __init__(self, script: list[int], vocab: int = 16, eos_ids=None):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.script, self.vocab = script, vocab
        self.generation_config = SimpleNamespace(eos_token_id=eos_ids)

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache=None, **kwargs):
        step = 0 if cache is None else cache.step + 1
        logits = torch.full((input_ids.shape[0], input_ids.shape[1], self.vocab), -30.0)
        logits[:, -1, self.script[min(step, len(self.script) - 1)]] = 0.0
        return SimpleNamespace(logits=logits, cache=SimpleNamespace(step=step))


def scripted_rollout(eos_id, script=(10, 10, 2, 5)):
    return generate(ScriptedLM(list(script)), [[1, 3]], group_size=2, max_new_tokens=4, eos_id=eos_id, pad_id=0,
                    temperature=0.0, share_prefill=False)


def test_rollout_stops_at_any_generation_config_eos_id_and_keeps_it_in_the_mask():
    # the case: generation_config eos [2, 10]; transformers stops after [10], so must grpokit
    old = scripted_rollout(2)
    assert old.completion_ids_BT[0, :3].tolist() == [10, 10, 2]  # EOS alone: samples past the turn's end
    r = scripted_rollout([2, 10])
    assert r.lengths_B.tolist() == [1, 1] and r.ended_B.tolist() == [True, True]
    assert r.completion_ids_BT[:, 0].tolist() == [10, 10]
    assert r.completion_mask_BT[:, :1].tolist() == [[1], [1]]  # the stop token is in the loss


def test_min_new_tokens_forbids_every_stop_id():
    r = generate(ScriptedLM([10, 2, 10, 2]), [[1]], group_size=2, max_new_tokens=4, eos_id=[2, 10], pad_id=0,
                 temperature=1.0, min_new_tokens=2, share_prefill=False, generator=torch.Generator().manual_seed(0))
    assert r.lengths_B.min() >= 3  # neither 10 nor 2 could be drawn in the first two steps
    assert not set(r.completion_ids_BT[:, :2].flatten().tolist()) & {2, 10}


def test_stop_ids_join_eos_generation_config_template_turn_end_and_config():
    from grpokit.tasks.arithmetic import build_tokenizer

    tok = build_tokenizer()
    eos = tok.eos_token_id
    assert end_of_turn_token(tok) == tok.eos_token  # the demo's template ends a turn with EOS
    model = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=[eos, 10]))
    assert stop_token_ids(tok, model) == sorted({eos, 10})
    assert stop_token_ids(tok, model, extra=[7]) == sorted({eos, 7, 10})
    assert stop_token_ids(tok, SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=11))) == sorted({eos, 11})


def _digit_stops(model, tok):
    digits = [tok.convert_tokens_to_ids(c) for c in "0123456789"]
    model.generation_config.eos_token_id = [tok.eos_token_id] + digits
    return set(digits) | {tok.eos_token_id}


def test_training_and_evaluation_stop_at_generation_config_ids(arithmetic_model_dir, capsys):
    """The demo model's generation_config lists every digit as an end-of-turn id: each answer
    ends after its first digit, in the trainer's rollouts and in evaluation, and counts as ended."""
    from grpokit.eval.evaluate import evaluate_examples
    from tests.model_helpers import arithmetic_examples, grpo_config, load_prepared, two_grpo_steps

    cfg = grpo_config(arithmetic_model_dir, "full")
    cfg.rollout.max_new_tokens = 6
    model, tok = load_prepared(cfg)
    stops = _digit_stops(model, tok)
    trainer = two_grpo_steps(model, tok, cfg)
    assert set(trainer.stop_ids) == stops
    ids = trainer.last_record["completion_ids"]
    assert all(row[-1] in stops and not set(row[:-1]) & stops for row in ids)
    assert max(map(len, ids)) < 6 and all(r["completion/truncated_share"] == 0.0 for r in trainer.rows)
    s = evaluate_examples(model, tok, arithmetic_examples()[:8], "arithmetic", max_new_tokens=6).summary
    assert s["truncated_share"] == 0.0 and s["mean_completion_tokens"] < 3


# ----------------------------------------------------------------------------- thinking


def test_think_rewards_read_the_prompts_open_think_block_from_the_record():
    opened = {"answer": "8", THINK_OPENED_KEY: True}
    scorer = RewardScorer(["think_format", "math", "math_binary"], [1.0, 1.0, 1.0])
    result = scorer.score([CLOSED, CUT_OFF], [opened, opened])
    assert result.components["think_format"] == [1.0, 0.0]  # was 0.0 for the well-formed completion
    assert result.components["math"] == [1.0, -1.0]  # the cut-off thought has no answer (was +1)
    assert result.components["math_binary"] == [1.0, 0.0]
    plain = {"answer": "8"}  # no think block opened: the last number is the answer, as before
    assert RewardScorer(["math"], [1.0]).score([CUT_OFF], [plain]).total == [1.0]


def test_reward_kwargs_override_the_detected_think_state():
    opened = {"answer": "8", THINK_OPENED_KEY: True}
    scorer = RewardScorer(["think_format", "math"], [1.0, 1.0],
                          kwargs={"think_format": {"opened_in_prompt": False}, "math": {"opened_in_prompt": False}})
    result = scorer.score([CLOSED, CUT_OFF], [opened, opened])
    assert result.components["think_format"] == [0.0, 0.0] and result.components["math"] == [1.0, 1.0]


@pytest.mark.parametrize("rendered, opened", [
    ("<｜begin▁of▁sentence｜><｜User｜>What is 2+3?<｜Assistant｜><think>\n", True),
    ("<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n", False),
    ("<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n", False),
    ("<|user|>Explain <think> tags<|end|><|assistant|>", False),
])
def test_think_detection_on_rendered_generation_prompts(rendered, opened):
    assert opens_think_block(rendered) is opened


def test_prompt_ids_record_the_think_state_and_pass_template_options():
    from grpokit.data.records import example_prompt_ids
    from grpokit.tasks.arithmetic import build_tokenizer

    tok = build_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<think>", "</think>"]})
    tok.chat_template = ("{% for m in messages %}<|user|>{{ m['content'] }}{% endfor %}<|assistant|>"
                         "{% if enable_thinking is defined and not enable_thinking %}<think></think>"
                         "{% else %}<think>{% endif %}")
    thinking, plain = {"prompt": "1+2"}, {"prompt": "1+2"}
    example_prompt_ids(tok, thinking)
    example_prompt_ids(tok, plain, {"enable_thinking": False})
    assert thinking[THINK_OPENED_KEY] is True and plain[THINK_OPENED_KEY] is False


# ----------------------------------------------------------------------------- reward options


def test_reward_kwargs_from_the_config_are_checked_against_the_signature(tmp_path):
    from grpokit.config import load_yaml, validate
    from grpokit.errors import ConfigError
    from grpokit.rewards import RewardError
    from grpokit.train.run import build_scorer

    path = tmp_path / "c.yaml"
    path.write_text("reward: {names: [math], kwargs: {math: {wrong: -1.0}}}\n")
    cfg = validate(load_yaml(path))
    assert build_scorer(cfg).score(["Answer: 3"], [{"answer": "2"}]).total == [-1.0]
    cfg.reward.kwargs = {"math": {"corect": 1.0}}
    with pytest.raises(RewardError, match=r"reward.kwargs.math: .*corect.*its keyword arguments are: correct, wrong"):
        build_scorer(cfg)
    cfg.reward.kwargs = {"math": [1]}
    with pytest.raises(ConfigError, match="reward.kwargs: expected a mapping"):
        validate(cfg)


def test_overlong_reward_is_dapos_ramp_over_the_completion_length():
    from grpokit.rewards.overlong import completion_records

    examples = [{"prompt": "p", "answer": "1"}]
    rows = completion_records(examples, 4, [4, 6, 8, 10], [True, True, True, False], max_new_tokens=10)
    assert rows[3]["ended"] is False and rows[0]["prompt"] == "p" and "completion_tokens" not in examples[0]
    scorer = RewardScorer(["overlong"], [1.0], kwargs={"overlong": {"cache_len": 4, "penalty": 2.0}})
    assert scorer.score(["x"] * 4, rows).total == [0.0, 0.0, -1.0, -2.0]  # ramp starts at 10 - 4 = 6 tokens
    assert RewardScorer(["overlong"], [1.0]).score(["x"], [rows[2]]).total == [-0.0]  # cache 10 // 5 = 2: free to 8


def test_mask_truncated_leaves_cut_off_rows_out_of_the_loss(tiny_llama):
    from grpokit.config import Config
    from grpokit.rewards import RewardScorer
    from grpokit.rollout.generate import Rollout
    from grpokit.train.trainer import Trainer

    model, tok = tiny_llama
    cfg = Config()
    cfg.rollout.group_size, cfg.rollout.prompts_per_step = 2, 2
    cfg.algo.skip_zero_advantage = False
    rollout = Rollout(torch.ones(4, 2, dtype=torch.long), torch.ones(4, 2, dtype=torch.long),
                      torch.ones(4, 3, dtype=torch.long), torch.tensor([3, 1, 3, 2]),
                      torch.tensor([False, True, False, True]), 2)
    rewards_PG = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    trainer = Trainer(cfg, model, tok, [{"prompt": "1+1", "answer": "2"}], RewardScorer(["arithmetic"], [1.0]))
    full = trainer.make_batch(rollout, rewards_PG)
    assert full.rows_B.tolist() == [0, 1, 2, 3] and full.num_tokens == 9
    cfg.algo.mask_truncated = True
    masked = trainer.make_batch(rollout, rewards_PG)
    assert masked.rows_B.tolist() == [1, 3] and masked.num_tokens == 3 and masked.num_seqs == 2
    assert masked.adv_B.tolist() == full.adv_B.tolist()  # the group statistics keep every row
    assert masked.metrics["completion/truncated_share"] == 0.5


# ----------------------------------------------------------------------------- errors


@pytest.fixture()
def offline_hub(monkeypatch, tmp_path):
    """No network and an empty Hugging Face cache, as on a machine that cannot reach the hub."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.chdir(tmp_path)


def _cli(argv, capsys):
    from grpokit.cli.main import main

    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_train_with_a_hub_model_offline_is_one_clear_error(offline_hub, capsys):
    from tests.conftest import REPO

    code, err = _cli(["train", "--config", "textbook-qwen3-8b-qlora",
                      "--output-dir", "out"], capsys)
    assert code == 2
    assert "model.name_or_path: cannot find the model 'Qwen/Qwen3-8B'" in err
    assert "a local folder" in err and "Hugging Face cache" in err and "HF_HUB_OFFLINE" in err
    assert "--model.name-or-path /path/to/folder" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["eval", "sample"])
def test_eval_and_sample_with_a_missing_model_are_one_clear_error(offline_hub, capsys, command):
    extra = ["--data", "gsm8k"] if command == "eval" else ["2+2"]
    code, err = _cli([command, "--model", "Qwen/Qwen3-8B", *extra], capsys)
    assert code == 2 and "--model: cannot find the model 'Qwen/Qwen3-8B'" in err and "HF_HUB_OFFLINE" in err
    code, err = _cli([command, "--model", "./no/such/folder", *extra], capsys)
    assert code == 2 and "cannot find the model './no/such/folder'" in err and "(none there)" in err


def test_demo_model_on_english_text_is_a_config_error_naming_model_and_row(tmp_path, capsys, arithmetic_model_dir):
    data = tmp_path / "questions.jsonl"
    data.write_text("\n".join(json.dumps({"question": q, "answer": "4"}) for q in ["2+2", "What is two plus two?"]))
    code, err = _cli(["train", "--data.source", str(data), "--reward.names", "math",
                      "--output-dir", str(tmp_path / "run")], capsys)
    assert code == 2
    assert "model 'builtin:arithmetic' cannot read this data" in err and "row 2" in err
    assert "--model.name-or-path" in err and "What is two plus two?" in err
    assert not (tmp_path / "run" / "model").exists()


def test_eval_with_the_demo_model_on_gsm8k_is_a_clear_error(tmp_path, capsys, arithmetic_model_dir):
    code, err = _cli(["eval", "--model", "builtin:arithmetic", "--data", "gsm8k", "--eval.limit", "2",
                      "--output-dir", str(tmp_path / "e")], capsys)
    assert code == 2 and "model 'builtin:arithmetic' cannot read this data" in err and "row 1" in err
