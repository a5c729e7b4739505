"""`grpokit sample` on the demo's trained output, on an adapter folder, and its pieces."""

from __future__ import annotations

import io
import sys

import pytest

from grpokit.cli import main
from grpokit.commands.sample import prompt_ids, shown_text


@pytest.fixture(scope="module")
def demo_output(arithmetic_model_dir, tmp_path_factory):
    """OUTPUT/model of a short demo run (the built-in task, two steps)."""
    from grpokit.config import Config
    from grpokit.run import run_training

    cfg = Config(output_dir=str(tmp_path_factory.mktemp("demo") / "run"))
    cfg.model.name_or_path = str(arithmetic_model_dir)
    cfg.train.steps, cfg.train.eval_every, cfg.data.eval_size = 2, 0, 8
    cfg.log.progress, cfg.log.plot, cfg.log.tensorboard = False, False, False
    run_training(cfg, log=lambda *a: None)
    return cfg.output_dir + "/model"


def _greedy(model_dir: str, prompts: list[str]) -> list[str]:
    from grpokit.evaluate import generate_for
    from grpokit.models import load_trained

    model, tok = load_trained(model_dir, device="cpu", log=lambda *a: None)
    return generate_for(model, tok, [{"prompt": p} for p in prompts], max_new_tokens=6)


def test_sample_answers_prompts_from_the_demo_output(demo_output, capsys):
    rc = main(["sample", "--model", demo_output, "--temperature", "0", "--max-new-tokens", "6", "37+58", "12+30"])
    lines = capsys.readouterr().out.splitlines()
    assert rc == 0 and len(lines) == 2
    assert lines == _greedy(demo_output, ["37+58", "12+30"])  # what the trained model says, greedily
    assert all(line.strip().lstrip("-").isdigit() for line in lines)


def test_sample_reads_prompts_one_per_line_without_arguments(demo_output, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("1+2\n\n40+2\n"))
    rc = main(["sample", "--model", demo_output, "--temperature", "0", "--max-new-tokens", "6"])
    lines = capsys.readouterr().out.splitlines()
    assert rc == 0 and lines == _greedy(demo_output, ["1+2", "40+2"])


def test_sample_draws_n_completions_reproducibly(demo_output, capsys):
    args = ["sample", "--model", demo_output, "-n", "4", "--temperature", "1.5", "--seed", "3", "9+9"]
    assert main(args) == 0
    first = capsys.readouterr().out.splitlines()
    assert main(args) == 0
    assert first == capsys.readouterr().out.splitlines()
    assert [line[:4] for line in first] == ["[1] ", "[2] ", "[3] ", "[4] "]


def test_sample_rejects_bad_options_by_name(demo_output, capsys):
    assert main(["sample", "--model", demo_output, "--top-p", "0", "1+1"]) == 2
    assert "--top-p" in capsys.readouterr().err
    assert main(["sample", "--model", str(demo_output) + "-missing", "1+1"]) == 2
    assert "cannot load --model" in capsys.readouterr().err


def test_sample_on_a_lora_adapter_folder(arithmetic_model_dir, tmp_path, capsys):
    from grpokit.config import Config
    from grpokit.models import load_model, prepare_model, save_outputs
    from grpokit.tasks.arithmetic import build_tokenizer

    cfg = Config()
    cfg.model.name_or_path, cfg.model.mode, cfg.model.device = str(arithmetic_model_dir), "lora", "cpu"
    model = prepare_model(load_model(str(arithmetic_model_dir), cfg.model), cfg.model)
    save_outputs(model, build_tokenizer(), cfg, tmp_path / "adapter")
    assert main(["sample", "--model", str(tmp_path / "adapter"), "--temperature", "0",
                 "--max-new-tokens", "6", "37+58"]) == 0
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
