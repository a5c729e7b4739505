"""Multi-turn rollouts (grpokit/rollout/multiturn.py): token-exact episodes, the loss mask, the
log-probs the loss sees, and the re-tokenization check, on the demo's tool tokenizer."""

from __future__ import annotations

import pytest
import torch

from grpokit.envs import Episode
from grpokit.envs.render import render_ids
from grpokit.policy.forward import policy_logprobs_BT
from grpokit.rollout import multiturn
from grpokit.rollout.multiturn import EpisodeLimits, TokenizationMismatch, generate_episodes
from grpokit.tasks.arithmetic_tools import TOOL_CHAT_TEMPLATE, ToolsSpec, build_tool_tokenizer
from grpokit.tasks.arithmetic import build_model

RESULT = "5535"


class ScriptedEnv:
    """Answers every turn that ends in a tool-call tag with RESULT, up to `calls` times."""

    tools: list = []
    stop_strings = ("</tool_call>",)

    def __init__(self, calls: int = 2):
        self.calls = calls

    def start(self, example: dict) -> Episode:
        return Episode(messages=[{"role": "user", "content": example["prompt"]}])

    def step(self, episode: Episode, text: str) -> list[dict]:
        if len(episode.turns) > self.calls:
            return []
        return [{"role": "tool", "content": RESULT}]


def stop_prone_model(tok, seed: int = 0):
    """A random tiny Llama whose tied embeddings make </tool_call> and </s> likely (~25% each per
    step), so turns end within a few tokens and episodes take several turns."""
    spec = ToolsSpec(hidden_size=32, layers=2, heads=2, intermediate_size=64, max_positions=96)
    model = build_model(spec, tok, seed, max_positions=spec.max_positions)
    emb = model.get_input_embeddings().weight
    with torch.no_grad():
        emb[:, 0] = 4.0
        for t in ("</tool_call>", "</s>"):
            emb[tok.convert_tokens_to_ids(t), 0] += float(torch.tensor(0.4 * len(tok)).log() / 5.6)
    return model.eval()


def episodes(model, tok, env, *, n=4, G=4, seed=0, strict=False, limits=EpisodeLimits(4, 10, 60), record=None):
    examples = [{"prompt": f"{100 + 7 * i}*{11 + i}"} for i in range(n)]
    gen = torch.Generator().manual_seed(seed)
    return generate_episodes(model, tok, env, examples, group_size=G, limits=limits, eos_id=[tok.eos_token_id],
                             pad_id=tok.pad_token_id, generator=gen, strict=strict, logprobs=True, temperature=1.0)


@pytest.fixture(scope="module")
def demo():
    tok = build_tool_tokenizer()
    return tok, stop_prone_model(tok)


def test_ids_trained_on_are_the_sampled_ids_plus_the_tool_result_ids(demo, monkeypatch):
    tok, model = demo
    turns: list[list[list[int]]] = []  # per generate call: the ids each row sampled
    real = multiturn.generate

    def recording(*args, **kwargs):
        out = real(*args, **kwargs)
        turns.append([row[: int(n)].tolist() for row, n in zip(out.completion_ids_BT, out.lengths_B)])
        return out

    monkeypatch.setattr(multiturn, "generate", recording)
    rollout = episodes(model, tok, ScriptedEnv(calls=2))
    tool_ids = tok(f"<tool_response>{RESULT}</tool_response><|assistant|>", add_special_tokens=False)["input_ids"]
    stops = {tok.eos_token_id, tok.convert_tokens_to_ids("</tool_call>")}
    running = list(range(16))
    expected = {b: ([], []) for b in running}
    multi = 0
    for turn, call in enumerate(turns):  # rebuild every episode from what generate returned, turn by turn
        assert len(call) == len(running)
        still = []
        for b, sampled in zip(running, call):
            ids, mask = expected[b]
            budget = min(10, 60 - len(ids))  # EpisodeLimits(4, 10, 60)
            stopped = len(sampled) <= budget and sampled[-1] in stops
            ids += sampled[:budget]
            mask += [1] * len(sampled[:budget])
            if stopped and turn < 2 and len(ids) + len(tool_ids) < 60:  # ScriptedEnv(calls=2) answers
                ids += tool_ids
                mask += [0] * len(tool_ids)
                still.append(b)
        running = still
    for b, ep in enumerate(rollout.episodes):
        n = int(rollout.lengths_B[b])
        ids, mask = expected[b]
        assert rollout.completion_ids_BT[b, :n].tolist() == ids, b
        assert rollout.loss_mask_BT[b, :n].tolist() == mask, b
        assert rollout.train_mask_BT[b].sum() == sum(mask)
        assert rollout.train_mask_BT[b, n:].sum() == 0
        multi += mask.count(0) > 0
        prompt = rollout.prompt_ids_BL[b][rollout.prompt_mask_BL[b].bool()].tolist()
        assert prompt == render_ids(tok, ep.messages[:1], tools=[], template_kwargs=None, add_generation_prompt=True)
        assert ep.retokenize_mismatch == -1  # the demo's template and tokenizer agree
    assert multi >= 4, "too few episodes called the tool for the test to mean anything"


def test_episode_records_turns_messages_and_how_it_ended(demo):
    tok, model = demo
    rollout = episodes(model, tok, ScriptedEnv(calls=1), limits=EpisodeLimits(3, 10, 60))
    for b, ep in enumerate(rollout.episodes):
        assert ep.stop in ("answer", "max_turns", "max_turn_tokens", "max_tokens")
        assert bool(rollout.ended_B[b]) == (ep.stop == "answer")
        tools = [m for m in ep.messages if m["role"] == "tool"]
        assert len(tools) == min(1, len(ep.turns) - 1) or ep.stop != "answer"
        if ep.stop == "answer":
            assert ep.messages[-1] == {"role": "assistant", "content": ep.turns[-1].text}
        assert sum(t.tokens for t in ep.turns) == int(rollout.loss_mask_BT[b].sum())


def test_the_loss_sees_the_log_probs_of_a_plain_full_forward(demo):
    tok, model = demo
    rollout = episodes(model, tok, ScriptedEnv(calls=2))
    fast_BT = policy_logprobs_BT(model, rollout)  # fused head, shared prompt
    plain_BT = policy_logprobs_BT(model, rollout, fused_head=False, share_prompt=False)
    mask_BT = rollout.train_mask_BT.bool()
    checked = 0
    for b in range(len(rollout.lengths_B)):
        prompt = rollout.prompt_ids_BL[b][rollout.prompt_mask_BL[b].bool()]
        n = int(rollout.lengths_B[b])
        ids = torch.cat([prompt, rollout.completion_ids_BT[b, :n]])[None]
        with torch.no_grad():  # one unpadded sequence, no cache, no fast path
            logp_SV = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
        L = len(prompt)
        want_T = logp_SV[L - 1 : L - 1 + n].gather(-1, ids[0, L:, None])[:, 0]
        m = mask_BT[b, :n]
        assert torch.allclose(fast_BT[b, :n][m], want_T[m], atol=1e-5)
        assert torch.allclose(plain_BT[b, :n][m], want_T[m], atol=1e-5)
        # and the sampler's own log-probs of the sampled tokens (KV-cached decoding)
        assert torch.allclose(rollout.logprobs_BT[b, :n][m], want_T[m], atol=1e-4)
        checked += int(m.sum())
    assert checked == int(mask_BT.sum()) > 0


def test_select_keeps_the_loss_mask_and_the_episodes(demo):
    tok, model = demo
    rollout = episodes(model, tok, ScriptedEnv(calls=2))
    rows = torch.tensor([3, 0, 9])
    part = rollout.select(rows)
    T = part.completion_ids_BT.shape[1]
    assert torch.equal(part.loss_mask_BT, rollout.loss_mask_BT[rows, :T])
    assert part.episodes == [rollout.episodes[i] for i in (3, 0, 9)]
    assert torch.equal(part.train_mask_BT, (rollout.completion_mask_BT * rollout.loss_mask_BT)[rows, :T])


def test_limits_end_episodes(demo):
    tok, model = demo
    rollout = episodes(model, tok, ScriptedEnv(calls=5), limits=EpisodeLimits(2, 10, 60))
    assert all(len(ep.turns) <= 2 for ep in rollout.episodes)
    assert any(ep.stop == "max_turns" for ep in rollout.episodes)
    short = episodes(model, tok, ScriptedEnv(calls=5), limits=EpisodeLimits(6, 3, 12))
    assert int(short.lengths_B.max()) <= 12
    assert all(t.tokens <= 3 for ep in short.episodes for t in ep.turns)
    assert {ep.stop for ep in short.episodes} & {"max_tokens", "max_turn_tokens"}


# A template that renders earlier model turns otherwise than the model wrote them (as templates
# that drop earlier reasoning do): re-tokenizing the conversation would change those ids.
REWRITING = TOOL_CHAT_TEMPLATE.replace("<|assistant|>{{ m['content'] }}",
                                       "<|assistant|>{{ m['content'] if loop.last else ' ' + m['content'] }}")


def test_the_retokenization_check_fires_on_a_template_that_tokenizes_differently(demo):
    _, model = demo
    tok = build_tool_tokenizer()
    tok.chat_template = REWRITING
    rollout = episodes(model, tok, ScriptedEnv(calls=2))
    for b, ep in enumerate(rollout.episodes):
        rewritten = any(m["role"] == "assistant" for m in ep.messages[:-1])  # a model turn that is not the last
        assert (ep.retokenize_mismatch >= 0) == rewritten, b
    assert sum(ep.retokenize_mismatch >= 0 for ep in rollout.episodes) >= 4
    with pytest.raises(TokenizationMismatch, match="position"):
        episodes(model, tok, ScriptedEnv(calls=2), strict=True)
    demo_tok = build_tool_tokenizer()
    strict = episodes(model, demo_tok, ScriptedEnv(calls=2), strict=True)  # the demo's: no mismatch
    assert all(ep.retokenize_mismatch == -1 for ep in strict.episodes)
