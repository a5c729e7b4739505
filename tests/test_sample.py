"""`grpokit sample` on the demo's trained output, on an adapter folder, and its pieces."""

from __future__ import annotations

import io
import sys

import pytest

from grpokit.cli.main import main
from grpokit.cli.sample import parse, prompt_ids, shown_text


def _demo_output(model_dir, tmp_path) -> str:
    """OUTPUT/model of a short demo run (the built-in task, two steps), as run_training saves it."""
    from grpokit.config import Config
    from grpokit.train.run import run_training

    cfg = Config(output_dir=str(tmp_path / "run"))
    cfg.model.name_or_path = str(model_dir)
    cfg.train.steps, cfg.train.eval_every, cfg.data.eval_size = 2, 0, 8
    cfg.log.progress, cfg.log.plot, cfg.log.tensorboard = False, False, False
    run_training(cfg, log=lambda *a: None)
    return cfg.output_dir + "/model"


def _greedy(model_dir: str, prompts: list[str]) -> list[str]:
    from grpokit.eval.evaluate import generate_for
    from grpokit.models.loading import load_trained

    model, tok = load_trained(model_dir, device="cpu", log=lambda *a: None)
    return generate_for(model, tok, [{"prompt": p} for p in prompts], max_new_tokens=6)


def _sample(capsys, *args) -> tuple[int, list[str], str]:
    rc = main(["sample", *args])
    out = capsys.readouterr()
    return rc, out.out.splitlines(), out.err


def test_sample_on_the_demo_output(arithmetic_model_dir, tmp_path, capsys, monkeypatch):
    """One demo run, several uses of it (one run per test would cost a training run each)."""
    demo = _demo_output(arithmetic_model_dir, tmp_path)
    greedy = ["--model", demo, "--rollout.temperature", "0", "--rollout.max_new_tokens", "6"]
    rc, lines, _ = _sample(capsys, *greedy, "37+58", "12+30")
    assert rc == 0 and lines == _greedy(demo, ["37+58", "12+30"])  # what the trained model says, greedily
    assert all(line.strip().lstrip("-").isdigit() for line in lines)

    monkeypatch.setattr(sys, "stdin", io.StringIO("1+2\n\n40+2\n"))  # no prompt arguments: one per line
    rc, lines, _ = _sample(capsys, *greedy)
    assert rc == 0 and lines == _greedy(demo, ["1+2", "40+2"])

    sampled = ["--model", demo, "--rollout.group_size", "4", "--rollout.temperature", "1.5", "--sample.seed", "3", "9+9"]
    rc, first, _ = _sample(capsys, *sampled)
    assert rc == 0 and [line[:4] for line in first] == ["[1] ", "[2] ", "[3] ", "[4] "]
    assert _sample(capsys, *sampled)[1] == first  # reproducible with a seed

    rc, _, err = _sample(capsys, "--model", demo, "--rollout.top_p", "0", "1+1")
    assert rc == 2 and "rollout.top_p: must be in (0, 1]" in err
    rc, _, err = _sample(capsys, "--model", demo + "-missing", "1+1")
    assert rc == 2 and "--model: cannot find the model" in err and "(none there)" in err

    # sampling defaults: the model's saved rollout section (the demo's 8 tokens, temperature 1),
    # then the flags; without a saved config, SampleCommandConfig's own
    assert (parse(["--model", demo]).rollout.max_new_tokens, parse(["--model", demo]).rollout.temperature) == (8, 1.0)
    assert parse(["--model", demo, "--rollout.max_new_tokens", "6"]).rollout.max_new_tokens == 6
    assert parse(["--model", "builtin:arithmetic"]).rollout.max_new_tokens == 512


def test_sample_on_a_lora_adapter_folder(arithmetic_model_dir, tmp_path, capsys):
    from grpokit.config import Config
    from grpokit.models.loading import load_model, prepare_model, save_outputs
    from grpokit.tasks.arithmetic import build_tokenizer

    cfg = Config()
    cfg.model.name_or_path, cfg.model.mode, cfg.model.device = str(arithmetic_model_dir), "lora", "cpu"
    model = prepare_model(load_model(str(arithmetic_model_dir), cfg.model), cfg.model)
    save_outputs(model, build_tokenizer(), cfg, tmp_path / "adapter")
    assert main(["sample", "--model", str(tmp_path / "adapter"), "--rollout.temperature", "0",
                 "--rollout.max_new_tokens", "6", "37+58"]) == 0
    # a fresh adapter (B = 0) is the base model exactly
    assert capsys.readouterr().out.splitlines() == _greedy(str(arithmetic_model_dir), ["37+58"])


def test_hide_think_keeps_only_the_answer():
    assert shown_text("<think>7 and 8 make 15</think>\n\n15", hide_think=True) == "15"
    assert shown_text("<think>7 and 8 make 15</think>\n\n15", hide_think=False).startswith("<think>")
    assert "still thinking" in shown_text("<think>7 and 8", hide_think=True)
    assert shown_text(" 15\n", hide_think=True) == "15"


def test_no_think_reaches_the_chat_template():
    from grpokit.tasks.arithmetic import build_tokenizer

    tok = build_tokenizer()
    tok.chat_template = ("{{ bos_token }}{% for m in messages %}<|user|>{{ m['content'] }}{% endfor %}"
                         "<|assistant|>{% if enable_thinking is defined and not enable_thinking %}0{% endif %}")
    thinking, plain = prompt_ids(tok, "1+2"), prompt_ids(tok, "1+2", think=False)
    assert plain[:-1] == thinking and tok.decode(plain[-1:]) == "0"
    assert thinking.count(tok.bos_token_id) == 1  # tokenized once: one BOS
