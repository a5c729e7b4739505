"""Curriculum prompt order: pass-rate bookkeeping, weighted draws, sorted epochs, resuming."""

import json
import math
from collections import Counter

import pytest
import torch

from grpokit.config import DataConfig
from grpokit.data.order import CurriculumOrder, ShuffledOrder, make_prompt_order
from grpokit.data.records import DataError


def test_record_keeps_a_running_pass_rate_per_prompt():
    s = CurriculumOrder(4, seed=0, ema=0.5)
    s.record([2, 0], torch.tensor([[1.0, 0.0, 0.0, 1.0], [-0.5, -1.0, -0.5, -0.5]]))
    assert s.rates == [0.0, None, 0.5, None] and s.seen == [4, 0, 4, 0]
    s.record([2], [[1.0, 1.0, math.nan, 1.0]])  # NaN = not judged: 3 of 3 judged are right
    assert s.rates[2] == pytest.approx(0.5 * 0.5 + 0.5 * 1.0) and s.seen[2] == 7
    s.record([1], [[math.nan, math.nan]])  # nothing judged: nothing learnt
    assert s.rates[1] is None and s.pass_rate(1) == 0.5  # the prior
    with pytest.raises(ValueError, match="2 indices but 1 reward groups"):
        s.record([0, 1], [[1.0]])


def test_weights_follow_the_strategy():
    s = CurriculumOrder(3, seed=0, min_weight=0.1, ema=1.0)
    s.record([0, 1], [[1.0, 1.0], [1.0, 0.0]])  # p = 1, 0.5, unseen (prior 0.5)
    assert s.weights() == pytest.approx([0.1, 0.35, 0.35])
    s.strategy = "hard_first"
    assert s.weights() == pytest.approx([0.1, 0.6, 0.6])
    s.strategy = "easy_first"
    assert s.weights() == pytest.approx([1.1, 0.6, 0.6])


def test_single_draws_follow_the_weights():
    s = CurriculumOrder(4, seed=7, min_weight=0.0, ema=1.0)
    s.record([0, 1, 2, 3], [[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]])
    weights = s.weights()  # p(1-p): 0, 3/16, 4/16, 0
    counts = Counter(s.next_indices(1)[0] for _ in range(4000))
    assert counts[0] == counts[3] == 0
    assert counts[1] / 4000 == pytest.approx(weights[1] / sum(weights), abs=0.03)
    assert counts[2] / 4000 == pytest.approx(4 / 7, abs=0.03)


def test_a_draw_never_repeats_a_prompt_until_it_must():
    s = CurriculumOrder(5, seed=1)
    draw = s.next_indices(5)
    assert sorted(draw) == [0, 1, 2, 3, 4]
    big = s.next_indices(12)
    assert sorted(big[:5]) == sorted(big[5:10]) == [0, 1, 2, 3, 4] and len(set(big[10:])) == 2


def test_easy_to_hard_visits_each_prompt_once_per_epoch_easiest_first():
    s = CurriculumOrder(4, seed=0, strategy="easy_to_hard", ema=1.0)
    first = s.next_indices(4)
    assert sorted(first) == [0, 1, 2, 3]
    s.record([0, 1, 2, 3], [[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    second = s.next_indices(3)
    assert second[:2] == [1, 2] and s.epoch == 1
    assert s.next_indices(1)[0] in (0, 3)


def test_state_round_trips_through_json_and_continues_identically():
    a = CurriculumOrder(10, seed=3)
    for _ in range(3):
        idx = a.next_indices(4)
        a.record(idx, [[float(i % 2), 1.0] for i in idx])
    b = CurriculumOrder(10, seed=3)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert [a.next_indices(4) for _ in range(3)] == [b.next_indices(4) for _ in range(3)]
    with pytest.raises(ValueError, match="for 10 prompts, this run has 9"):
        CurriculumOrder(9, seed=3).load_state_dict(a.state_dict())


def test_stats_summarise_what_is_known():
    s = CurriculumOrder(4, seed=0, ema=1.0)
    s.record([0, 1, 2], [[1.0, 1.0], [0.0, 0.0], [1.0, 0.0]])
    assert s.stats() == {"curriculum/seen_share": 0.75, "curriculum/pass_rate_mean": 0.5,
                         "curriculum/solved_share": 0.25, "curriculum/unsolved_share": 0.25}


def test_learnability_concentrates_on_prompts_with_mixed_groups():
    """Simulated model: prompt i is right with probability i / 19. After some steps the
    sampler draws the middle prompts (mixed groups) far more than the extremes."""
    gen = torch.Generator().manual_seed(0)
    s = CurriculumOrder(20, seed=0, min_weight=0.02)
    counts = Counter()
    for step in range(150):
        idx = s.next_indices(4)
        p = torch.tensor([i / 19 for i in idx])[:, None].expand(4, 8)
        s.record(idx, (torch.rand(4, 8, generator=gen) < p).float())
        if step >= 50:
            counts.update(idx)
    middle = sum(counts[i] for i in range(6, 14))
    extremes = counts[0] + counts[19]
    assert middle > 10 * extremes, counts


def test_make_prompt_order_picks_by_config_and_checks_it():
    assert isinstance(make_prompt_order(DataConfig(), 5), ShuffledOrder)
    s = make_prompt_order(DataConfig(curriculum="hard_first", curriculum_ema=0.3, seed=4), 5)
    assert isinstance(s, CurriculumOrder) and (s.strategy, s.ema, s.seed) == ("hard_first", 0.3, 4)
    with pytest.raises(DataError, match="unknown strategy 'learnabilty'; did you mean 'learnability'"):
        make_prompt_order(DataConfig(curriculum="learnabilty"), 5)
    with pytest.raises(DataError, match="curriculum_ema: must be in"):
        make_prompt_order(DataConfig(curriculum="learnability", curriculum_ema=0.0), 5)
