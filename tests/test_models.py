"""Model config, tokenizer padding, loading options, adapters and their targets."""

from __future__ import annotations

import pytest
import torch

from grpokit.config import Config, ModelConfig, validate
from grpokit.errors import ConfigError
from grpokit.models.loading import (
    choose_pad_token, load_model, load_tokenizer, lora_config, prepare_model, resolve_device,
)
from grpokit.policy.reference import build_reference
from tests.model_helpers import save_tiny_llama


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama")


def _cfg(path, **fields) -> ModelConfig:
    return ModelConfig(name_or_path=str(path), device="cpu", **fields)


@pytest.mark.parametrize("field, value, message", [
    ("mode", "qlorra", "did you mean 'qlora'"),
    ("dtype", "float32", "model.dtype"),
    ("quant_compute_dtype", "int8", "model.quant_compute_dtype"),
    ("quant_type", "int4", "model.quant_type"),
    ("device", "gpu", "model.device"),
    ("lora_r", 0, "model.lora_r"),
    ("lora_alpha", -1, "model.lora_alpha"),
    ("lora_dropout", 1.0, "model.lora_dropout"),
    ("lora_target", [], "model.lora_target"),
    ("lora_target", ["all-linear", "q_proj"], "cannot be combined"),
    ("name_or_path", " ", "model.name_or_path"),
])
def test_bad_model_fields_are_named(field, value, message):
    cfg = Config()
    setattr(cfg.model, field, value)
    with pytest.raises(ConfigError, match=message):
        validate(cfg)


def test_textbook_lora_defaults_and_all_linear():
    lc = lora_config(ModelConfig())
    assert (lc.r, lc.lora_alpha, lc.lora_dropout) == (64, 16, 0.05)
    assert set(lc.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert ModelConfig().trust_remote_code is False
    for spelled in ("all-linear", ["all-linear"]):  # YAML string or CLI list
        assert lora_config(ModelConfig(lora_target=spelled)).target_modules == "all-linear"


def test_all_linear_wraps_the_mlp_too_and_a_missing_target_is_named(tiny_dir):
    model = prepare_model(load_model(str(tiny_dir), _cfg(tiny_dir)), _cfg(tiny_dir, mode="lora", lora_target=["all-linear"]))
    wrapped = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n, _ in model.named_parameters() if "lora_A" in n}
    assert wrapped == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    with pytest.raises(ConfigError, match="model.lora_target"):
        prepare_model(load_model(str(tiny_dir), _cfg(tiny_dir)), _cfg(tiny_dir, mode="lora", lora_target=["qkv"]))


def test_pad_token_is_distinct_from_eos_when_the_vocabulary_allows():
    from grpokit.tasks.arithmetic import build_tokenizer

    tok = build_tokenizer()
    tok.pad_token = tok.eos_token  # what many checkpoints ship
    choose_pad_token(tok)
    assert tok.pad_token == "<pad>" and tok.pad_token_id != tok.eos_token_id


def test_pad_token_falls_back_to_eos_without_a_spare_token():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel(vocab={"a": 0, "</s>": 1}, unk_token=None))
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="</s>")
    assert tok.pad_token_id is None
    choose_pad_token(tok)
    assert tok.pad_token_id == tok.eos_token_id  # masks come from lengths, so this is safe


def test_loaded_tokenizer_pads_on_the_left(tiny_dir):
    tok = load_tokenizer(str(tiny_dir))
    batch = tok(["12", "1234"], padding=True)
    assert tok.padding_side == "left" and batch["attention_mask"][0][:2] == [0, 0]


def test_dtype_and_attention_implementation_reach_the_model(tiny_dir):
    model = load_model(str(tiny_dir), _cfg(tiny_dir, dtype="bf16", attn_implementation="eager"))
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.config._attn_implementation == "eager"
    assert next(model.parameters()).device.type == "cpu"


def test_hub_options_are_passed_and_remote_code_is_off_by_default(monkeypatch, tiny_dir):
    from transformers import AutoModelForCausalLM

    seen = {}
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", lambda path, **kw: seen.update(kw, path=path))
    load_model("org/some-model", ModelConfig(name_or_path="org/some-model", device="cpu", revision="v1.0"))
    assert seen["path"] == "org/some-model" and seen["revision"] == "v1.0"
    assert seen["trust_remote_code"] is False and "attn_implementation" not in seen


def test_auto_device_prefers_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"


def test_qlora_without_bitsandbytes_is_a_config_error(monkeypatch, tiny_dir):
    import sys

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    with pytest.raises(ConfigError, match="model.mode: qlora needs bitsandbytes"):
        load_model(str(tiny_dir), _cfg(tiny_dir, mode="qlora"))


def test_qlora_base_is_4bit_nf4_with_double_quant(tiny_dir):
    model = load_model(str(tiny_dir), _cfg(tiny_dir, mode="qlora", quant_compute_dtype="bf16"))
    q = model.model.layers[0].self_attn.q_proj
    assert type(q).__name__ == "Linear4bit" and q.compute_dtype == torch.bfloat16
    state = q.weight.quant_state
    assert state.quant_type == "nf4" and state.nested  # nested = double quantization
    assert type(model.lm_head).__name__ == "Linear"  # the output layer stays in full precision


def test_no_reference_and_no_copy_when_beta_is_zero(monkeypatch, tiny_dir):
    import copy

    model = load_model(str(tiny_dir), _cfg(tiny_dir))
    monkeypatch.setattr(copy, "deepcopy", lambda *a, **k: pytest.fail("copied the model"))
    assert build_reference(model, Config()) is None  # algo.beta defaults to 0


def _lora_grads(model, ids):
    model.train()
    model.zero_grad(set_to_none=True)
    model(input_ids=ids).logits.float().pow(2).mean().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("mode", ["lora", "qlora"])
def test_gradient_checkpointing_gives_the_same_gradients(tiny_dir, mode):
    ids = torch.tensor([[1, 5, 6, 7, 8, 9], [1, 9, 8, 7, 6, 5]])
    grads = []
    for checkpointing in (False, True):
        cfg = _cfg(tiny_dir, mode=mode, lora_dropout=0.0, gradient_checkpointing=checkpointing)
        torch.manual_seed(0)
        model = prepare_model(load_model(str(tiny_dir), cfg), cfg)
        with torch.no_grad():  # a non-zero adapter, the same in both
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.copy_(torch.linspace(-0.1, 0.1, p.numel()).view_as(p))
        assert model.get_base_model().is_activation_checkpointing == checkpointing
        grads.append(_lora_grads(model, ids))
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 0
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-5)


def test_qlora_gradients_survive_an_eval_forward(tiny_dir):
    """bitsandbytes repacks 4-bit weights for a CPU inference kernel on its first eval forward
    (AVX512-BF16 CPUs); training afterwards must still get the true gradients (see
    grpokit.models.loading.keep_4bit_layout). Elsewhere the repack never happens and this passes as is."""
    cfg = _cfg(tiny_dir, mode="qlora", lora_dropout=0.0)
    model = prepare_model(load_model(str(tiny_dir), cfg), cfg)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    ids = torch.tensor([[1, 5, 6, 7, 8, 9]])
    before = _lora_grads(model, ids)
    model.eval()
    with torch.no_grad():
        model(input_ids=ids)
    after = _lora_grads(model, ids)
    for name in before:
        assert torch.equal(after[name], before[name]), name
