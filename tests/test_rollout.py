"""Level 2: rollout and log-probs with a tiny model."""

import torch

from grpokit.policy.forward import policy_logprobs_BT
from grpokit.rollout.decoders import Decoder, ModelDecoder
from grpokit.rollout.generate import generate


def _prompts(tok):
    from grpokit.data.records import example_prompt_ids

    return [example_prompt_ids(tok, {"prompt": p}) for p in ["1+2", "34+56", "7+80"]]


def _plain_logprobs(model, prompt, completion, temperature):
    """One unpadded forward over prompt + completion; log-probs of the completion tokens."""
    ids = torch.tensor([prompt + completion])
    logits = model(input_ids=ids).logits[0].float() / temperature
    logp = torch.log_softmax(logits, -1)
    return torch.stack([logp[len(prompt) + t - 1, tok] for t, tok in enumerate(completion)])


def test_loss_logprobs_equal_plain_forward_and_mask_covers_eos_not_padding(tiny_llama):
    model, tok = tiny_llama
    prompts = _prompts(tok)
    g = torch.Generator().manual_seed(0)
    ro = generate(model, prompts, group_size=4, max_new_tokens=6, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id,
                  temperature=0.9, generator=g)
    assert ro.completion_ids_BT.shape[0] == 12
    logp_BT = policy_logprobs_BT(model, ro, temperature=0.9)
    mask = ro.completion_mask_BT
    for b in range(12):
        n = int(ro.lengths_B[b])
        comp = ro.completion_ids_BT[b, :n].tolist()
        if ro.ended_B[b]:
            assert comp[-1] == tok.eos_token_id and mask[b, n - 1] == 1  # EOS is inside the loss
        assert tok.eos_token_id not in comp[:-1]
        assert torch.all(mask[b, n:] == 0) and torch.all(ro.completion_ids_BT[b, n:] == tok.pad_token_id)
        want = _plain_logprobs(model, prompts[b // 4], comp, 0.9)
        assert torch.allclose(logp_BT[b, :n], want, atol=1e-5), b


def test_rows_are_grouped_by_prompt_and_truncation_is_reported(tiny_llama):
    model, tok = tiny_llama
    prompts = _prompts(tok)
    ro = generate(model, prompts, group_size=3, max_new_tokens=2, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id,
                  min_new_tokens=2, generator=torch.Generator().manual_seed(1))
    # EOS forbidden for the whole budget: every row is truncated at exactly 2 tokens
    assert ro.lengths_B.tolist() == [2] * 9 and not ro.ended_B.any()
    for b in range(9):
        real = ro.prompt_ids_BL[b][ro.prompt_mask_BL[b].bool()].tolist()
        assert real == prompts[b // 3]


def test_shared_prefill_samples_the_same_tokens(tiny_llama):
    model, tok = tiny_llama
    kw = dict(group_size=4, max_new_tokens=5, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id, temperature=1.0)
    a = generate(model, _prompts(tok), share_prefill=True, generator=torch.Generator().manual_seed(5), **kw)
    b = generate(model, _prompts(tok), share_prefill=False, generator=torch.Generator().manual_seed(5), **kw)
    assert torch.equal(a.completion_ids_BT, b.completion_ids_BT)
    assert torch.equal(a.lengths_B, b.lengths_B)


def test_generation_runs_in_eval_mode_and_restores_training(tiny_llama):
    model, tok = tiny_llama
    seen = []
    hook = model.model.layers[0].register_forward_hook(lambda m, i, o: seen.append(m.training))
    model.train()
    generate(model, _prompts(tok), group_size=2, max_new_tokens=2, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id)
    hook.remove()
    assert seen and not any(seen) and model.training


def test_select_trims_shared_padding_without_changing_logprobs(tiny_llama):
    model, tok = tiny_llama
    ids = tok.convert_tokens_to_ids
    prompts = [[tok.bos_token_id, ids("<|user|>"), ids("7"), ids("<|assistant|>")],
               [tok.bos_token_id, ids("<|user|>"), *ids(list("12+345")), ids("<|assistant|>")]]
    ro = generate(model, prompts, group_size=2, max_new_tokens=6, eos_id=tok.eos_token_id,
                  pad_id=tok.pad_token_id, generator=torch.Generator().manual_seed(2))
    full = policy_logprobs_BT(model, ro)
    rows = torch.tensor([0, 1])  # the shorter prompt (4 tokens of 9): left padding columns can go
    part = ro.select(rows)
    assert part.prompt_ids_BL.shape[1] == 4 and ro.prompt_ids_BL.shape[1] == 9
    got = policy_logprobs_BT(model, part)
    T = got.shape[1]
    assert torch.allclose(got * part.completion_mask_BT, full[rows, :T] * part.completion_mask_BT, atol=1e-5)


def test_any_decoder_factory_plugs_into_generate_through_the_protocol(tiny_llama):
    """The seam for other engines: generate() only calls the factory, logits_BV() and feed()."""
    model, tok = tiny_llama
    calls = []

    class Counting:  # wraps the model's own decoder; not a subclass of anything
        def __init__(self, *args):
            self.inner: Decoder = ModelDecoder(*args)
            calls.append(("build", args[-2], args[-1]))

        def logits_BV(self):
            calls.append("logits")
            return self.inner.logits_BV()

        def feed(self, tok_B, finished_B):
            calls.append("feed")
            self.inner.feed(tok_B, finished_B)

    kw = dict(group_size=3, max_new_tokens=4, min_new_tokens=4, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id)
    got = generate(model, _prompts(tok), decoder=Counting, generator=torch.Generator().manual_seed(4), **kw)
    want = generate(model, _prompts(tok), generator=torch.Generator().manual_seed(4), **kw)  # the lean decoder
    assert torch.equal(got.completion_ids_BT, want.completion_ids_BT)
    assert calls == [("build", 3, 4)] + ["logits", "feed"] * 3 + ["logits"]  # no feed after the last token
