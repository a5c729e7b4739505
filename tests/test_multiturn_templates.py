"""Multi-turn episodes on the real chat templates that take tools= (Qwen2.5, Qwen3), with tiny
random-weight models over the real tokenizers (tests/test_chat_conformance.py's fixtures): the ids
are the sampled ids plus the template's rendering of the tool messages, their text is the
template's text of the conversation, and the re-tokenization check reports only sampled tokens."""

from __future__ import annotations

import pytest
import torch

from grpokit.envs.calculator import calculator_tool
from grpokit.envs.render import render_text
from grpokit.rollout.multiturn import EpisodeLimits, generate_episodes
from tests.test_chat_conformance import FAMILIES, TOKENIZERS, loadable, tiny_model_folder
from tests.test_multiturn import ScriptedEnv

pytestmark = pytest.mark.skipif(not TOKENIZERS.is_dir(), reason="../shared/tokenizers is not there")


class ToolsScriptedEnv(ScriptedEnv):
    tools = [calculator_tool().schema]


@pytest.mark.parametrize("family", ["qwen2.5-instruct", "qwen3"])
def test_real_template_episodes_are_token_exact(family, tmp_path):
    if not loadable(family):
        pytest.skip(f"{family} does not load here")
    from transformers import AutoModelForCausalLM

    _, turn_end, stops, _, kwargs = FAMILIES[family]
    folder, tok = tiny_model_folder(tmp_path / family, family, turn_end)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    env = ToolsScriptedEnv(calls=2)
    examples = [{"prompt": "What is 123*45?"}, {"prompt": "Multiply 17 by 23."}]
    rollout = generate_episodes(model, tok, env, examples, group_size=4, limits=EpisodeLimits(4, 12, 120),
                                eos_id=sorted(stops), pad_id=tok.pad_token_id, generator=torch.Generator().manual_seed(0),
                                template_kwargs=kwargs, temperature=1.0)
    first = render_text(tok, [{"role": "user", "content": "x"}], tools=env.tools, template_kwargs=kwargs,
                        add_generation_prompt=True)
    assert '"name": "calculator"' in first  # the schema reached the template
    with_tools = 0
    for b, ep in enumerate(rollout.episodes):
        n = int(rollout.lengths_B[b])
        prompt = rollout.prompt_ids_BL[b][rollout.prompt_mask_BL[b].bool()].tolist()
        ids = prompt + rollout.completion_ids_BT[b, :n].tolist()
        mask = rollout.loss_mask_BT[b, :n].tolist()
        assert sum(mask) == sum(t.tokens for t in ep.turns)
        # every run of tool-result tokens is, by hand: the end of the model's turn that it did not
        # sample, the tool message as the template renders it, the next generation prompt
        think = "<think>\n\n</think>\n\n" if family == "qwen3" else ""
        runs, start = [], None
        for i, m in enumerate(mask + [1]):
            if m == 0 and start is None:
                start = i
            if m == 1 and start is not None:
                runs.append((ids[len(prompt) + start - 1], tok.decode(ids[len(prompt) + start:len(prompt) + i])))
                start = None
        assert len(runs) == sum(m["role"] == "tool" for m in ep.messages)
        for before, run in runs:
            closing = "\n" if before == tok.convert_tokens_to_ids("<|im_end|>") else "<|im_end|>\n"
            assert run == (f"{closing}<|im_start|>user\n<tool_response>\n5535\n</tool_response><|im_end|>\n"
                           f"<|im_start|>assistant\n{think}")
        with_tools += bool(runs)
        if ep.stop not in ("answer", "max_turns"):
            continue
        gen = ep.messages[-1]["role"] != "assistant"
        full = render_text(tok, ep.messages, tools=env.tools, template_kwargs=kwargs, add_generation_prompt=gen)
        text = tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if family == "qwen2.5-instruct":  # a template that renders earlier turns as they were
            assert full.startswith(text) and len(full) - len(text) <= 1, (b, full[len(text) - 40:], text[-40:])
            if ep.retokenize_mismatch >= 0:  # then only a sampled token can be where a re-render differs
                pos = ep.retokenize_mismatch - len(prompt)
                assert pos >= 0 and (mask[pos] == 1 or mask[pos - 1] == 1), (b, pos)
        elif runs:  # Qwen3 drops the empty think block of earlier turns: the check must see it
            assert ep.retokenize_mismatch >= 0 and text.replace(think, "", len(runs)) != text
    assert with_tools >= 2
