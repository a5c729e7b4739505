"""The stories260K recipe (a real pretrained TinyStories model) learns what its reward asks, with
the KL to the starting model on: a short version of grpokit/recipes/stories260k-words.yaml.

Margin stated in advance: over 8 steps the training reward (share of the asked-for words used)
rises by at least 0.15 from the mean of the first two steps to the mean of the last two, while
the per-token KL to the reference stays below 0.5. (The full recipe, 40 steps over 3 seeds, is in
the README: held-out reward about 0.06 -> 0.45.)"""

from __future__ import annotations

import json
import math

import pytest

from tests.conftest import REPO

MODEL = REPO.parent / "shared" / "models" / "stories260K"
RECIPE = REPO / "grpokit" / "recipes" / "stories260k-words.yaml"


def test_story_words_reward_counts_the_asked_words():
    from grpokit.rewards.story import story_words_reward

    example = {"words": ["box", "happy"]}
    assert story_words_reward("Tom found a box.", example) == 0.5
    assert story_words_reward("The boxes made Happy very happy.", example) == 1.0
    assert story_words_reward("A fox and a hippo.", example) == 0.0
    assert story_words_reward("box happy box", example, max_words=2, too_long=-1.0) == -1.0
    assert story_words_reward("a dog", {}, words="dog,cat") == 0.5
    with pytest.raises(ValueError, match="words"):
        story_words_reward("a box", {})


@pytest.mark.skipif(not MODEL.is_dir(), reason="../shared/models/stories260K is not there")
def test_stories260k_recipe_learns_the_words_with_kl_on(tmp_path, monkeypatch):
    from grpokit.config import load_yaml
    from grpokit.train.run import run_training

    monkeypatch.chdir(REPO)  # the recipe names its data relative to the checkout
    cfg = load_yaml(RECIPE)
    assert cfg.algo.beta > 0 and cfg.reward.names == ["story_words"]
    cfg.model.name_or_path, cfg.output_dir = str(MODEL), str(tmp_path / "run")
    cfg.train.steps, cfg.log.progress, cfg.log.plot, cfg.log.tensorboard = 8, False, False, False
    run_training(cfg, log=lambda *a: None)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward/total/mean" in r]
    first, last = (steps[0]["reward/total/mean"] + steps[1]["reward/total/mean"]) / 2, (steps[-2]["reward/total/mean"] + steps[-1]["reward/total/mean"]) / 2
    assert last - first >= 0.15, [r["reward/total/mean"] for r in steps]
    assert math.isfinite(steps[-1]["update/kl"]) and 0 < steps[-1]["update/kl"] < 0.5
