"""Full / LoRA / QLoRA on the warm-started demo model: two GRPO steps each, what changes, the
KL reference, and the saved folders reloaded with peft and with plain transformers.

Tolerances (fp32 on CPU): a reloaded adapter gives the trained model's log-probs to 1e-6
(measured: identical); the merged model matches the adapter model to 1e-4 (measured ~5e-7:
W x + s B A x and (W + s B A) x round differently). The adapter-off reference equals the base
model exactly (torch.equal)."""

from __future__ import annotations

import json

import pytest
import torch

from grpokit.config import load_yaml, to_dict
from grpokit.models.loading import load_model, save_outputs
from grpokit.policy.reference import build_reference
from tests.model_helpers import digests, grpo_config, load_prepared, logprobs, sample_rollout, two_grpo_steps

MODES = ["full", "lora", "qlora"]


def _train(mode: str, model_dir, tmp_path) -> dict:
    """A model of `mode` after two GRPO steps with the KL term on (beta > 0), then saved."""
    cfg = grpo_config(model_dir, mode, beta=0.05)
    cfg.model.save_merged = True
    model, tok = load_prepared(cfg)
    ref = build_reference(model, cfg)
    before = digests(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    trainer = two_grpo_steps(model, tok, cfg, reference=ref)
    out = tmp_path / "model"
    save_outputs(model, tok, cfg, out)
    return dict(mode=mode, cfg=cfg, model=model, tok=tok, ref=ref, before=before, after=digests(model),
                trainable=trainable, trainer=trainer, out=out, rollout=sample_rollout(model, tok))


@pytest.mark.parametrize("mode", MODES)
def test_two_grpo_steps_then_reference_and_saved_folders(mode, arithmetic_model_dir, tmp_path):
    """One run per mode (the checks share it; under xdist a shared fixture would be rebuilt)."""
    trained = _train(mode, arithmetic_model_dir, tmp_path)
    check_exactly_the_trainable_parameters_change(trained)
    check_only_trainable_weights_reach_the_optimizer(trained)
    check_reference_is_the_untrained_base_exactly(trained, arithmetic_model_dir)
    check_saved_folder_reloads_with_the_same_logprobs(trained, arithmetic_model_dir)
    check_merged_model_loads_with_plain_transformers_and_matches(trained)
    check_load_trained_puts_the_adapter_back_as_it_was_trained(trained)


def check_exactly_the_trainable_parameters_change(trained):
    before, after, trainable = trained["before"], trained["after"], trained["trainable"]
    changed = {n for n in before if before[n] != after[n]}
    assert all(r["update/seqs"] > 0 for r in trained["trainer"].rows)
    if trained["mode"] == "full":
        assert trainable == set(before)
        assert changed == set(before), sorted(set(before) - changed)
    else:
        assert trainable and all("lora_" in n for n in trainable)
        assert changed == trainable, (sorted(trainable - changed), sorted(changed - trainable))
        frozen = set(before) - trainable
        assert len(frozen) > len(trainable)  # the base weights: checksums identical before and after


def check_only_trainable_weights_reach_the_optimizer(trained):
    optimised = {id(p) for g in trained["trainer"].optimizer.param_groups for p in g["params"]}
    names = {n for n, p in trained["model"].named_parameters() if id(p) in optimised}
    assert names == trained["trainable"]


def check_reference_is_the_untrained_base_exactly(trained, arithmetic_model_dir):
    """lora/qlora: the adapter switched off; full: a frozen copy made before the first step."""
    cfg, rollout = trained["cfg"], trained["rollout"]
    fresh_cfg = grpo_config(arithmetic_model_dir, "qlora" if trained["mode"] == "qlora" else "full")
    base = load_model(str(arithmetic_model_dir), fresh_cfg.model)  # the untouched model, 4-bit for qlora
    # Frozen, as a reference is: torch folds a matmul over a non-contiguous input (logits_to_keep)
    # differently when the weight requires grad, which moves log-probs by ~3e-6.
    base.requires_grad_(False)
    T = cfg.rollout.temperature
    ref_BT = trained["ref"].logprobs(rollout)
    assert not ref_BT.requires_grad
    assert torch.equal(ref_BT, logprobs(base, rollout, T))
    assert not torch.allclose(ref_BT, logprobs(trained["model"], rollout, T), atol=1e-4)  # training moved it
    if trained["mode"] == "full":
        assert not any(p.requires_grad for p in trained["ref"].frozen_copy.parameters())
    else:
        assert trained["ref"].frozen_copy is None and trained["ref"].model is trained["model"]  # no second copy


def _reload_adapter(trained, arithmetic_model_dir):
    from peft import PeftModel

    base_cfg = grpo_config(arithmetic_model_dir, trained["mode"]).model
    return PeftModel.from_pretrained(load_model(str(arithmetic_model_dir), base_cfg), str(trained["out"]))


def check_saved_folder_reloads_with_the_same_logprobs(trained, arithmetic_model_dir):
    from transformers import AutoModelForCausalLM

    out, rollout = trained["out"], trained["rollout"]
    expected = logprobs(trained["model"], rollout)
    if trained["mode"] == "full":
        assert not (out / "adapter_config.json").exists() and not (out / "merged").exists()
        reloaded = AutoModelForCausalLM.from_pretrained(out)
    else:
        assert (out / "adapter_config.json").is_file() and not (out / "config.json").exists()
        reloaded = _reload_adapter(trained, arithmetic_model_dir)
    torch.testing.assert_close(logprobs(reloaded, rollout), expected, atol=1e-6, rtol=0)
    saved_cfg = load_yaml(out / "grpokit_config.yaml")  # usable as --config
    assert to_dict(saved_cfg) == to_dict(trained["cfg"])


def check_merged_model_loads_with_plain_transformers_and_matches(trained):
    if trained["mode"] == "full":
        return  # a full fine-tune is saved merged already (and writes no merged/, checked above)
    from transformers import AutoModelForCausalLM

    merged_dir = trained["out"] / "merged"
    config = json.loads((merged_dir / "config.json").read_text())
    assert "quantization_config" not in config and not (merged_dir / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    assert type(merged).__name__ == "LlamaForCausalLM"
    assert not any(p.__class__.__name__ == "Params4bit" for p in merged.parameters())
    rollout = trained["rollout"]
    torch.testing.assert_close(logprobs(merged, rollout), logprobs(trained["model"], rollout), atol=1e-4, rtol=0)


def check_load_trained_puts_the_adapter_back_as_it_was_trained(trained):
    from grpokit.models.loading import load_trained

    model, tok = load_trained(str(trained["out"]), device="cpu", log=lambda *a: None)
    if trained["mode"] == "qlora":  # the base comes back in 4 bits, as grpokit_config.yaml says
        assert getattr(model.get_base_model(), "is_loaded_in_4bit", False)
    assert tok.padding_side == "left"
    rollout = trained["rollout"]
    torch.testing.assert_close(logprobs(model, rollout), logprobs(trained["model"], rollout), atol=1e-6, rtol=0)
