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
