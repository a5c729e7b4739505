"""LoRA runs continue from a saved adapter, merged models of a tied head re-tie right, and the
fixed old / reference log-probs are taken with dropout off (issue 17)."""

from __future__ import annotations

import json
from pathlib import Path

from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from grpokit.models.adapters import adapter_start
from grpokit.config import Config, ModelConfig
from grpokit.errors import ConfigError
from grpokit.models.loading import load_model, prepare_model, save_merged
from grpokit.train.run import run_training
from tests.model_helpers import grpo_config, load_prepared, two_grpo_steps

STORIES = Path(__file__).resolve().parents[1] / ".." / "shared" / "models" / "stories260K"


# --- continuing a saved adapter ----------------------------------------------------------------


def lora_run(model: str, out: Path, steps: int, **model_fields) -> dict:
    cfg = Config(output_dir=str(out))
    cfg.model.name_or_path, cfg.model.mode, cfg.model.device = model, "lora", "cpu"
    for key, value in model_fields.items():
        setattr(cfg.model, key, value)
    cfg.rollout.prompts_per_step, cfg.rollout.group_size = 4, 8
    cfg.train.steps, cfg.train.lr, cfg.train.warmup_steps, cfg.train.eval_every = steps, 1e-2, 0, 0
    cfg.data.eval_size = 64
    cfg.log.progress = cfg.log.plot = cfg.log.tensorboard = False
    return run_training(cfg, log=lambda *a: None)


def adapter_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "adapter_model.safetensors")


def test_a_run_started_from_a_saved_adapter_continues_it(arithmetic_model_dir, tmp_path):
    first = lora_run(str(arithmetic_model_dir), tmp_path / "a", steps=4, lora_r=8, lora_alpha=32)
    assert first["accuracy_after"] != first["accuracy_before"]  # the adapter changed the model
    saved = tmp_path / "a" / "model"
    # steps 0: nothing trains, so the run's model is exactly what it started from (that the
    # continued adapter is trainable: test_settings_left_at_their_defaults_take_the_adapters)
    same = lora_run(str(saved), tmp_path / "b", steps=0)
    assert same["accuracy_before"] == same["accuracy_after"] == first["accuracy_after"]
    a, b = adapter_weights(saved), adapter_weights(tmp_path / "b" / "model")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    config = json.loads((tmp_path / "b" / "model" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"]) == (8, 32)  # its own settings, not the defaults
    assert config["base_model_name_or_path"] == str(arithmetic_model_dir)


@pytest.fixture(scope="module")
def saved_adapter(tmp_path_factory, arithmetic_model_dir) -> Path:
    cfg = ModelConfig(name_or_path=str(arithmetic_model_dir), mode="lora", device="cpu", lora_r=4,
                      lora_dropout=0.1, lora_target=["q_proj", "v_proj"])
    model = prepare_model(load_model(str(arithmetic_model_dir), cfg), cfg)
    folder = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(folder)
    return folder


def test_settings_left_at_their_defaults_take_the_adapters(saved_adapter, arithmetic_model_dir):
    cfg = ModelConfig(name_or_path=str(saved_adapter), mode="lora", device="cpu")
    start = adapter_start(str(saved_adapter), cfg)
    assert start.base == str(arithmetic_model_dir)
    model = prepare_model(load_model(start.base, cfg), cfg, adapter=start)
    peft_cfg = model.peft_config["default"]
    assert (peft_cfg.r, peft_cfg.lora_dropout, set(peft_cfg.target_modules)) == (4, 0.1, {"q_proj", "v_proj"})
    assert not peft_cfg.inference_mode and any(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)
    same = ModelConfig(name_or_path=str(saved_adapter), mode="lora", lora_r=4, lora_target=["v_proj", "q_proj"])
    assert adapter_start(str(saved_adapter), same) is not None  # explicit and equal is fine


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"mode": "full"}, "model.mode: full, but .* is a LoRA adapter"),
        ({"lora_r": 16}, "model.lora_r: 16, but the adapter .* r 4"),
        ({"lora_alpha": 8}, "model.lora_alpha: 8, but"),
        ({"lora_dropout": 0.0}, "model.lora_dropout: 0.0, but"),
        ({"lora_target": ["q_proj"]}, "model.lora_target: .* target_modules"),
    ],
)
def test_what_cannot_be_meant_is_a_clear_error(saved_adapter, fields, message):
    cfg = ModelConfig(name_or_path=str(saved_adapter), **{"mode": "lora", **fields})
    with pytest.raises(ConfigError, match=message):
        adapter_start(str(saved_adapter), cfg)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"peft_type": "IA3"}, "'IA3' adapter"),
        ({"base_model_name_or_path": None}, "names no base model"),
        ({"base_model_name_or_path": "/nonexistent/base"}, "/nonexistent/base .* does not exist"),
    ],
)
def test_broken_adapter_folders_are_named(saved_adapter, tmp_path, edit, message):
    config = {**json.loads((saved_adapter / "adapter_config.json").read_text()), **edit}
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=message):
        adapter_start(str(tmp_path), ModelConfig(name_or_path=str(tmp_path), mode="lora"))
    (tmp_path / "adapter_config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a readable adapter config"):
        adapter_start(str(tmp_path), ModelConfig(mode="lora"))


def test_a_plain_model_folder_is_not_an_adapter(arithmetic_model_dir):
    assert adapter_start(str(arithmetic_model_dir), ModelConfig(mode="full")) is None


# --- merged model of an adapter on a tied head --------------------------------------------------


@pytest.mark.parametrize(
    ("targets", "tied"),
    [(["q_proj", "lm_head"], False), (["embed_tokens"], False), (["lm_head", "embed_tokens", "o_proj"], False),
     (["q_proj", "v_proj"], True)],
)
def test_merged_model_keeps_its_logits_after_tie_weights(tmp_path, targets, tied):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = ModelConfig(name_or_path=str(STORIES), mode="lora", device="cpu", lora_r=4, lora_target=targets)
    model = prepare_model(load_model(str(STORIES), cfg), cfg)
    torch.manual_seed(0)
    for name, param in model.named_parameters():
        if "lora_B" in name or "lora_embedding_" in name:
            torch.nn.init.normal_(param, std=0.5)  # a trained adapter: B (embeddings: A) no longer 0
    model.eval()
    ids = torch.randint(0, 512, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(input_ids=ids).logits
        base = model.get_base_model()
        with model.disable_adapter():
            off = model(input_ids=ids).logits
    assert (want - off).abs().max() > 0.1  # the adapter matters
    save_merged(model, AutoTokenizer.from_pretrained(STORIES), tmp_path, dtype=torch.float32)
    assert json.loads((tmp_path / "config.json").read_text())["tie_word_embeddings"] is tied
    merged = AutoModelForCausalLM.from_pretrained(tmp_path)
    merged.tie_weights()
    with torch.no_grad():
        assert (merged(input_ids=ids).logits - want).abs().max() < 1e-4
    merged.resize_token_embeddings(520)
    with torch.no_grad():
        assert (merged(input_ids=ids).logits[..., :512] - want).abs().max() < 1e-4
    assert base is model.get_base_model()


# --- dropout off for the fixed old and reference log-probs --------------------------------------


def record_ratios(monkeypatch) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    import grpokit.train.trainer as trainer_module

    calls, real = [], trainer_module.per_token_loss_BT

    def spy(logp_BT, old_BT, adv_B, mask_BT, **kwargs):
        calls.append((logp_BT.detach().clone(), old_BT.detach().clone(), mask_BT.bool()))
        return real(logp_BT, old_BT, adv_B, mask_BT, **kwargs)

    monkeypatch.setattr(trainer_module, "per_token_loss_BT", spy)
    return calls


def set_attention_dropout(model, rate: float) -> int:
    modules = [m for m in model.modules() if isinstance(getattr(m, "attention_dropout", None), float)]
    for module in modules:
        module.attention_dropout = rate
    return len(modules)


@pytest.mark.parametrize("form", ["lora", "full-attention-dropout", "lora-micro-batches"])
def test_first_pass_ratio_is_exactly_one_with_dropout(monkeypatch, arithmetic_model_dir, form):
    mode = "full" if form.startswith("full") else "lora"
    cfg = grpo_config(arithmetic_model_dir, mode)
    cfg.train.steps, cfg.algo.mu, cfg.algo.beta, cfg.model.lora_dropout = 1, 2, 0.05, 0.5
    cfg.algo.skip_zero_advantage = False
    cfg.train.micro_batch_size = 8 if form == "lora-micro-batches" else 64
    model, tok = load_prepared(cfg)
    if mode == "full":
        assert set_attention_dropout(model, 0.5) > 0
    seen = []

    def logprobs(rollout):  # a custom reference: it must run with dropout off too
        from grpokit.policy.forward import policy_logprobs_BT

        seen.append(model.training)
        return policy_logprobs_BT(model, rollout)

    reference = SimpleNamespace(logprobs=logprobs, model=None)  # the Reference interface the trainer uses

    calls = record_ratios(monkeypatch)
    trainer = two_grpo_steps(model, tok, cfg, reference=reference)
    passes = len(calls) // 2
    assert passes >= 1 and len(calls) == 2 * passes
    for logp_BT, old_BT, mask_BT in calls[:passes]:
        assert torch.equal(torch.exp(logp_BT - old_BT)[mask_BT], torch.ones(int(mask_BT.sum())))
    assert seen and not any(seen)  # reference log-probs in eval mode
    assert model.training  # train mode is back after the fixed log-probs
    if mode == "lora":  # the rates are back after the update
        assert {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} == {0.5}
    else:
        assert {m.attention_dropout for m in model.modules() if hasattr(m, "attention_dropout")} == {0.5}
    assert trainer.rows[0]["update/clipped_share"] >= 0


def test_dropout_is_on_in_train_mode_without_the_fix(arithmetic_model_dir):
    """Control: with lora_dropout 0.5 two train-mode forwards differ, so the ratio test can fail."""
    from tests.model_helpers import sample_rollout

    from grpokit.policy.forward import dropout_off, policy_logprobs_BT

    cfg = grpo_config(arithmetic_model_dir, "lora")
    cfg.model.lora_dropout = 0.5
    model, tok = load_prepared(cfg)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    rollout = sample_rollout(model, tok)
    model.train()
    with torch.no_grad():
        one, two = (policy_logprobs_BT(model, rollout) for _ in range(2))
        assert not torch.equal(one, two)
        with dropout_off(model):
            three, four = (policy_logprobs_BT(model, rollout) for _ in range(2))
        assert torch.equal(three, four) and model.training
    assert {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} == {0.5}
