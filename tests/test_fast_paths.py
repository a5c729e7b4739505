"""Level 2: the fast update forward (fused head + shared prompt, the default) gives the plain
forward's log-probs, gradients and losses, and falls back to the model's own forward, saying
why once, where the model does not allow it (the sampler's own tests: test_sampling.py)."""

import functools
import logging

import torch

from grpokit.algo.logprobs import entropy_BT, head_logprobs_N, token_logprobs_BT
from grpokit.policy import forward
from grpokit.policy.forward import _SPLIT_CHECKED, policy_logprobs_BT
from grpokit.rollout import decoders, fallback
from grpokit.rollout.generate import generate

PLAIN = dict(fused_head=False, share_prompt=False)  # the internal switches that force the plain forward


def _prompts(tok):
    from grpokit.data.records import example_prompt_ids

    return [example_prompt_ids(tok, {"prompt": p}) for p in ["1+2", "34+56", "7+80"]]


def _rollout(model, tok, **kw):
    args = dict(group_size=3, max_new_tokens=6, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id, temperature=0.9,
                generator=torch.Generator().manual_seed(0))
    return generate(model, _prompts(tok), **{**args, **kw})


def test_rollout_entropy_is_the_entropy_of_its_logits_with_min_tokens(tiny_llama):
    model, tok = tiny_llama
    a = _rollout(model, tok, min_new_tokens=3)
    b = _rollout(model, tok, min_new_tokens=3, share_prefill=False)
    assert torch.equal(a.completion_ids_BT, b.completion_ids_BT) and (a.lengths_B >= 3).all()
    assert torch.isfinite(a.entropy_BT).all()
    # the first step's logits are the prompt's, with EOS banned (min_new_tokens)
    with torch.no_grad():
        logits_BV = model(input_ids=a.prompt_ids_BL, attention_mask=a.prompt_mask_BL).logits[:, -1]
    logits_BV[:, tok.eos_token_id] = float("-inf")
    assert torch.allclose(a.entropy_BT[:, 0], entropy_BT(logits_BV[:, None], temperature=0.9)[:, 0], atol=1e-5)


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
    logp_BT = policy_logprobs_BT(model, rollout, temperature=0.9, **kw)
    mask_BT = rollout.completion_mask_BT
    (logp_BT * weights_BT * mask_BT).sum().backward()
    return logp_BT.detach() * mask_BT, [p.grad.clone() for p in model.parameters()]


def test_fused_head_and_shared_prompt_match_the_plain_forward(tiny_llama):
    model, tok = tiny_llama
    ro = _rollout(model, tok)
    assert ro.lengths_B.min() < ro.lengths_B.max()  # padding inside the completions too
    model.train()
    w_BT = torch.randn(ro.completion_ids_BT.shape)
    want, want_g = _logprobs_and_grads(model, ro, w_BT, **PLAIN)
    for kw in (dict(share_prompt=False), dict(fused_head=False), {}):  # {}: the default, both on
        got, got_g = _logprobs_and_grads(model, ro, w_BT, **kw)
        assert torch.allclose(got, want, atol=1e-5), kw
        assert all(torch.allclose(a, b, atol=1e-5, rtol=1e-4) for a, b in zip(got_g, want_g)), kw
    assert _SPLIT_CHECKED[model] == {True: None, False: None}  # the split path was checked and taken
    part = ro.select(torch.tensor([7, 3, 4, 0]))  # mixed prompts, trimmed columns
    got = policy_logprobs_BT(model, part)
    want = policy_logprobs_BT(model, part, **PLAIN)
    assert torch.allclose(got, want * part.completion_mask_BT, atol=1e-5)


def test_heads_the_split_cannot_reproduce_fall_back_to_the_model_forward_and_say_why_once(tiny_llama, caplog):
    model, tok = tiny_llama
    ro = _rollout(model, tok)
    fallback._NOTED.clear()

    class Scaled(torch.nn.Linear):  # a head that scales logits: the split path would be wrong
        def forward(self, x):
            return 0.5 * super().forward(x)

    head = model.lm_head
    scaled = Scaled(head.in_features, head.out_features, bias=False)
    scaled.weight = head.weight
    model.lm_head = scaled
    with caplog.at_level(logging.WARNING, logger="grpokit"):
        got = policy_logprobs_BT(model, ro)
        policy_logprobs_BT(model, ro)
        assert torch.equal(got, policy_logprobs_BT(model, ro, **PLAIN))
        # a plain Linear whose output a hook scales: only the numerical check can tell
        model.lm_head = head
        head.register_forward_hook(lambda module, args, out: 0.5 * out)
        _SPLIT_CHECKED.pop(model, None)
        got = policy_logprobs_BT(model, ro)
        policy_logprobs_BT(model, ro)
        assert torch.equal(got, policy_logprobs_BT(model, ro, **PLAIN))
    said = [r.getMessage() for r in caplog.records if forward.FALLBACK in r.getMessage()]
    assert len(said) == 2, said  # once per reason
    assert "the output layer is a Scaled, not a bias-free torch.nn.Linear" in said[0]
    assert "differs from the model's forward by" in said[1]


def test_a_model_sharded_with_fsdp_decodes_and_updates_through_its_own_forward(tiny_llama, caplog):
    """FSDP gathers weights in the model's own forward, so neither fast path may run; the real
    sharded runs are in test_distributed.py. Here a model of FSDP's class stands in for one."""
    from torch.distributed.fsdp import FSDPModule

    model, tok = tiny_llama
    plain = _rollout(model, tok)
    want = policy_logprobs_BT(model, plain, **PLAIN)
    fallback._NOTED.clear()
    cls = type(model)
    model.__class__ = type("FSDP" + cls.__name__, (FSDPModule, cls), {})  # what fully_shard does to the class
    with caplog.at_level(logging.WARNING, logger="grpokit"):
        assert decoders.choose_decoder(model, 20) is decoders.ModelDecoder
        ro = _rollout(model, tok)
        got = policy_logprobs_BT(model, ro)
    model.__class__ = cls
    assert torch.equal(ro.completion_ids_BT, plain.completion_ids_BT) and torch.equal(got, want)
    said = [r.getMessage() for r in caplog.records]
    assert sum("not the lean decoder (the model is sharded with FSDP" in m for m in said) == 1, said
    assert sum(forward.FALLBACK in m and "sharded with FSDP" in m for m in said) == 1, said


def test_trainer_loss_and_update_match_with_the_fast_update_paths(arithmetic_model_dir, monkeypatch):
    import grpokit.train.trainer
    from grpokit.config import Config
    from grpokit.models.loading import load_tokenizer
    from grpokit.rewards import RewardScorer
    from grpokit.tasks.arithmetic import ArithmeticSpec, split_problems
    from grpokit.train.trainer import Trainer
    from transformers import AutoModelForCausalLM

    def run(fast: bool):
        cfg = Config()
        cfg.rollout.prompts_per_step, cfg.rollout.group_size = 4, 4
        cfg.train.micro_batch_size, cfg.algo.mu = 6, 2  # several micro-batches; old log-probs kept
        if not fast:
            monkeypatch.setattr(grpokit.train.trainer, "policy_logprobs_BT",
                                functools.partial(policy_logprobs_BT, **PLAIN))
        tok = load_tokenizer(str(arithmetic_model_dir))
        model = AutoModelForCausalLM.from_pretrained(arithmetic_model_dir, dtype=torch.float32)
        examples = split_problems(ArithmeticSpec())["train"][:50]
        trainer = Trainer(cfg, model, tok, examples, RewardScorer(["arithmetic"], [1.0]))
        stats = [trainer.step() for _ in range(2)]
        if fast:  # the split path was checked against the model's own forward and taken
            assert _SPLIT_CHECKED[model] == {True: None}
        monkeypatch.undo()
        return stats, [p.detach().clone() for p in model.parameters()]

    (plain, p_plain), (fast, p_fast) = run(False), run(True)
    for a, b in zip(plain, fast):
        assert abs(a["update/loss"] - b["update/loss"]) < 1e-5
        assert abs(a["update/clipped_share"] - b["update/clipped_share"]) < 1e-6
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(p_plain, p_fast))


def test_a_bf16_model_whose_head_rounds_differently_takes_the_fused_head_and_a_scaled_one_falls_back(tiny_llama, caplog):
    """On a GPU the model's bf16 logits and the fused head's come from different kernels, which
    round differently (an H200 run of benchmarks/gpu_step.py saw 0.078 in log-prob, over the old
    fixed 0.05, and lost the fused head). A hook perturbing the model's logits by half a bf16 eps
    stands in for that here: the check allows it, and still catches a head that scales by 0.9."""
    from grpokit.policy.forward import completion_logits_BTV

    model, tok = tiny_llama
    model = model.to(torch.bfloat16)
    with torch.no_grad():  # logits of ~12, as trained models have
        model.lm_head.weight.mul_(12 / completion_logits_BTV(model, _rollout(model, tok)).abs().max())
    ro = _rollout(model, tok, temperature=2.0)  # varied tokens, log-probs far from 0
    half_eps = torch.finfo(torch.bfloat16).eps / 2
    signs = {}

    def rounds_differently(module, args, out):
        sign = signs.setdefault(out.shape, torch.randint(0, 2, out.shape, generator=torch.Generator().manual_seed(1)) * 2 - 1)
        return (out.float() * (1 + half_eps * sign)).to(out.dtype)

    handle = model.lm_head.register_forward_hook(rounds_differently)
    fallback._NOTED.clear()
    with caplog.at_level(logging.WARNING, logger="grpokit"):
        got = policy_logprobs_BT(model, ro)
        assert _SPLIT_CHECKED[model] == {True: None}  # the fused head and shared prompt were taken
        want = policy_logprobs_BT(model, ro, **PLAIN) * ro.completion_mask_BT
        assert float((got - want).abs().max().detach()) > 0.05  # what the old fixed tolerance refused
        handle.remove()
        model.lm_head.register_forward_hook(lambda module, args, out: 0.9 * out)
        _SPLIT_CHECKED.pop(model, None)
        policy_logprobs_BT(model, ro)
    said = [r.getMessage() for r in caplog.records if forward.FALLBACK in r.getMessage()]
    assert len(said) == 1 and "differs from the model's forward by" in said[0], said


def test_rounding_tolerance_by_dtype():
    from grpokit.policy.forward import rounding_tolerance

    assert rounding_tolerance(torch.float32, 30.0) == 1e-4 + 2 * 2**-23 * 30.0
    assert rounding_tolerance(torch.bfloat16, 30.0) == 1e-4 + 2 * 2**-7 * 30.0  # 0.4689
