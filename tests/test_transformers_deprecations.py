"""grpokit calls no API that transformers has deprecated: a deprecation fails here when
transformers announces it, not later when a release removes the API.

transformers announces a deprecation in two ways: a FutureWarning / DeprecationWarning (a
deprecated argument, method or property), or a notice through its own logger, once per process
(`logger.warning_once`, e.g. reading `output.past_key_values`). Both are turned into failures
while grpokit's model paths run on a tiny Llama: load, gradient checkpointing, rollouts through
the model's forward and through the lean decoder, the update's forward and backward (whole and
with the shared prompt cache), LoRA, saving, and loading the saved folder back."""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager

import pytest

from tests.model_helpers import grpo_config, load_prepared, save_tiny_llama, two_grpo_steps

# Where transformers' deprecation warnings are attributed: its own modules (stacklevel 1), or,
# for a deprecated argument of a model's forward (stacklevel 2), torch's Module.__call__.
FROM_TRANSFORMERS = r"(transformers(\..*)?|torch\.nn\.modules\.module)$"


@contextmanager
def transformers_deprecations_fail():
    """Inside: transformers' deprecation warnings raise (the traceback shows grpokit's call);
    its deprecation notices sent through its logger are collected and fail at the end."""
    from transformers.utils import logging as hf_logging

    notices: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            if "deprecat" in record.getMessage().lower():
                notices.append(record.getMessage())

    handler, level = Collect(), hf_logging.get_verbosity()
    hf_logging.set_verbosity_warning()
    logging.Logger.warning_once.cache_clear()  # a notice already shown in this process shows again
    hf_logging.get_logger("transformers").addHandler(handler)
    try:
        with warnings.catch_warnings():
            for category in (FutureWarning, DeprecationWarning):
                warnings.filterwarnings("error", category=category, module=FROM_TRANSFORMERS)
            yield
    finally:
        hf_logging.get_logger("transformers").removeHandler(handler)
        hf_logging.set_verbosity(level)
    assert not notices, f"grpokit called deprecated transformers APIs: {notices}"


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_model_paths_call_no_deprecated_transformers_api(mode, tmp_path):
    from grpokit.models.loading import load_trained, save_outputs
    from grpokit.rollout.decoders import ModelDecoder
    from grpokit.rollout.generate import generate

    folder = save_tiny_llama(tmp_path / "tiny", hidden=32, inter=64)
    cfg = grpo_config(folder, mode)
    cfg.model.gradient_checkpointing = True
    with transformers_deprecations_fail():
        model, tok = load_prepared(cfg)
        assert model.is_activation_checkpointing
        two_grpo_steps(model, tok, cfg)  # the automatic decoder, the whole update forward under checkpointing
        model.activation_checkpointing_disable()
        cfg.train.steps = 1
        two_grpo_steps(model, tok, cfg)  # the update's shared-prompt forward (KV cache), no checkpointing
        ids = [tok("12+34")["input_ids"]]
        generate(model, ids, group_size=2, max_new_tokens=3, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id,
                 decoder=ModelDecoder)  # the model's own forward and KV cache
        save_outputs(model, tok, cfg, tmp_path / "out")
        again, tok2 = load_trained(str(tmp_path / "out"), device="cpu")
        ids = [tok2("12+34")["input_ids"]]
        rollout = generate(again, ids, group_size=2, max_new_tokens=3, eos_id=tok2.eos_token_id,
                           pad_id=tok2.pad_token_id)
    assert rollout.completion_ids_BT.shape[0] == 2
