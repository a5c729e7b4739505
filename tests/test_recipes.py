"""The shipped recipes (grpokit/recipes/, inside the package so an installed grpokit has them):
each loads, validates, says what memory it expects, and runs two GRPO
steps through run_training as written except for the model (a tiny local Llama over a
character tokenizer instead of Qwen3, which cannot be downloaded or run here), the batch and
prompt sizes. The data is the real GSM8K preset from the shared data folder."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from grpokit.config import RECIPES as RECIPE_DIR
from grpokit.config import load_yaml, shipped_recipes, to_dict, validate
from tests.conftest import DATA, REPO
from tests.model_helpers import build_text_tokenizer, save_tiny_llama

STORIES = RECIPE_DIR / "stories260k-words.yaml"  # a CPU recipe: tests/test_stories260k.py
TOOLS = RECIPE_DIR / "arithmetic-tools.yaml"  # the built-in tool task's recipe (below)
RECIPES = sorted(p for p in RECIPE_DIR.glob("*.yaml") if p not in (STORIES, TOOLS))
TEXTBOOK = RECIPE_DIR / "textbook-qwen3-8b-qlora.yaml"


def test_the_recipes_ship_inside_the_package():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    assert [p.name for p in RECIPES] == [
        "small-gpu-qwen3-1.7b-qlora.yaml", "textbook-qwen3-8b-qlora-think.yaml", "textbook-qwen3-8b-qlora.yaml"]
    assert STORIES.is_file() and STORIES.with_suffix(".jsonl").is_file()
    assert shipped_recipes() == sorted(p.stem for p in [*RECIPES, STORIES, TOOLS])
    # what a wheel carries besides the modules: pyproject's package-data globs, relative to grpokit/
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["grpokit"]
    packaged = sorted({p for g in globs if g.startswith("recipes/") for p in (REPO / "grpokit").glob(g)})
    assert packaged == sorted([*RECIPES, STORIES, STORIES.with_suffix(".jsonl"), TOOLS]) and RECIPE_DIR == REPO / "grpokit" / "recipes"


def test_the_tool_task_recipe_is_the_measured_setting_and_brings_its_environment():
    cfg = validate(load_yaml("arithmetic-tools"))
    assert (cfg.data.source, cfg.env.name, cfg.model.name_or_path) == ("arithmetic-tools", "calculator",
                                                                      "builtin:arithmetic-tools")
    assert (cfg.rollout.prompts_per_step, cfg.rollout.group_size, cfg.train.steps, cfg.train.lr) == (8, 8, 40, 1e-3)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_validates_with_the_textbook_settings_and_states_its_memory(path):
    cfg = validate(load_yaml(path))
    assert re.search(r"Expected memory: about \d+ GB peak on one GPU \(fits \d+ GB\)", path.read_text())
    m, r = cfg.model, cfg.rollout
    assert m.name_or_path.startswith("Qwen/Qwen3-") and m.mode == "qlora" and m.trust_remote_code is False
    assert (m.quant_type, m.quant_double, m.lora_r, m.lora_alpha, m.lora_dropout) == ("nf4", True, 64, 16, 0.05)
    assert m.lora_targets() == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert (r.group_size, r.temperature, r.top_p, cfg.train.lr) == (4, 0.7, 0.9, 1e-5)
    assert cfg.data.source == "gsm8k"
    assert (cfg.algo.advantage, cfg.algo.objective, cfg.algo.aggregation) == ("group_mean", "reinforce", "sequence_sum")


def test_textbook_and_think_variants_differ_in_the_reward():
    plain, think = load_yaml(TEXTBOOK), load_yaml("textbook-qwen3-8b-qlora-think")  # a path, or a name
    assert plain.model.name_or_path == think.model.name_or_path == "Qwen/Qwen3-8B"
    assert plain.reward.names == ["math"] and think.reward.names == ["think_math"]


@pytest.fixture(scope="module")
def tiny_text_llama(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("text") / "llama", hidden=64, inter=128,
                           tokenizer=build_text_tokenizer(), max_positions=2048)


def _swap_in_tiny_model(cfg, folder: Path, out: Path):
    cfg.output_dir = str(out)
    cfg.model.name_or_path, cfg.model.device = str(folder), "cpu"
    cfg.rollout.prompts_per_step, cfg.rollout.max_new_tokens, cfg.train.steps = 1, 6, 2
    cfg.data.eval_size, cfg.data.max_prompt_tokens = 2, 160  # short prompts: CPU time grows with length
    cfg.train.eval_every, cfg.log.progress, cfg.log.plot, cfg.log.tensorboard = 0, False, False, False
    cfg.algo.skip_zero_advantage = False  # a random model's groups are flat: run the backward anyway
    cfg.doctor.preflight = False  # ... and it solves nothing, which the pre-flight would stop: these runs test the mechanics
    return validate(cfg)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_runs_two_steps_on_a_tiny_model(path, tiny_text_llama, tmp_path):
    if not (DATA / "gsm8k").is_dir():
        pytest.skip(f"GSM8K is not in {DATA}")
    from grpokit.models.loading import load_trained
    from grpokit.train.run import run_training

    cfg = _swap_in_tiny_model(load_yaml(path), tiny_text_llama, tmp_path / "run")
    summary = run_training(cfg, log=lambda *a: None)
    assert summary["steps"] == 2
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "update/loss" in r]
    assert len(steps) == 2
    for row in steps:
        assert math.isfinite(row["update/loss"]) and math.isfinite(row["update/grad_norm"])
        assert row["update/seqs"] == cfg.rollout.group_size and -1.0 <= row["reward/total/mean"] <= 1.0
    out = tmp_path / "run" / "model"
    assert (out / "adapter_config.json").is_file()  # qlora: the adapter is what is saved
    assert to_dict(load_yaml(out / "grpokit_config.yaml")) == to_dict(cfg)
    reloaded, _ = load_trained(str(out), device="cpu", dtype=cfg.model.dtype, log=lambda *a: None)
    base = reloaded.get_base_model()
    assert base.is_loaded_in_4bit and next(base.parameters()).dtype == torch.bfloat16  # as the recipe says
