"""Level 2: the lean decode step (the default decoder for Llama-family models) computes the
model's own next-token logits, gives the same rollouts as the model's forward, and refuses,
with the reason logged once, any model it cannot run exactly."""

import logging

import pytest
import torch

from grpokit.config import Config
from grpokit.rollout import decoders, fallback
from grpokit.rollout.decoders import ModelDecoder, choose_decoder
from grpokit.rollout.generate import generate, left_pad, positions_from_mask
from grpokit.rollout.lean import LeanDecoder, why_not_lean

VOCAB = 40


def _model(kind: str, **extra):
    """A random tiny model of one architecture: 2 layers, 4 query heads over 2 key/value heads,
    weights large enough that attention is far from uniform."""
    import transformers

    configs = {"llama": "LlamaConfig", "qwen2": "Qwen2Config", "qwen3": "Qwen3Config", "mistral": "MistralConfig"}
    kw = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=64, initializer_range=0.3, tie_word_embeddings=False,
              pad_token_id=0, bos_token_id=1, eos_token_id=2)
    if kind == "mistral":
        kw["sliding_window"] = None
    config = getattr(transformers, configs[kind])(**{**kw, **extra})
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    if kind == "qwen2":  # its q/k/v biases start at zero: make them count
        for layer in model.model.layers:
            torch.nn.init.normal_(layer.self_attn.q_proj.bias, std=0.5)
            torch.nn.init.normal_(layer.self_attn.k_proj.bias, std=0.5)
    return model


PROMPTS = [[1, 5, 6, 7, 8, 9], [1, 10, 11], [1, 12, 13, 14]]  # ragged: left padding in play


def _lean_error(model, G: int = 2, T: int = 5) -> tuple[float, float]:
    """(largest |lean logit - model forward logit| over every row and step of a decode of random
    tokens after PROMPTS; spread of the last step's lean logits)."""
    ids_PL, mask_PL = left_pad(PROMPTS, 0, "cpu")
    dec = LeanDecoder(model, ids_PL, mask_PL, positions_from_mask(mask_PL), G, T)
    tokens_BT = torch.randint(3, VOCAB, (len(PROMPTS) * G, T), generator=torch.Generator().manual_seed(1))
    worst = 0.0
    with torch.no_grad():  # (the decoder runs under generate's no_grad)
        for t in range(T):
            got_BV = dec.logits_BV()
            for b in range(tokens_BT.shape[0]):
                seq = torch.tensor(PROMPTS[b // G] + tokens_BT[b, :t].tolist())[None]
                want_V = model(input_ids=seq).logits[0, -1]
                worst = max(worst, float((got_BV[b] - want_V).abs().max()))
            dec.feed(tokens_BT[:, t])
        return worst, float(dec.logits_BV().std())


@pytest.fixture(params=["packed", "F.linear"])
def packing(request, monkeypatch):
    """Both ways the lean decoder multiplies: every weight packed for oneDNN (the tiny test models'
    weights are below the size where packing pays, so it is forced), and F.linear."""
    from grpokit.rollout import lean

    monkeypatch.setattr(lean, "PACK_MIN_ELEMENTS", 0 if request.param == "packed" else 1 << 62)
    return request.param


@pytest.mark.parametrize("kind", ["llama", "qwen2", "qwen3", "mistral"])
def test_lean_logits_equal_the_models_forward_on_each_unpadded_row(kind, packing):
    model = _model(kind)
    assert why_not_lean(model, 20) is None
    worst, spread = _lean_error(model)
    assert worst < 1e-5, worst
    assert spread > 0.5  # the logits are far from flat: the comparison has teeth


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"]


@pytest.mark.parametrize("kind", ["llama", "qwen3"])
def test_lean_logits_with_a_lora_adapter_equal_the_peft_models_forward(kind, packing):
    from peft import LoraConfig, get_peft_model

    # init_lora_weights=False: B is random, not zero, so the adapter changes every projection
    model = get_peft_model(_model(kind), LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS,
                                                    init_lora_weights=False)).eval()
    assert why_not_lean(model, 20) is None and choose_decoder(model, 20) is LeanDecoder
    worst, _ = _lean_error(model)
    assert worst < 1e-5, worst
    ids_PL, mask_PL = left_pad(PROMPTS, 0, "cpu")
    with torch.no_grad():
        adapted_BV = LeanDecoder(model, ids_PL, mask_PL, positions_from_mask(mask_PL), 1, 1).logits_BV()
        with model.disable_adapter():  # the base model alone: the lean decoder must follow
            assert _lean_error(model)[0] < 1e-5
            base_BV = LeanDecoder(model, ids_PL, mask_PL, positions_from_mask(mask_PL), 1, 1).logits_BV()
    assert float((adapted_BV - base_BV).abs().max()) > 0.1  # the adapter counts: the check has teeth
    kw = dict(group_size=3, max_new_tokens=6, eos_id=2, pad_id=0)
    a = generate(model, PROMPTS, generator=torch.Generator().manual_seed(3), decoder=ModelDecoder, **kw)
    b = generate(model, PROMPTS, generator=torch.Generator().manual_seed(3), **kw)  # the lean decoder
    assert torch.equal(a.completion_ids_BT, b.completion_ids_BT) and torch.equal(a.lengths_B, b.lengths_B)
    model.merge_adapter()  # merged into the base weights: added once, not twice
    assert _lean_error(model)[0] < 1e-4  # (the merged weights round differently)


def test_lean_rollout_equals_the_models_own_decoding(tiny_llama):
    model, tok = tiny_llama
    from grpokit.data.records import example_prompt_ids

    prompts = [example_prompt_ids(tok, {"prompt": p}) for p in ["1+2", "34+56", "7+80"]]
    assert choose_decoder(model, 30) is LeanDecoder  # the default for this model
    for temperature, min_new in ((1.0, 3), (0.8, 0), (0.0, 0)):
        kw = dict(group_size=4, max_new_tokens=8, min_new_tokens=min_new, eos_id=tok.eos_token_id,
                  pad_id=tok.pad_token_id, temperature=temperature)
        a = generate(model, prompts, generator=torch.Generator().manual_seed(3), decoder=ModelDecoder, **kw)
        b = generate(model, prompts, generator=torch.Generator().manual_seed(3), **kw)
        assert torch.equal(a.completion_ids_BT, b.completion_ids_BT), temperature
        assert torch.equal(a.lengths_B, b.lengths_B) and torch.equal(a.ended_B, b.ended_B)
        assert (a.lengths_B >= min_new).all()
        assert a.ended_B.any() or temperature == 0  # sampled rows stopped at EOS along the way
        if temperature > 0:  # after EOS a row's values are padding, computed differently by each path
            real_BT = a.completion_mask_BT.bool()
            assert torch.allclose(a.entropy_BT[real_BT], b.entropy_BT[real_BT], atol=1e-5)
    c = generate(model, prompts, generator=torch.Generator().manual_seed(3), share_prefill=False, **kw)
    assert torch.equal(a.completion_ids_BT, c.completion_ids_BT)


def test_models_it_cannot_run_fall_back_with_the_reason_logged_once(caplog):
    from peft import LoraConfig, PrefixTuningConfig, get_peft_model
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=16, n_layer=1, n_head=2, n_positions=32))
    assert "model type 'gpt2'" in why_not_lean(gpt2, 10)
    assert "sliding window 8 < 20" in why_not_lean(_model("mistral", sliding_window=8), 20)
    assert why_not_lean(_model("mistral", sliding_window=8), 8) is None
    dora = get_peft_model(_model("llama"), LoraConfig(r=2, target_modules=["q_proj", "v_proj"], use_dora=True))
    assert "(DoRA?), not plain LoRA" in why_not_lean(dora, 10)
    prefix = get_peft_model(_model("llama"), PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2))
    assert "PEFT adapter of type PREFIX_TUNING" in why_not_lean(prefix, 10)
    fallback._NOTED.clear()
    kw = dict(group_size=2, max_new_tokens=3, eos_id=2, pad_id=0)
    with caplog.at_level(logging.WARNING, logger="grpokit"):
        got = [generate(gpt2, [[1, 5, 6]], generator=torch.Generator().manual_seed(0), **kw) for _ in range(2)]
    said = [r.getMessage() for r in caplog.records if r.name == "grpokit"]
    assert len(said) == 1 and "model's own forward, not the lean decoder (model type 'gpt2'" in said[0], said
    want = generate(gpt2, [[1, 5, 6]], generator=torch.Generator().manual_seed(0), decoder=ModelDecoder, **kw)
    assert torch.equal(got[0].completion_ids_BT, want.completion_ids_BT)


def test_a_run_decodes_rollouts_and_its_evaluations_with_the_lean_step(arithmetic_model_dir, tmp_path, monkeypatch):
    from grpokit.train.run import run_training

    built = []

    class Recording(LeanDecoder):
        def __init__(self, *args):
            built.append(args[-2:])  # (group size, max new tokens)
            super().__init__(*args)

    monkeypatch.setattr(decoders, "LeanDecoder", Recording)
    cfg = Config(output_dir=str(tmp_path / "run"))
    cfg.model.name_or_path = str(arithmetic_model_dir)
    cfg.rollout.prompts_per_step, cfg.rollout.group_size = 2, 2
    cfg.train.steps, cfg.train.eval_every = 1, 0
    cfg.log.progress, cfg.log.plot, cfg.log.tensorboard = False, False, False
    run_training(cfg, log=lambda *a: None)
    assert (2, cfg.rollout.max_new_tokens) in built  # the step's rollout (G = 2)
    assert len(built) >= 3, built  # and the evaluations before and after (G = 1)


def test_weights_large_enough_are_packed_on_a_cpu_and_a_failing_op_falls_back_with_the_reason_logged(
        monkeypatch, caplog):
    from grpokit.rollout import lean

    # a 4096 x 64 head (2^18 weights) is packed; the 64-wide layers' projections are too small to pay
    model = _model("llama", vocab_size=4096, hidden_size=64, intermediate_size=96)
    ids_PL, mask_PL = left_pad(PROMPTS, 0, "cpu")
    build = lambda m: LeanDecoder(m, ids_PL, mask_PL, positions_from_mask(mask_PL), 2, 3)  # noqa: E731
    dec = build(model)
    assert dec.head.packed is not None and not any(p.packed is not None for layer in dec.proj for p in layer)
    assert build(_model("llama", vocab_size=4096, hidden_size=64).to(torch.bfloat16)).head.packed is None  # fp32 only
    # a torch build whose oneDNN op fails: F.linear instead, said once, the same logits
    monkeypatch.setattr(lean, "_PACKED_OK", [])

    def broken(*args):
        raise RuntimeError("no oneDNN in this build")

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", broken)
    fallback._NOTED.clear()
    with caplog.at_level(logging.WARNING, logger="grpokit"):
        assert build(model).head.packed is None and build(model).head.packed is None
        worst, _ = _lean_error(model)
    said = [r.getMessage() for r in caplog.records if r.name == "grpokit"]
    assert said == ["grpokit: rollout: the lean decoder multiplies by torch's matmul, not oneDNN's packed "
                    "weights (RuntimeError: no oneDNN in this build)"], said
    assert worst < 5e-5  # this model's logits reach ~10: float rounding, 5e-6 of their size
