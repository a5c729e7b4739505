"""Conformance over real chat-model families (issue 15): for every tokenizer folder in
../shared/tokenizers that loads, a tiny random-weight model of that family's architecture
(hidden 64, one layer, tied embeddings, the real vocabulary) with the real chat template goes
through rollout -> stop -> rewards -> masks -> two GRPO steps -> save -> reload -> `grpokit sample`.
The template-only families (Gemma) are checked for rendering, think detection and end of turn.

Expected values are read off the family's files by hand (../shared/tokenizers/README.md and each
generation_config.json), not computed by the code under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO

TOKENIZERS = REPO.parent / "shared" / "tokenizers"
VERIFY = json.loads((TOKENIZERS / "VERIFY_RESULTS.json").read_text()) if TOKENIZERS.is_dir() else {}
pytestmark = pytest.mark.skipif(not TOKENIZERS.is_dir(), reason="../shared/tokenizers is not there")

# folder: (architecture, end-of-turn token, every stop id, prompt opens <think>, chat template options)
FAMILIES = {
    "qwen3": ("qwen3", "<|im_end|>", {151645}, False, {"enable_thinking": False}),
    "qwen2.5-instruct": ("qwen2", "<|im_end|>", {151643, 151645}, False, {}),
    "deepseek-r1-distill-qwen": ("qwen2", "<｜end▁of▁sentence｜>", {151643}, True, {}),
    "llama-3.1-instruct": ("llama", "<|eot_id|>", {128001, 128008, 128009}, False, {}),
    "phi-3-mini-instruct": ("phi3", "<|end|>", {32000, 32007}, False, {}),
    "phi-4-mini-instruct": ("phi3", "<|end|>", {199999, 200020}, False, {}),
    "mistral-7b-instruct-v0.2": ("mistral", "</s>", {2}, False, {}),
}
QUESTION = {"question": "What is 3 + 5?", "answer": "8"}
ANSWER = "3 and 5 make 8. The answer is \\boxed{8}."
THOUGHT = "Okay, 3 apples and 5 apples make 8.\n</think>\n\nThe answer is \\boxed{8}."
CUT_OFF = "Okay, first 3 + 5 = 8 apples, then she gives away"


def tiny_model_folder(folder: Path, family: str, turn_end: str):
    """A random 1-layer model of the family's architecture over its real tokenizer, saved with the
    family's generation_config. Its input embeddings (tied to the output) share a large first
    coordinate, which makes every token equally likely except the end-of-turn token, raised to
    about 30% per step: rollouts then stop at it within a few tokens, as a chat model does."""
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    from grpokit.models.loading import load_tokenizer

    arch = FAMILIES[family][0]
    tok = load_tokenizer(str(TOKENIZERS / family))
    vocab = -(-len(tok) // 64) * 64
    config = AutoConfig.for_model(
        arch, vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=256, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    emb = model.get_input_embeddings().weight
    assert model.get_output_embeddings().weight.data_ptr() == emb.data_ptr()
    with torch.no_grad():  # logit(v) ~ 8 * E[v, 0] (RMSNorm scales the dominant coordinate to ~sqrt(64))
        emb[:, 0] = 4.0
        emb[tok.convert_tokens_to_ids(turn_end), 0] += (torch.tensor(0.43 * vocab).log() / 8).item()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    if (TOKENIZERS / family / "generation_config.json").is_file():
        GenerationConfig.from_pretrained(TOKENIZERS / family).save_pretrained(folder)
    return folder, tok


def loadable(family: str) -> bool:
    return VERIFY.get(family, {}).get("loaded", False)


def check_stops(rollout, stops: set[int], max_new: int) -> None:
    """Each row ends at its first stop id, which is kept and counted; a row without one is
    truncated at max_new tokens; the loss mask covers exactly the counted tokens."""
    ids, lengths = rollout.completion_ids_BT.tolist(), rollout.lengths_B.tolist()
    for row, n, ended, mask in zip(ids, lengths, rollout.ended_B.tolist(), rollout.completion_mask_BT.tolist()):
        assert sum(mask) == n and all(mask[:n])
        assert not set(row[: n - 1]) & stops
        assert ended == (row[n - 1] in stops) and (ended or n == max_new)
    assert any(rollout.ended_B.tolist())


def scored_hand_written(tok, example: dict, completion: str, turn_end_id: int, names: list[str]) -> dict:
    """A hand-written completion, tokenized and ended with the turn-end id as a model would write
    it, decoded the way the trainer decodes and scored against the record."""
    from grpokit.eval.evaluate import decode_completions
    from grpokit.rewards import RewardScorer
    from grpokit.rollout.generate import Rollout

    ids = tok(completion, add_special_tokens=False)["input_ids"] + [turn_end_id]
    rollout = Rollout(torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1, dtype=torch.long),
                      torch.tensor([ids]), torch.tensor([len(ids)]), torch.tensor([True]), 1)
    texts = decode_completions(tok, rollout)
    return RewardScorer(names, [1.0] * len(names)).score(texts, [example]).components


def run_config(folder: Path, data: Path, out: Path, template_kwargs: dict):
    from grpokit.config import Config

    cfg = Config()
    cfg.output_dir, cfg.model.name_or_path, cfg.model.device = str(out), str(folder), "cpu"
    cfg.data.source, cfg.data.eval_size, cfg.data.chat_template_kwargs = str(data), 1, template_kwargs
    cfg.rollout.prompts_per_step, cfg.rollout.group_size, cfg.rollout.max_new_tokens = 2, 4, 8
    cfg.reward.names, cfg.reward.weights = ["math", "think_format"], [1.0, 0.5]
    cfg.train.steps, cfg.train.lr, cfg.train.warmup_steps, cfg.train.eval_every = 2, 1e-3, 0, 0
    cfg.log.progress, cfg.log.tensorboard, cfg.log.plot = False, False, False
    cfg.doctor.preflight = False  # a random tiny model solves nothing (the pre-flight stops that): mechanics only
    return cfg


@pytest.mark.parametrize("family", [f for f in FAMILIES])
def test_family_rollout_stop_rewards_grpo_save_reload_sample(family, tmp_path, capsys):
    from grpokit.cli.main import main
    from grpokit.data.chat import end_of_turn_token, stop_token_ids
    from grpokit.data.records import example_prompt_ids
    from grpokit.rewards.answers import THINK_OPENED_KEY
    from grpokit.rollout.generate import generate
    from grpokit.train.run import run_training

    if not loadable(family):
        pytest.skip(f"{family}: its tokenizer does not load (VERIFY_RESULTS.json)")
    arch, turn_end, stops, opened, template_kwargs = FAMILIES[family]
    folder, tok = tiny_model_folder(tmp_path / "model", family, turn_end)
    # rendering: the ids the family's own files give (VERIFY_RESULTS.json) for "What is 2+3?"
    verify = VERIFY[family]
    assert example_prompt_ids(tok, {"prompt": "What is 2+3?"}) == verify["ids"]
    assert end_of_turn_token(tok) == turn_end
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder)
    assert set(stop_token_ids(tok, model)) == stops
    example = dict(QUESTION, prompt=QUESTION["question"])
    prompt = example_prompt_ids(tok, example, template_kwargs)
    assert example[THINK_OPENED_KEY] is opened
    rollout = generate(model, [prompt], group_size=8, max_new_tokens=8, eos_id=sorted(stops),
                       pad_id=tok.pad_token_id, generator=torch.Generator().manual_seed(0))
    check_stops(rollout, stops, 8)
    turn_end_id = tok.convert_tokens_to_ids(turn_end)
    if opened:  # DeepSeek-R1: the completion holds the rest of the thought and </think>
        assert scored_hand_written(tok, example, THOUGHT, turn_end_id, ["math", "think_format"]) == \
            {"math": [1.0], "think_format": [1.0]}
        assert scored_hand_written(tok, example, CUT_OFF, turn_end_id, ["math"]) == {"math": [-1.0]}
    else:
        assert scored_hand_written(tok, example, ANSWER, turn_end_id, ["math", "think_format"]) == \
            {"math": [1.0], "think_format": [0.0]}
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"question": f"What is {a} + {b}?", "answer": str(a + b)}) + "\n"
                            for a, b in [(3, 5), (2, 2), (4, 1), (6, 3)]))
    summary = run_training(run_config(folder, data, tmp_path / "run", template_kwargs), log=lambda *a: None)
    assert summary["steps"] == 2
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward/total/mean" in r]
    assert len(steps) == 2 and all(0.0 <= r["completion/truncated_share"] < 1.0 for r in steps)
    capsys.readouterr()
    code = main(["sample", "--model", str(tmp_path / "run" / "model"), "What is 3 + 5?", "--rollout.group_size", "2",
                 "--rollout.max_new_tokens", "8", "--rollout.temperature", "1.0"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert all(f"{i} " in err for i in stops)  # the stop ids it logs: the reloaded model's own
    assert out.startswith("[1] ") and "\n[2] " in out


GEMMA = {"gemma-2b-it": ("<end_of_turn>", {1, 107}), "gemma-3-it": ("<end_of_turn>", {1, 106})}


def gemma_tokenizer(family: str):
    """Gemma's real special tokens (at their ids) and chat template over a word-level vocabulary:
    its tokenizer.model is not in the folder, so the template is checked without it."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    folder = TOKENIZERS / family
    config = json.loads((folder / "tokenizer_config.json").read_text())
    template = config.get("chat_template") or json.loads((folder / "chat_template.json").read_text())["chat_template"]
    vocab = {t["content"]: int(i) for i, t in config.get("added_tokens_decoder", {}).items()}
    extra = config.get("additional_special_tokens", [])
    for name in extra:  # gemma-2b-it lists these without ids: the real ones are in its added tokens
        vocab.setdefault(name, max(vocab.values()) + 1)
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.add_special_tokens([t["content"] for t in config.get("added_tokens_decoder", {}).values() if t["special"]])
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<bos>",
        eos_token="<eos>", unk_token="<unk>", pad_token="<pad>", additional_special_tokens=extra or None,
        chat_template=template)


@pytest.mark.parametrize("family", sorted(GEMMA))
def test_gemma_template_renders_and_ends_turns_with_end_of_turn(family):
    from types import SimpleNamespace

    from grpokit.data.chat import end_of_turn_token, opens_think_block, stop_token_ids

    tok = gemma_tokenizer(family)
    rendered = tok.apply_chat_template([{"role": "user", "content": "What is 2+3?"}], add_generation_prompt=True,
                                       tokenize=False)
    assert rendered == VERIFY[f"{family} (template only)"]["rendered"]
    assert opens_think_block(rendered) is False
    turn_end, stops = GEMMA[family]
    assert end_of_turn_token(tok) == turn_end
    gen = json.loads((TOKENIZERS / family / "generation_config.json").read_text()) \
        if (TOKENIZERS / family / "generation_config.json").is_file() else {}
    model = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=gen.get("eos_token_id")))
    assert set(stop_token_ids(tok, model)) == stops


def test_textbook_qwen3_think_recipe_end_to_end_on_the_real_qwen3_tokenizer(tmp_path, capsys):
    """grpokit/recipes/textbook-qwen3-8b-qlora-think.yaml as written (QLoRA, think_math, GSM8K) but for
    the model (a tiny Qwen3 over the real Qwen3 tokenizer and template) and the sizes."""
    from grpokit.cli.main import main
    from grpokit.config import load_yaml
    from grpokit.data.records import example_prompt_ids
    from grpokit.rewards.answers import THINK_OPENED_KEY
    from grpokit.train.run import run_training
    from tests.conftest import DATA
    from tests.test_recipes import _swap_in_tiny_model

    if not (DATA / "gsm8k").is_dir():
        pytest.skip(f"GSM8K is not in {DATA}")
    pytest.importorskip("bitsandbytes")
    folder, tok = tiny_model_folder(tmp_path / "qwen3", "qwen3", "<|im_end|>")
    example = {"prompt": "What is 3 + 5?", "answer": "8"}
    example_prompt_ids(tok, example)
    assert example[THINK_OPENED_KEY] is False  # Qwen3 thinks by writing <think> itself
    written = "<think>\nOkay, 3 + 5 = 8.\n</think>\n\nThe answer is \\boxed{8}."
    tiers = scored_hand_written(tok, example, written, 151645, ["think_math"])["think_math"]
    plain = scored_hand_written(tok, example, "The answer is \\boxed{8}.", 151645, ["think_math"])["think_math"]
    assert (tiers, plain) == ([1.0], [0.5])
    cfg = _swap_in_tiny_model(load_yaml("textbook-qwen3-8b-qlora-think"), folder,
                              tmp_path / "run")
    assert cfg.reward.names == ["think_math"] and cfg.model.mode == "qlora"
    assert run_training(cfg, log=lambda *a: None)["steps"] == 2
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(-0.5 <= r["reward/total/mean"] <= 1.0 for r in rows if "reward/total/mean" in r)
    capsys.readouterr()
    assert main(["sample", "--model", str(tmp_path / "run" / "model"), "What is 3 + 5?", "--rollout.max_new_tokens", "6",
                 "--model.device", "cpu"]) == 0
    assert "151645 <|im_end|>" in capsys.readouterr().err
