"""Level 1: the one token sampler draws from the same distribution as torch.multinomial
(chi-square tests with fixed seeds and a 5-sigma threshold), never draws a token of
probability 0, and its entropy and the drawn token's log-prob come from the package's one
softmax pass."""

import pytest
import torch

from grpokit.algo.logprobs import entropy_BT, token_logprobs_BT
from grpokit.algo.sampling import filter_logits_BV, inverse_cdf_draw_B, sample_next_B, seeded_generator


def _counts(draws: torch.Tensor, V: int) -> torch.Tensor:
    return torch.bincount(draws.flatten(), minlength=V).double()


def _homogeneity_chi2(a_V: torch.Tensor, b_V: torch.Tensor) -> tuple[float, int]:
    """Two-sample chi-square statistic for equal sample sizes: sum (a - b)^2 / (a + b)."""
    seen = (a_V + b_V) > 0
    return float(((a_V - b_V)[seen] ** 2 / (a_V + b_V)[seen]).sum()), int(seen.sum()) - 1


def _five_sigma(dof: int) -> float:
    """Chi-square with dof degrees of freedom has mean dof and variance 2 dof."""
    return dof + 5 * (2 * dof) ** 0.5


def _rows(fn, n: int, per_call: int = 10_000) -> torch.Tensor:
    return torch.cat([fn(per_call) for _ in range(n // per_call)])


def test_inverse_cdf_draw_matches_multinomial_and_never_picks_a_zero():
    g = torch.Generator().manual_seed(0)
    V, n = 600, 60_000  # three blocks of 256, a ragged last one
    p_V = torch.rand(V, generator=g) ** 4
    p_V[::7], p_V[250:260], p_V[-30:] = 0, 0, 0  # zeros inside and at the block edges
    ours = _counts(_rows(lambda k: inverse_cdf_draw_B(p_V.expand(k, -1) * 7.0, g), n), V)  # unnormalised is fine
    theirs = _counts(torch.multinomial(p_V, n, replacement=True, generator=g), V)
    assert ours[p_V == 0].sum() == 0
    chi2, dof = _homogeneity_chi2(ours, theirs)
    assert chi2 < _five_sigma(dof), (chi2, dof)
    # the test has teeth: multinomial draws from a slightly flatter distribution fail it
    flatter = torch.multinomial(p_V ** 0.8, n, replacement=True, generator=g)
    assert _homogeneity_chi2(ours, _counts(flatter, V))[0] > _five_sigma(dof)
    one_hot = torch.zeros(4, 600)
    one_hot[torch.arange(4), torch.tensor([0, 255, 256, 599])] = 1
    assert inverse_cdf_draw_B(one_hot, g).tolist() == [0, 255, 256, 599]


def test_sampler_with_temperature_top_k_top_p_matches_multinomial_on_the_filtered_softmax():
    g = torch.Generator().manual_seed(1)
    V, n = 60, 20_000
    logits_V = torch.randn(V, generator=g) * 3
    for temperature, top_k, top_p in ((0.7, 0, 1.0), (1.3, 20, 1.0), (1.0, 0, 0.8), (0.9, 30, 0.9)):
        want_V = torch.softmax(filter_logits_BV(logits_V[None] / temperature, top_k=top_k, top_p=top_p), -1)[0]
        ours = _counts(_rows(lambda k: sample_next_B(logits_V.expand(k, -1), temperature=temperature, top_k=top_k,
                                                     top_p=top_p, generator=g)[0], n), V)
        theirs = _counts(torch.multinomial(want_V, n, replacement=True, generator=g), V)
        assert ours[want_V == 0].sum() == 0
        chi2, dof = _homogeneity_chi2(ours, theirs)
        assert chi2 < _five_sigma(dof), (temperature, top_k, top_p, chi2, dof)


def test_sampler_entropy_is_the_entropy_of_the_scaled_distribution_before_filtering():
    g = torch.Generator().manual_seed(2)
    logits_BV = torch.randn(3, 50, generator=g) * 2
    logits_BV[0, 7] = float("-inf")  # a banned token adds nothing
    tok_B, ent_B, _ = sample_next_B(logits_BV, temperature=0.8, top_k=5, generator=g)
    p_BV = torch.softmax(logits_BV / 0.8, -1)
    by_hand_B = -(p_BV * torch.log(p_BV.clamp(min=1e-30))).sum(-1)
    assert torch.allclose(ent_B, by_hand_B, atol=1e-5)
    assert torch.allclose(entropy_BT(logits_BV[:, None], temperature=0.8)[:, 0], by_hand_B, atol=1e-5)
    assert all(int(t) in torch.topk(logits_BV[b], 5).indices.tolist() for b, t in enumerate(tok_B))
    greedy_B, none, no_logp = sample_next_B(logits_BV, temperature=0.0)
    assert none is None and no_logp is None and greedy_B.tolist() == logits_BV.argmax(-1).tolist()


def test_sampler_logprob_is_the_drawn_tokens_log_softmax_before_filtering():
    g = torch.Generator().manual_seed(3)
    logits_BV = torch.randn(4, 300, generator=g) * 3
    logits_BV[1, :10] = float("-inf")  # banned tokens (min_new_tokens) count as probability 0
    tok_B, _, logp_B = sample_next_B(logits_BV, temperature=0.7, top_p=0.9, generator=g)
    by_hand_B = torch.log_softmax(logits_BV.double() / 0.7, -1).gather(-1, tok_B[:, None]).squeeze(-1)
    assert torch.allclose(logp_B.double(), by_hand_B, atol=1e-5)
    assert torch.allclose(logp_B, token_logprobs_BT(logits_BV[:, None], tok_B[:, None], temperature=0.7)[:, 0],
                          atol=1e-5)


def test_entropy_ignores_banned_tokens():
    logits = torch.tensor([[[0.0, 0.0, float("-inf")]]])
    assert torch.allclose(entropy_BT(logits), torch.log(torch.tensor([[2.0]])))


def test_seeded_generator_derives_each_stream_from_seed_and_indices_alone():
    # hand-computed: 3 * 1_000_003 + 2 * 10_007 + 1 * 101 + 0 * 1_000_000_007
    assert seeded_generator("cpu", 3, 2, 1, 0).initial_seed() == 3_020_124
    assert seeded_generator("cpu", 7).initial_seed() == 7  # no stream: the seed as given
    draw = lambda *a: torch.rand(4, generator=seeded_generator("cpu", *a))  # noqa: E731
    assert torch.equal(draw(3, 2, 1, 0), draw(3, 2, 1, 0))
    assert not torch.equal(draw(3, 2, 1, 0), draw(3, 2, 1, 1))  # another sampling round
    assert not torch.equal(draw(3, 2, 0), draw(3, 2, 1))  # another rank
    with pytest.raises(ValueError, match="at most 3 stream indices, got 4"):
        seeded_generator("cpu", 0, 1, 2, 3, 4)
