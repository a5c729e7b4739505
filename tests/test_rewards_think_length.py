"""Think-token rewards and length shaping."""

import pytest
import torch

from grpokit.rewards import (
    has_think_block,
    overlong_penalty_B,
    reward_with_thinking,
    think_format_reward,
    think_math_reward,
    truncated_B,
)


@pytest.mark.parametrize(
    "completion, ok",
    [
        ("<think>2+2 is 4</think> The answer is 4", True),
        ("\n <think>\nreasoning\n</think>\n\\boxed{4}", True),
        ("The answer is 4", False),  # no block
        ("<think></think> 4", False),  # empty reasoning
        ("<think>hmm</think>", False),  # nothing after the block
        ("<think>hmm</think>   \n", False),
        ("Sure! <think>hmm</think> 4", False),  # text before the block
        ("<think>a</think> 4 <think>b</think> 5", False),  # two blocks
        ("<think>a<think>b</think> 4", False),  # nested open
        ("<think>never closed 4", False),
        ("</think> 4 <think>x", False),  # closed before opened
        ("", False),
    ],
)
def test_think_format(completion, ok):
    assert has_think_block(completion) is ok
    assert think_format_reward(completion, {}) == (1.0 if ok else 0.0)


def test_think_opened_by_the_prompt():
    assert has_think_block("reasoning here</think> 4", opened_in_prompt=True)
    assert not has_think_block("<think>reasoning</think> 4", opened_in_prompt=True)
    assert not has_think_block("   </think> 4", opened_in_prompt=True)
    assert reward_with_thinking("still thinking, 4", "4", opened_in_prompt=True) == -0.5


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("<think>6*7</think> The answer is 42", 1.0),  # right, with think
        ("The answer is 42", 0.5),  # right, no think
        ("<think>6*7</think> The answer is 41", -0.2),  # wrong, with think
        ("<think>6*7 is 42</think> I give up", -0.2),  # no answer, with think
        ("The answer is 41", -0.5),  # wrong, no think
        ("<think>it is 42, so \\boxed{42}", -0.5),  # never closed: no think, no answer
        ("", -0.5),
    ],
)
def test_reward_with_thinking_tiers(completion, expected):
    assert reward_with_thinking(completion, "42") == expected
    assert think_math_reward(completion, {"answer": "#### 42"}) == expected


def test_think_block_with_wrong_intermediate_number_is_ignored():
    completion = "<think>First guess: 41. Check 6*7 = 42.</think>The answer is 41"
    assert reward_with_thinking(completion, "42") == -0.2
    assert reward_with_thinking(completion, "41") == 1.0


def test_think_tiers_are_configurable():
    kw = dict(correct_think=2.0, correct_plain=1.0, wrong_think=0.0, otherwise=-1.0)
    assert think_math_reward("<think>x</think> 42", {"answer": "42"}, **kw) == 2.0
    assert think_math_reward("43", {"answer": "42"}, **kw) == -1.0


def _overlong_reference(length, max_len, cache_len, penalty):
    # DAPO eq. 13, written out case by case
    if length <= max_len - cache_len:
        return 0.0
    if length <= max_len:
        return penalty * ((max_len - cache_len) - length) / cache_len
    return -penalty


def test_overlong_penalty_hand_computed():
    lengths = torch.tensor([0, 80, 81, 90, 99, 100, 101, 500])
    out = overlong_penalty_B(lengths, max_len=100, cache_len=20, penalty=1.0)
    expected = torch.tensor([0, 0, -0.05, -0.5, -0.95, -1.0, -1.0, -1.0])
    torch.testing.assert_close(out, expected)
    assert out.dtype == torch.float32


def test_overlong_penalty_matches_reference_on_random_lengths():
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(0, 300, (500,), generator=gen)
    for max_len, cache_len, penalty in [(256, 64, 1.0), (200, 1, 0.5), (128, 128, 2.0)]:
        out = overlong_penalty_B(lengths, max_len=max_len, cache_len=cache_len, penalty=penalty)
        ref = [_overlong_reference(int(n), max_len, cache_len, penalty) for n in lengths]
        torch.testing.assert_close(out, torch.tensor(ref, dtype=torch.float32))


def test_overlong_penalty_step_and_validation():
    out = overlong_penalty_B(torch.tensor([10, 11, 12]), max_len=11, cache_len=0, penalty=0.5)
    torch.testing.assert_close(out, torch.tensor([0.0, 0.0, -0.5]))
    half = overlong_penalty_B(torch.tensor([15.0], dtype=torch.float64), max_len=20, cache_len=10)
    assert half.dtype == torch.float64 and half.item() == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="cache_len"):
        overlong_penalty_B(torch.tensor([1]), max_len=10, cache_len=11)
    with pytest.raises(ValueError, match="max_len"):
        overlong_penalty_B(torch.tensor([1]), max_len=0, cache_len=0)


def test_truncated_mask():
    lengths = torch.tensor([5, 10, 10, 7])
    eos = torch.tensor([True, False, True, False])
    assert truncated_B(lengths, eos).tolist() == [False, True, False, True]
    assert truncated_B(lengths, eos, max_len=10).tolist() == [False, True, False, False]
    with pytest.raises(ValueError, match="same shape"):
        truncated_B(lengths, eos[:2])
