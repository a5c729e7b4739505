"""Level 2: grpokit's switchable speed-ups give the plain path's samples, log-probs, gradients
and losses (the inverse-CDF sampler: the same distribution, other draws)."""

import torch

from grpokit.algo.logprobs import entropy_BT, head_logprobs_N, token_logprobs_BT
from grpokit.policy.forward import _SPLIT_CHECKED, completion_logprobs_BT
from grpokit.rollout.generate import generate, sample_inverse_cdf_B


def _prompts(tok):
    from grpokit.data.records import example_prompt_ids

    return [example_prompt_ids(tok, {"prompt": p}) for p in ["1+2", "34+56", "7+80"]]


def _rollout(model, tok, **kw):
    args = dict(group_size=3, max_new_tokens=6, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id, temperature=0.9,
                generator=torch.Generator().manual_seed(0))
    return generate(model, _prompts(tok), **{**args, **kw})


def test_inverse_cdf_draws_follow_the_probabilities_and_never_pick_a_zero():
    g = torch.Generator().manual_seed(0)
    probs_V = torch.tensor([0.5, 0.0, 0.2, 0.3, 0.0])
    draws = sample_inverse_cdf_B(probs_V.expand(200_000, -1) * 7.0, g)  # unnormalised is fine
    freq = torch.bincount(draws, minlength=5).float() / len(draws)
    assert freq[1] == 0 and freq[4] == 0
    assert torch.allclose(freq, probs_V, atol=0.005)
    # several blocks of 256, a ragged last one, zeros inside and at the block edges
    probs_V = torch.rand(700, generator=g) ** 4
    probs_V[::7], probs_V[250:260], probs_V[-30:] = 0, 0, 0
    n = 300_000
    freq = torch.bincount(sample_inverse_cdf_B(probs_V.expand(n, -1), g), minlength=700).float() / n
    p_V = probs_V / probs_V.sum()
    assert freq[p_V == 0].sum() == 0
    chi2 = float(((freq - p_V)[p_V > 0] ** 2 / p_V[p_V > 0]).sum() * n)
    dof = int((p_V > 0).sum()) - 1
    assert chi2 < dof + 5 * (2 * dof) ** 0.5  # 5 sigma
    one_hot = torch.zeros(4, 600)
    one_hot[torch.arange(4), torch.tensor([0, 255, 256, 599])] = 1
    assert sample_inverse_cdf_B(one_hot, g).tolist() == [0, 255, 256, 599]


def test_inverse_cdf_rollout_shares_prefill_and_keeps_entropy_finite_with_min_tokens(tiny_llama):
    model, tok = tiny_llama
    a = _rollout(model, tok, sampler="inverse_cdf", min_new_tokens=3)
    b = _rollout(model, tok, sampler="inverse_cdf", min_new_tokens=3, share_prefill=False)
    assert torch.equal(a.completion_ids_BT, b.completion_ids_BT) and (a.lengths_B >= 3).all()
    assert torch.isfinite(a.entropy_BT).all()
    plain = _rollout(model, tok, min_new_tokens=3)  # the multinomial path: same entropy formula
    assert torch.isfinite(plain.entropy_BT).all()
    assert torch.allclose(a.entropy_BT[:, 0], plain.entropy_BT[:, 0], atol=1e-5)


def test_entropy_ignores_banned_tokens():
    logits = torch.tensor([[[0.0, 0.0, float("-inf")]]])
    assert torch.allclose(entropy_BT(logits), torch.log(torch.tensor([[2.0]])))


def test_preallocated_cache_samples_the_same_tokens(tiny_llama):
    model, tok = tiny_llama
    a, b = _rollout(model, tok, preallocate=True), _rollout(model, tok, preallocate=False)
    assert torch.equal(a.completion_ids_BT, b.completion_ids_BT) and torch.equal(a.lengths_B, b.lengths_B)
    assert torch.allclose(a.entropy_BT, b.entropy_BT)


def test_fused_head_logprobs_and_gradients_match_autograd():
    torch.manual_seed(0)
    hidden = torch.randn(7, 5, requires_grad=True)
    weight = torch.randn(11, 5, requires_grad=True)
    ids, g = torch.randint(0, 11, (7,)), torch.randn(7)
    want = token_logprobs_BT((hidden @ weight.t())[None], ids[None], temperature=0.7)[0]
    gh, gw = torch.autograd.grad((want * g).sum(), [hidden, weight])
    got = head_logprobs_N(hidden, weight, ids, temperature=0.7, chunk=3)
    fh, fw = torch.autograd.grad((got * g).sum(), [hidden, weight])
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(fh, gh, atol=1e-5) and torch.allclose(fw, gw, atol=1e-5)


def _logprobs_and_grads(model, rollout, weights_BT, **kw):
    model.zero_grad(set_to_none=True)
    logp_BT, _ = completion_logprobs_BT(model, rollout, temperature=0.9, **kw)
    mask_BT = rollout.completion_mask_BT
    (logp_BT * weights_BT * mask_BT).sum().backward()
    return logp_BT.detach() * mask_BT, [p.grad.clone() for p in model.parameters()]


def test_fused_head_and_shared_prompt_match_the_plain_forward(tiny_llama):
    model, tok = tiny_llama
    ro = _rollout(model, tok)
    assert ro.lengths_B.min() < ro.lengths_B.max()  # padding inside the completions too
    model.train()
    w_BT = torch.randn(ro.completion_ids_BT.shape)
    want, want_g = _logprobs_and_grads(model, ro, w_BT)
    for kw in (dict(fused_head=True), dict(share_prompt=True), dict(fused_head=True, share_prompt=True)):
        got, got_g = _logprobs_and_grads(model, ro, w_BT, **kw)
        assert torch.allclose(got, want, atol=1e-5), kw
        assert all(torch.allclose(a, b, atol=1e-5, rtol=1e-4) for a, b in zip(got_g, want_g)), kw
    part = ro.select(torch.tensor([7, 3, 4, 0]))  # mixed prompts, trimmed columns
    got, _ = completion_logprobs_BT(model, part, fused_head=True, share_prompt=True)
    want, _ = completion_logprobs_BT(model, part)
    assert torch.allclose(got, want * part.completion_mask_BT, atol=1e-5)


def test_a_head_that_is_not_a_plain_linear_falls_back_to_the_model_forward(tiny_llama):
    model, tok = tiny_llama
    ro = _rollout(model, tok)

    class Scaled(torch.nn.Linear):  # e.g. a head that scales logits: the split path would be wrong
        def forward(self, x):
            return 0.5 * super().forward(x)

    head = model.lm_head
    scaled = Scaled(head.in_features, head.out_features, bias=False)
    scaled.weight = head.weight
    model.lm_head = scaled
    got, _ = completion_logprobs_BT(model, ro, fused_head=True, share_prompt=True)
    want, _ = completion_logprobs_BT(model, ro)
    assert torch.equal(got, want)


def test_trainer_loss_and_update_match_with_the_fast_update_paths(arithmetic_model_dir):
    from grpokit.config import Config
    from grpokit.models.loading import load_tokenizer
    from grpokit.rewards import RewardScorer
    from grpokit.tasks.arithmetic import ArithmeticSpec, split_problems
    from grpokit.train.trainer import Trainer
    from transformers import AutoModelForCausalLM

    def run(fast: bool):
        cfg = Config()
        cfg.rollout.prompts_per_step, cfg.rollout.group_size = 4, 4
        cfg.train.fused_logprobs = cfg.train.share_prompt_forward = fast
        cfg.train.micro_batch_size, cfg.algo.mu = 6, 2  # several micro-batches; old log-probs kept
        tok = load_tokenizer(str(arithmetic_model_dir))
        model = AutoModelForCausalLM.from_pretrained(arithmetic_model_dir, dtype=torch.float32)
        examples = split_problems(ArithmeticSpec())["train"][:50]
        trainer = Trainer(cfg, model, tok, examples, RewardScorer(["arithmetic"], [1.0]))
        stats = [trainer.step() for _ in range(2)]
        if fast:  # the split path was checked against the model's own forward and taken
            assert _SPLIT_CHECKED[model] == {True: True}
        return stats, [p.detach().clone() for p in model.parameters()]

    (plain, p_plain), (fast, p_fast) = run(False), run(True)
    for a, b in zip(plain, fast):
        assert abs(a["update/loss"] - b["update/loss"]) < 1e-5
        assert abs(a["update/clipped_share"] - b["update/clipped_share"]) < 1e-6
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(p_plain, p_fast))
