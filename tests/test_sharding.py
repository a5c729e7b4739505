"""train.sharding without processes: config checks, and the one-process no-op. The sharded
paths themselves run under torchrun in test_distributed.py."""

import re

import pytest
import torch

from grpokit.config import Config, validate
from grpokit.errors import ConfigError
from grpokit.parallel.dist import Dist
from grpokit.parallel.sharding import decoder_layers, full_state, is_sharded, passes_to_match, shard_for_training


def _cfg(**train) -> Config:
    cfg = Config()
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg


@pytest.mark.parametrize("sharding", ["none", "fsdp", "fsdp_grad_op"])
def test_sharding_layouts_validate_for_full_fine_tuning(sharding):
    assert validate(_cfg(sharding=sharding)).train.sharding == sharding


@pytest.mark.parametrize("change, message", [
    (dict(sharding="zero3"), "train.sharding: unknown value 'zero3'"),
    (dict(sharding="fsdp", mode="lora"), "train.sharding: fsdp shards full fine-tuning; model.mode 'lora'"),
    (dict(sharding="fsdp_grad_op", mode="qlora"), "adapter, whose replica fits every GPU"),
])
def test_bad_sharding_settings_are_named_before_any_model_loads(change, message):
    mode = change.pop("mode", None)
    cfg = _cfg(**change)
    if mode:
        cfg.model.mode = mode
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(cfg)


def test_one_process_trains_a_plain_replica_and_says_so(tiny_llama):
    model, _ = tiny_llama
    said = []
    sharding = shard_for_training(model, None, "fsdp", Dist(), log=said.append)
    assert not is_sharded(model) and sharding.layout == "none"
    assert said == ["train.sharding fsdp: one process, nothing to shard; training a full replica"]
    assert passes_to_match(model, Dist(), 3) == 0
    with sharding.gathered(model):  # a pass-through
        pass
    opt = torch.optim.AdamW(model.parameters())
    tensors, optim_sd = full_state(model, opt, Dist())
    assert set(tensors) == {n for n, _ in model.named_parameters()}


def test_decoder_layers_are_found_by_transformers_no_split_names(tiny_llama):
    model, _ = tiny_llama
    layers = decoder_layers(model)
    assert [type(m).__name__ for m in layers] == ["LlamaDecoderLayer"] * 2
    with pytest.raises(ValueError, match="train.sharding: cannot find the decoder layers"):
        decoder_layers(torch.nn.Linear(2, 2))
