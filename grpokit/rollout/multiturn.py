"""Multi-turn rollouts with tools, batched over every episode still running, token-exact.

Each turn samples the running episodes together (generate() with their whole id sequences as
prompts), stops a turn at an end-of-turn id or the environment's stop string (a tool-call close
tag that is one token), asks the environment for the tool results, and appends the template's
rendering of those new messages only (envs.render.appended_ids) to the sampled ids. Earlier ids
are never re-tokenized. The result is a Rollout whose completion region is everything after the
first prompt, with loss_mask_BT 1 exactly on the sampled tokens, and the Episode of every row.
Row b belongs to example b // G, as in generate().
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass, field

import torch

from grpokit.envs.base import Environment, Episode, Turn
from grpokit.envs.render import appended_ids, render_ids, retokenize_mismatch
from grpokit.errors import GrpokitError
from grpokit.rollout.generate import Rollout, generate, left_pad


class TokenizationMismatch(GrpokitError):
    """A full re-render of an episode tokenizes differently from its ids (strict mode)."""


@dataclass(frozen=True)
class EpisodeLimits:
    """max_turns: model turns per episode; max_turn_tokens: sampled tokens per turn;
    max_total_tokens: tokens after the first prompt (turns, tool results, template)."""

    max_turns: int
    max_turn_tokens: int
    max_total_tokens: int


@dataclass
class _Row:
    episode: Episode
    ids: list[int]  # first prompt + every token after it
    prompt_len: int
    sampled: list[int] = field(default_factory=list)  # per token after the prompt: 1 = sampled
    logps: list[float] = field(default_factory=list)
    ents: list[float] = field(default_factory=list)
    checked_len: int = 0  # ids a full re-render must reproduce (a cut-off last turn excluded)
    done: bool = False
    ended: bool = False  # the last turn ended at an end-of-turn id and the environment ended the episode

    @property
    def used(self) -> int:
        return len(self.ids) - self.prompt_len

    def add(self, ids: list[int], sampled: int, logps=None, ents=None) -> None:
        self.ids += ids
        self.sampled += [sampled] * len(ids)
        self.logps += logps if logps is not None else [0.0] * len(ids)
        self.ents += ents if ents is not None else [0.0] * len(ids)


def stop_string_ids(tokenizer, env: Environment) -> list[int]:
    """Ids of the environment's stop strings that are single tokens (others cannot stop a turn;
    the model then ends its turn with its end-of-turn token)."""
    out = []
    for s in env.stop_strings:
        ids = tokenizer(s, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            out.append(ids[0])
    return out


@torch.no_grad()
def generate_episodes(model, tokenizer, env: Environment, examples: list[dict], *, group_size: int,
                      limits: EpisodeLimits, eos_id: list[int], pad_id: int, generator=None,
                      template_kwargs: dict | None = None, strict: bool = False, logprobs: bool = False,
                      **sampling) -> Rollout:
    """group_size episodes per example (see the module). eos_id: the end-of-turn ids; sampling:
    generate()'s temperature/top_p/top_k. strict: raise TokenizationMismatch when an episode's ids
    differ from a full re-render (else each Episode records where, retokenize_mismatch)."""
    kw = {"tools": env.tools, "template_kwargs": template_kwargs}
    rows = []
    for ex in examples:
        first = env.start(ex)
        prompt = render_ids(tokenizer, first.messages, add_generation_prompt=True, **kw)
        rows += [_Row(Episode(messages=list(first.messages)), list(prompt), len(prompt)) for _ in range(group_size)]
    stops = sorted(set(eos_id) | set(stop_string_ids(tokenizer, env)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="grpokit-env") as pool:
        for _ in range(limits.max_turns):
            active = [r for r in rows if not r.done]
            if not active:
                break
            budgets = [min(limits.max_turn_tokens, limits.max_total_tokens - r.used) for r in active]
            out = generate(model, [r.ids for r in active], group_size=1, max_new_tokens=max(budgets), eos_id=stops,
                           pad_id=pad_id, generator=generator, logprobs=logprobs, **sampling)
            steps = [_take_turn(tokenizer, r, out, i, budgets[i], set(eos_id), limits.max_total_tokens) for i, r in enumerate(active)]
            todo = [(r, text) for r, text in zip(active, steps) if text is not None]
            answers = list(pool.map(lambda rt: env.step(rt[0].episode, rt[1]), todo))
            for (r, text), new in zip(todo, answers):
                _append_results(tokenizer, r, text, new, limits, kw)
    for r in rows:
        if not r.done:
            r.done, r.episode.stop = True, "max_turns"
    _check_tokens(tokenizer, rows, strict, kw)
    return _to_rollout(rows, group_size, pad_id, next(model.parameters()).device, logprobs)


def _take_turn(tokenizer, r: _Row, out: Rollout, i: int, budget: int, end_ids: set[int], max_total: int) -> str | None:
    """Append row i's sampled turn to r; its text for the environment, or None when the episode
    stops here (cut off by a token limit)."""
    n = min(int(out.lengths_B[i]), budget)
    ids = out.completion_ids_BT[i, :n].tolist()
    pick = (lambda t: None if t is None else t[i, :n].tolist())
    r.add(ids, 1, pick(out.logprobs_BT), pick(out.entropy_BT))
    stopped = bool(out.ended_B[i]) and n == int(out.lengths_B[i])
    text = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    content_ids = ids[:-1] if stopped and ids[-1] in end_ids else ids
    content = tokenizer.decode(content_ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    r.episode.turns.append(Turn(text=content, tokens=n))
    r.episode.final_text = tokenizer.decode(ids, skip_special_tokens=True)
    if not stopped:
        r.done, r.episode.stop = True, "max_tokens" if r.used >= max_total else "max_turn_tokens"
        return None
    r.checked_len = len(r.ids)
    r.episode.messages.append({"role": "assistant", "content": content})
    return text


def _append_results(tokenizer, r: _Row, text: str, new: list[dict], limits: EpisodeLimits, kw) -> None:
    """The environment answered r's last turn with `new` messages ([] = the episode ends)."""
    if not new:
        r.done, r.ended, r.episode.stop = True, True, "answer"
        return
    history = r.episode.messages[:-1]
    suffix = appended_ids(tokenizer, history, text, r.episode.messages[-1]["content"], new, **kw)
    if r.used + len(suffix) >= limits.max_total_tokens:  # no room for the results and a reply
        r.done, r.episode.stop = True, "max_tokens"
        return
    r.episode.messages += new
    r.add(suffix, 0)
    r.checked_len = len(r.ids)


def _check_tokens(tokenizer, rows: list[_Row], strict: bool, kw) -> None:
    """Compare every episode's ids with a full re-render (envs.render.retokenize_mismatch)."""
    for b, r in enumerate(rows):
        pos = retokenize_mismatch(tokenizer, r.episode.messages, r.ids[: r.checked_len or r.prompt_len], **kw)
        r.episode.retokenize_mismatch = pos
        if pos >= 0 and strict:
            raise TokenizationMismatch(
                f"episode {b}: a full re-render of the conversation tokenizes differently from the sampled ids "
                f"at position {pos} (id {r.ids[pos] if pos < len(r.ids) else None}); env.strict_tokens is set")


def _to_rollout(rows: list[_Row], group_size: int, pad_id: int, device, logprobs: bool) -> Rollout:
    prompt_BL, mask_BL = left_pad([r.ids[: r.prompt_len] for r in rows], pad_id, device)
    T = max(1, max(r.used for r in rows))

    def table(values, fill, dtype):
        out = torch.full((len(rows), T), fill, dtype=dtype)
        for b, v in enumerate(values):
            out[b, : len(v)] = torch.tensor(v, dtype=dtype)
        return out.to(device)

    return Rollout(
        prompt_BL, mask_BL, table([r.ids[r.prompt_len:] for r in rows], pad_id, torch.long),
        torch.tensor([r.used for r in rows], dtype=torch.long, device=device),
        torch.tensor([r.ended for r in rows], dtype=torch.bool, device=device), group_size,
        entropy_BT=table([r.ents for r in rows], 0.0, torch.float32),
        logprobs_BT=table([r.logps for r in rows], 0.0, torch.float32) if logprobs else None,
        loss_mask_BT=table([r.sampled for r in rows], 0, torch.long),
        episodes=[r.episode for r in rows],
    )


def sample_episodes(model, tokenizer, env: Environment, examples: list[dict], cfg, stop_ids: list[int], *,
                    generator=None, logprobs: bool = False, greedy: bool = False, group_size: int | None = None) -> Rollout:
    """generate_episodes with a training config's settings (rollout.*, env.*, data.chat_template_kwargs);
    greedy: temperature 0, as the evaluation decodes."""
    r, e = cfg.rollout, cfg.env
    limits = EpisodeLimits(e.max_turns, e.max_turn_tokens or r.max_new_tokens, r.max_new_tokens)
    sampling = {"temperature": 0.0} if greedy else {"temperature": r.temperature, "top_p": r.top_p, "top_k": r.top_k}
    return generate_episodes(model, tokenizer, env, examples, group_size=group_size or r.group_size, limits=limits,
                             eos_id=list(stop_ids), pad_id=tokenizer.pad_token_id, generator=generator,
                             template_kwargs=cfg.data.chat_template_kwargs, strict=e.strict_tokens,
                             logprobs=logprobs and not greedy, **sampling)


def episode_records(rollout: Rollout, records: list[dict]) -> list[dict]:
    """The per-completion reward records with each row's episode added as ``episode``
    (Episode.as_dict: turns, tool calls, tool errors); unchanged for a single-turn rollout."""
    if rollout.episodes is None:
        return records
    return [{**rec, "episode": ep.as_dict()} for rec, ep in zip(records, rollout.episodes)]
