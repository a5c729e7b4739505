"""Level 2: the lean decoder against the model's own forward on LoRA set-ups that
tests/test_lean_decode.py does not cover (partial layers, the LM head or embeddings adapted,
modules_to_save, per-module ranks, rsLoRA, LoRA biases, several adapters, merged / disabled
adapters, adapters loaded from disk, bf16, packed weights, grpokit's own LoRA loading)."""

import pytest
import torch

from grpokit.rollout.decoders import ModelDecoder, choose_decoder
from grpokit.rollout.generate import generate, left_pad, positions_from_mask
from grpokit.rollout.lean import LeanDecoder, why_not_lean
from tests.test_lean_decode import PROMPTS, _lean_error, _model

ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _peft(kind="llama", model=None, **lora):
    from peft import LoraConfig, get_peft_model

    lora = {"r": 4, "lora_alpha": 8, "target_modules": ALL, "init_lora_weights": False, **lora}
    return get_peft_model(model if model is not None else _model(kind), LoraConfig(**lora)).eval()


def _same_rollouts(model, **extra):
    kw = dict(group_size=3, max_new_tokens=6, eos_id=2, pad_id=0, **extra)
    a = generate(model, PROMPTS, generator=torch.Generator().manual_seed(3), decoder=ModelDecoder, **kw)
    b = generate(model, PROMPTS, generator=torch.Generator().manual_seed(3), **kw)
    return torch.equal(a.completion_ids_BT, b.completion_ids_BT) and torch.equal(a.lengths_B, b.lengths_B)


def _base_gap(model) -> float:
    """How far the adapted model's first logits are from the base's (the check has teeth)."""
    ids_PL, mask_PL = left_pad(PROMPTS, 0, "cpu")
    with torch.no_grad():
        on = model(input_ids=ids_PL, attention_mask=mask_PL).logits[:, -1]
        with model.disable_adapter():
            off = model(input_ids=ids_PL, attention_mask=mask_PL).logits[:, -1]
    return float((on - off).abs().max())


CASES = {
    "layers_to_transform": dict(layers_to_transform=[1]),
    "lm_head_only": dict(target_modules=["lm_head"]),
    "embed_tokens": dict(target_modules=["embed_tokens", "q_proj"]),
    "rank_alpha_pattern": dict(rank_pattern={"q_proj": 2, "down_proj": 6}, alpha_pattern={"v_proj": 32}),
    "rslora": dict(use_rslora=True, r=16),
    "bias_all": dict(bias="all"),
    "bias_lora_only": dict(bias="lora_only"),
    "fan_in_fan_out": dict(fan_in_fan_out=True),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_lora_variants_of_targets_and_scaling(case, kind):
    model = _peft(kind, **CASES[case])
    assert why_not_lean(model, 20) is None
    worst, _ = _lean_error(model)
    print(case, kind, "worst", worst, "gap", _base_gap(model))
    assert worst < 1e-5, worst
    assert _same_rollouts(model)


def _perturb_saved(model, needle):
    """Give modules_to_save copies their own values (they start equal to the originals)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "modules_to_save" in name and needle in name:
                p.add_(torch.randn_like(p) * 0.5)


@pytest.mark.parametrize("saved", ["lm_head", "input_layernorm", "norm", "embed_tokens"])
def test_modules_to_save_are_computed_with_their_trained_copy_or_fall_back(saved):
    model = _peft("llama", modules_to_save=[saved])
    _perturb_saved(model, saved)
    reason = why_not_lean(model, 20)
    worst = None if reason else _lean_error(model)[0]
    print(saved, "reason", reason, "worst", worst, "gap", _base_gap(model))
    assert reason is not None or worst < 1e-5, worst
    assert _same_rollouts(model)


def test_lora_bias_on_qwen2():
    model = _peft("qwen2", lora_bias=True)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name and name.endswith("bias"):
                p.normal_(std=0.5)
    assert why_not_lean(model, 20) is None
    worst, _ = _lean_error(model)
    print("lora_bias worst", worst, "gap", _base_gap(model))
    assert worst < 1e-5 and _same_rollouts(model)


def _two_adapters(kind="llama"):
    from peft import LoraConfig

    model = _peft(kind)
    model.add_adapter("second", LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj", "lm_head"],
                                           init_lora_weights=False))
    return model.eval()


@pytest.mark.parametrize("how", ["second", "both", "merged_then_second", "merged_disabled", "unmerged"])
def test_several_adapters_merged_and_disabled(how):
    model = _two_adapters()
    if how == "second":
        model.set_adapter("second")
    elif how == "both":
        model.base_model.set_adapter(["default", "second"])
    elif how == "merged_then_second":
        model.merge_adapter()
        model.set_adapter("second")
    elif how == "unmerged":
        model.merge_adapter()
        model.unmerge_adapter()
    if how == "merged_disabled":
        model.merge_adapter()
        with model.disable_adapter():
            assert why_not_lean(model, 20) is None
            worst = _lean_error(model)[0]
            ok = _same_rollouts(model)
    else:
        assert why_not_lean(model, 20) is None
        worst = _lean_error(model)[0]
        ok = _same_rollouts(model)
    print(how, "worst", worst)
    assert worst < 1e-4 and ok, worst


def test_an_adapter_loaded_from_disk(tmp_path):
    from peft import PeftModel

    _peft("qwen3", target_modules=ALL + ["lm_head"]).save_pretrained(tmp_path / "a")
    model = PeftModel.from_pretrained(_model("qwen3"), tmp_path / "a").eval()
    assert why_not_lean(model, 20) is None
    worst = _lean_error(model)[0]
    print("from_pretrained worst", worst, "gap", _base_gap(model))
    assert worst < 1e-5 and _same_rollouts(model)


@pytest.mark.parametrize("targets", [["lm_head"], ALL + ["lm_head"]])
def test_a_merged_then_disabled_adapter_on_the_lm_head_is_not_in_the_lean_logits(targets):
    """peft's forward unmerges a merged adapter lazily, on a disabled layer's next call; the lean
    decoder's prefill never calls the LM head, so it must not read the head's merged weights."""
    def build():
        model = _peft("llama", target_modules=targets)
        model.merge_adapter()
        return model

    ids_PL, mask_PL = left_pad(PROMPTS, 0, "cpu")
    lean_model, want_model = build(), build()
    with torch.no_grad(), lean_model.disable_adapter(), want_model.disable_adapter():
        got_PV = LeanDecoder(lean_model, ids_PL, mask_PL, positions_from_mask(mask_PL), 1, 1).logits_BV()
        want_PV = ModelDecoder(want_model, ids_PL, mask_PL, positions_from_mask(mask_PL), 1, 1).logits_BV()
    worst = float((got_PV - want_PV).abs().max())
    print("merged+disabled lm_head worst", worst)
    assert worst < 1e-4, worst


def test_a_model_in_train_mode_with_lora_dropout_samples_without_dropout():
    model = _peft("llama", lora_dropout=0.5).train()
    kw = dict(group_size=3, max_new_tokens=6, eos_id=2, pad_id=0)
    a = generate(model.eval(), PROMPTS, generator=torch.Generator().manual_seed(3), decoder=ModelDecoder, **kw)
    b = generate(model.train(), PROMPTS, generator=torch.Generator().manual_seed(3), **kw)  # lean, in train mode
    assert model.training  # generate restores the mode
    assert torch.equal(a.completion_ids_BT, b.completion_ids_BT)


def test_bf16_model_with_lora():
    model = _peft("qwen3", model=_model("qwen3").to(torch.bfloat16), target_modules=ALL + ["lm_head"])
    assert why_not_lean(model, 20) is None
    worst, _ = _lean_error(model)
    print("bf16 worst", worst, "gap", _base_gap(model))
    assert worst < 0.1, worst  # bf16 rounding of logits ~10
    assert _same_rollouts(model, temperature=0.0)


def test_packed_weights_with_lora():
    from grpokit.rollout import lean

    base = _model("qwen2", vocab_size=4096, hidden_size=64, intermediate_size=4096)  # head and MLP packed
    model = _peft("qwen2", model=base, target_modules=ALL + ["lm_head"])
    ids_PL, mask_PL = left_pad(PROMPTS, 0, "cpu")
    dec = LeanDecoder(model, ids_PL, mask_PL, positions_from_mask(mask_PL), 2, 3)
    assert dec.head.packed is not None and dec.proj[0][4].packed is not None and dec.head.adapters
    assert lean.PACK_MIN_ELEMENTS == 1 << 18
    worst, _ = _lean_error(model)
    print("packed+lora worst", worst, "gap", _base_gap(model))
    assert worst < 5e-5, worst


@pytest.mark.parametrize("target", ["all-linear", "q_proj,v_proj"])
def test_grpokits_own_lora_model(target):
    from grpokit.config.sections import ModelConfig
    from grpokit.models.loading import prepare_model

    cfg = ModelConfig(mode="lora", lora_r=4, lora_alpha=8, lora_dropout=0.1,
                      lora_target="all-linear" if target == "all-linear" else target.split(","))
    model = prepare_model(_model("llama"), cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)
    assert choose_decoder(model, 20) is LeanDecoder, why_not_lean(model, 20)
    model.train()  # as the trainer leaves it
    worst, _ = _lean_error(model.eval())
    print(target, "grpokit lora worst", worst, "gap", _base_gap(model))
    assert worst < 1e-5 and _same_rollouts(model.train())


@pytest.mark.parametrize("extra", [dict(target_modules=ALL + ["embed_tokens"]),
                                   dict(trainable_token_indices={"embed_tokens": [5, 7, 12]})])
def test_tied_embeddings_with_lora_on_the_embeddings_or_trainable_tokens(extra):
    model = _peft("llama", model=_model("llama", tie_word_embeddings=True), **extra)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "trainable_tokens_delta" in name:
                p.normal_(std=1.0)
    reason = why_not_lean(model, 20)
    worst = None if reason else _lean_error(model)[0]
    print(extra, "reason", reason, "worst", worst, "gap", _base_gap(model))
    assert reason is not None or worst < 1e-5, worst
    assert _same_rollouts(model)
