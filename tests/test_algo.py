"""Level 1: the pure GRPO math against hand-computed numbers and slow loop references."""

import math

import pytest
import torch

from grpokit.algo import (
    ADVANTAGES,
    AGGREGATIONS,
    OBJECTIVES,
    aggregate,
    completion_mask_BT,
    compute_advantages_PG,
    entropy_BT,
    kl_BT,
    per_token_loss_BT,
    token_logprobs_BT,
)
from grpokit.algo.advantages import zero_std_P
from grpokit.algo.sampling import filter_logits_BV, sample_next_B

NAN = float("nan")


# ----------------------------------------------------------------------------- advantages


def test_advantages_hand_computed():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    eps = 1e-4
    s = math.sqrt(1 / 3)  # unbiased std of [1, 0, 0, 1]
    expect = {
        "group_mean": [[0.5, -0.5, -0.5, 0.5], [0, 0, 0, 0]],
        "group_zscore": [[0.5 / (s + eps), -0.5 / (s + eps), -0.5 / (s + eps), 0.5 / (s + eps)], [0, 0, 0, 0]],
        "rloo": [[2 / 3, -2 / 3, -2 / 3, 2 / 3], [0, 0, 0, 0]],
        # batch std of the 8 values: mean .75, sum of squares 1.5, unbiased var 1.5/7
        "batch_std": [[x / (math.sqrt(1.5 / 7) + eps) for x in (0.5, -0.5, -0.5, 0.5)], [0, 0, 0, 0]],
    }
    assert set(expect) == set(ADVANTAGES)
    for name, want in expect.items():
        got = compute_advantages_PG(r, name, eps=eps)
        assert torch.allclose(got, torch.tensor(want), atol=1e-6), name
    assert zero_std_P(r).tolist() == [False, True]


def _slow_advantages(rewards, name, eps):
    out = []
    flat = [x for row in rewards for x in row if not math.isnan(x)]
    bm = sum(flat) / len(flat)
    bstd = math.sqrt(sum((x - bm) ** 2 for x in flat) / (len(flat) - 1))
    for row in rewards:
        vals = [x for x in row if not math.isnan(x)]
        n, m = len(vals), sum(vals) / len(vals)
        std = math.sqrt(sum((x - m) ** 2 for x in vals) / (n - 1)) if n > 1 else 0.0
        adv = []
        for x in row:
            if math.isnan(x):
                adv.append(0.0)
            elif name == "group_mean":
                adv.append(x - m)
            elif name == "group_zscore":
                adv.append((x - m) / (std + eps))
            elif name == "rloo":
                adv.append(x - (sum(vals) - x) / (n - 1) if n > 1 else 0.0)
            else:
                adv.append((x - m) / (bstd + eps))
        out.append(adv)
    return out


@pytest.mark.parametrize("name", sorted(ADVANTAGES))
def test_advantages_match_slow_reference_with_unjudged_rewards(name):
    g = torch.Generator().manual_seed(1)
    r = torch.randn(5, 6, generator=g)
    r[1, 2] = NAN  # a reward that could not be judged
    r[3, :] = 0.7  # a group with no spread
    got = compute_advantages_PG(r, name, eps=1e-3)
    want = torch.tensor(_slow_advantages(r.tolist(), name, 1e-3))
    assert torch.allclose(got, want, atol=1e-5)
    assert got[1, 2] == 0.0 and torch.all(got[3] == 0)


def test_unknown_advantage_suggests_nearest():
    with pytest.raises(ValueError, match="did you mean 'group_zscore'"):
        compute_advantages_PG(torch.zeros(1, 2), "group_zscor")


# ----------------------------------------------------------------------------- objectives + KL


def _slow_token_loss(name, lp, old, adv, mask, el, eh):
    """Per-token objective written from the papers' formulas, one scalar at a time."""
    B, T = lp.shape
    out = [[None] * T for _ in range(B)]
    for b in range(B):
        n = sum(float(mask[b, t]) for t in range(T))
        log_s = sum((lp[b, t] - old[b, t]) * mask[b, t] for t in range(T)) / max(n, 1)
        for t in range(T):
            rho = torch.exp(lp[b, t] - old[b, t])
            if name == "reinforce":
                v = -adv[b] * lp[b, t]
            elif name == "ppo_clip":
                v = -torch.minimum(rho * adv[b], torch.clamp(rho, 1 - el, 1 + eh) * adv[b])
            elif name == "gspo":
                s = torch.exp(log_s.detach()) * torch.exp(lp[b, t] - lp[b, t].detach())
                v = -torch.minimum(s * adv[b], torch.clamp(s, 1 - el, 1 + eh) * adv[b])
            else:  # cispo
                v = -torch.clamp(rho, max=1 + eh).detach() * adv[b] * lp[b, t]
            out[b][t] = v
    return out


def _slow_aggregate(kind, vals, mask, max_len):
    B, T = mask.shape
    seq_sums = [sum(vals[b][t] * mask[b, t] for t in range(T)) for b in range(B)]
    lens = [float(mask[b].sum()) for b in range(B)]
    if kind == "sequence_sum":
        return sum(seq_sums) / B
    if kind == "sequence_mean":
        return sum(s / max(n, 1) for s, n in zip(seq_sums, lens)) / B
    if kind == "token_mean":
        return sum(seq_sums) / sum(lens)
    return sum(seq_sums) / (B * max_len)


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
@pytest.mark.parametrize("kind", sorted(AGGREGATIONS))
def test_objective_and_aggregation_values_and_gradients_match_slow_reference(objective, kind):
    g = torch.Generator().manual_seed(7)
    B, T = 4, 5
    base = -torch.rand(B, T, generator=g) * 2 - 0.1
    old = base + 0.3 * torch.randn(B, T, generator=g)  # ratios well away from 1: clipping active
    adv = torch.randn(B, generator=g)
    mask = completion_mask_BT(torch.tensor([5, 3, 1, 4]), T)
    lp_fast = base.clone().requires_grad_(True)
    loss_BT = per_token_loss_BT(lp_fast, old, adv, mask, objective=objective, eps_low=0.2, eps_high=0.28).loss_BT
    fast = aggregate(loss_BT, mask, kind, max_len=7)
    fast.backward()
    lp_slow = base.clone().requires_grad_(True)
    slow = _slow_aggregate(kind, _slow_token_loss(objective, lp_slow, old, adv, mask, 0.2, 0.28), mask, 7)
    slow.backward()
    assert torch.allclose(fast, slow, atol=1e-6)
    assert torch.allclose(lp_fast.grad, lp_slow.grad, atol=1e-6)
    assert torch.all(lp_fast.grad[mask == 0] == 0)  # padding gets no gradient


def test_textbook_loss_is_minus_mean_advantage_times_sequence_logprob():
    # One prompt, G = 3: loss = -(1/G) sum_i A_i sum_t log pi(o_i,t)
    lp = torch.tensor([[-0.5, -1.0, -2.0], [-0.1, -0.2, 0.0], [-3.0, 0.0, 0.0]], requires_grad=True)
    mask = completion_mask_BT(torch.tensor([3, 2, 1]), 3)
    rewards = torch.tensor([[1.0, 0.0, 0.5]])
    adv = compute_advantages_PG(rewards, "group_mean").view(-1)  # [0.5, -0.5, 0.0]
    loss_BT = per_token_loss_BT(lp, lp.detach(), adv, mask, objective="reinforce", eps_low=0.2, eps_high=0.2).loss_BT
    got = aggregate(loss_BT, mask, "sequence_sum")
    want = -(0.5 * (-3.5) + (-0.5) * (-0.3) + 0.0 * (-3.0)) / 3
    assert got.item() == pytest.approx(want, abs=1e-6)


def test_ppo_clip_hand_computed():
    lp = torch.log(torch.tensor([[1.5, 0.5, 1.1]]))  # ratios vs old = 0
    old = torch.zeros(1, 3)
    mask = torch.ones(1, 3)
    pos = per_token_loss_BT(lp, old, torch.tensor([2.0]), mask, objective="ppo_clip", eps_low=0.2, eps_high=0.3)[0]
    neg = per_token_loss_BT(lp, old, torch.tensor([-1.0]), mask, objective="ppo_clip", eps_low=0.2, eps_high=0.3)[0]
    # A > 0: min(rho A, clip(rho) A) -> 1.3*2, 0.5*2, 1.1*2 ; A < 0: -> -1.5, -0.8, -1.1
    assert torch.allclose(pos, -torch.tensor([[2.6, 1.0, 2.2]]), atol=1e-6)
    assert torch.allclose(neg, torch.tensor([[1.5, 0.8, 1.1]]), atol=1e-6)


def test_gspo_uses_one_clipped_ratio_per_sequence():
    old = torch.zeros(1, 2)
    lp = torch.tensor([[0.4, 0.2]])  # mean log-ratio 0.3 -> s = e^0.3 = 1.3499
    loss = per_token_loss_BT(lp, old, torch.tensor([1.0]), torch.ones(1, 2), objective="gspo",
                             eps_low=0.2, eps_high=0.2)[0]
    assert torch.allclose(loss, torch.full((1, 2), -1.2), atol=1e-6)  # clipped at 1 + 0.2


def test_each_objective_marks_the_tokens_its_own_clip_acted_on():
    old, mask = torch.zeros(1, 3), torch.ones(1, 3)
    lp = torch.log(torch.tensor([[1.5, 0.5, 1.1]]))  # token ratios 1.5, 0.5, 1.1

    def clipped(objective, adv, lp=lp, old=old, mask=mask):
        return per_token_loss_BT(lp, old, torch.tensor(adv), mask, objective=objective, eps_low=0.2,
                                 eps_high=0.3).clipped_BT.tolist()

    assert clipped("ppo_clip", [2.0]) == [[True, False, False]]  # above 1.3 with A > 0
    assert clipped("ppo_clip", [-1.0]) == [[False, True, False]]  # below 0.8 with A < 0
    assert clipped("cispo", [2.0]) == clipped("cispo", [-1.0]) == [[True, False, False]]  # no lower bound
    assert clipped("reinforce", [2.0]) == [[False, False, False]]
    # GSPO: token ratios e^0.5 and e^-0.5 are both outside PPO's band, their sequence ratio is 1
    two = torch.tensor([[0.5, -0.5], [0.4, 0.2]])  # second sequence: s = e^0.3 > 1.3 with A > 0
    assert clipped("gspo", [1.0, 1.0], lp=two, old=torch.zeros(2, 2), mask=torch.ones(2, 2)) == [
        [False, False], [True, True]]


def test_kl_estimators_hand_computed():
    lp, ref = torch.tensor([[-1.0]]), torch.tensor([[-2.0]])
    assert kl_BT(lp, ref, "k1").item() == pytest.approx(1.0)
    assert kl_BT(lp, ref, "k2").item() == pytest.approx(0.5)
    assert kl_BT(lp, ref, "k3").item() == pytest.approx(math.exp(-1) + 1 - 1)
    loss, kl, _ = per_token_loss_BT(lp, lp, torch.tensor([0.0]), torch.ones(1, 1), objective="reinforce",
                                 eps_low=0.2, eps_high=0.2, beta=0.1, ref_logp_BT=ref, kl_estimator="k2")
    assert loss.item() == pytest.approx(0.05) and kl.item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="reference log-probs"):
        per_token_loss_BT(lp, lp, torch.tensor([0.0]), torch.ones(1, 1), objective="reinforce",
                          eps_low=0.2, eps_high=0.2, beta=0.1)


# ----------------------------------------------------------------------------- aggregation


def test_aggregations_hand_computed():
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert aggregate(loss, mask, "sequence_sum").item() == pytest.approx(3.5)
    assert aggregate(loss, mask, "sequence_mean").item() == pytest.approx((1.5 + 4.0) / 2)
    assert aggregate(loss, mask, "token_mean").item() == pytest.approx(7 / 3)
    assert aggregate(loss, mask, "constant", max_len=4).item() == pytest.approx(7 / 8)


@pytest.mark.parametrize("kind", sorted(AGGREGATIONS))
def test_micro_batches_with_global_normalisers_sum_to_the_full_batch(kind):
    g = torch.Generator().manual_seed(3)
    loss = torch.randn(6, 5, generator=g)
    mask = completion_mask_BT(torch.tensor([5, 2, 4, 1, 3, 5]), 5)
    full = aggregate(loss, mask, kind, max_len=5)
    norms = dict(num_seqs=6, num_tokens=int(mask.sum()), max_len=5)
    parts = sum(aggregate(loss[i : i + 2], mask[i : i + 2], kind, **norms) for i in range(0, 6, 2))
    assert torch.allclose(full, parts, atol=1e-6)


# ----------------------------------------------------------------------------- log-probs, entropy, sampling


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_chunked_logprobs_and_entropy_equal_full_log_softmax(temperature):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=g, requires_grad=True)
    ids = torch.randint(0, 11, (3, 7), generator=g)
    got = token_logprobs_BT(logits, ids, temperature=temperature, chunk=2)
    full = torch.log_softmax(logits / temperature, -1)
    want = full.gather(-1, ids[..., None]).squeeze(-1)
    assert torch.allclose(got, want, atol=1e-6)
    g1 = torch.autograd.grad(got.sum(), logits)[0]
    g2 = torch.autograd.grad(want.sum(), logits)[0]
    assert torch.allclose(g1, g2, atol=1e-6)
    ent = entropy_BT(logits, temperature=temperature, chunk=3)
    assert torch.allclose(ent, -(full.exp() * full).sum(-1), atol=1e-5)


def test_mask_from_lengths_keeps_eos_and_drops_padding():
    mask = completion_mask_BT(torch.tensor([3, 1, 0]), 4)
    assert mask.tolist() == [[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]]


def test_top_k_and_top_p_filters():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits_BV(logits, top_k=2)).tolist() == [[False, False, True, True]]
    # nucleus 0.7: 0.5 + 0.3 reaches it; the rest is cut
    assert torch.isinf(filter_logits_BV(logits, top_p=0.7)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits_BV(logits, top_p=0.85)).tolist() == [[False, False, False, True]]
    assert sample_next_B(logits, temperature=0.0)[0].tolist() == [0]
    g = torch.Generator().manual_seed(0)
    draws = sample_next_B(logits.expand(4000, 4), temperature=1.0, generator=g)[0]
    freq = torch.bincount(draws, minlength=4).float() / 4000
    assert torch.allclose(freq, torch.tensor([0.5, 0.3, 0.15, 0.05]), atol=0.03)
