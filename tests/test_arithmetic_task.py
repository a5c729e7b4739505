"""The built-in task: tokenizer, warm-started model, reward, and the save -> reload round trip."""

from grpokit.eval.evaluate import greedy_accuracy
from grpokit.tasks.arithmetic import (
    ArithmeticSpec,
    arithmetic_reward,
    build_tokenizer,
    split_problems,
)


def test_reward_checks_the_exact_integer():
    ex = {"prompt": "40+2", "answer": "42"}
    assert arithmetic_reward("42", ex) == 1.0
    assert arithmetic_reward(" 42 ", ex) == 1.0
    assert arithmetic_reward("43", ex) == 0.0
    assert arithmetic_reward("42+1", ex) == 0.0
    assert arithmetic_reward("", ex) == 0.0


def test_splits_are_disjoint_and_answers_right():
    s = split_problems(ArithmeticSpec())
    prompts = [{p["prompt"] for p in s[k]} for k in ("eval", "dev", "train")]
    assert len(prompts[0]) == 200 and not (prompts[0] & prompts[2]) and not (prompts[1] & prompts[2])
    for p in s["eval"][:50]:
        a, b = p["prompt"].split("+")
        assert int(p["answer"]) == int(a) + int(b)


def test_tokenizer_is_character_level_with_one_bos():
    tok = build_tokenizer()
    ids = tok.apply_chat_template([{"role": "user", "content": "12+3"}], add_generation_prompt=True, tokenize=True)
    ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
    assert tok.decode(ids, skip_special_tokens=True) == "12+3"
    assert len(ids) == 1 + 1 + 4 + 1  # <s> <|user|> 1 2 + 3 <|assistant|>


def test_cached_model_reloads_with_auto_classes_and_keeps_its_accuracy(arithmetic_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(arithmetic_model_dir)
    tok = AutoTokenizer.from_pretrained(arithmetic_model_dir)
    assert type(model).__name__ == "LlamaForCausalLM"
    evals = split_problems(ArithmeticSpec())["eval"]
    acc = greedy_accuracy(model, tok, evals, arithmetic_reward, max_new_tokens=6)
    assert 0.2 <= acc <= 0.5  # warm start stops with groups still mixed
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    model2 = AutoModelForCausalLM.from_pretrained(tmp_path)
    tok2 = AutoTokenizer.from_pretrained(tmp_path)
    assert tok2("12+34")["input_ids"] == tok("12+34")["input_ids"]
    assert tok2.chat_template == tok.chat_template
    assert greedy_accuracy(model2, tok2, evals, arithmetic_reward, max_new_tokens=6) == acc
