"""`grpokit sample`: chat with a trained model (or any causal LM) from the command line.

    grpokit sample --model runs/RUN/model "37+58"       # one answer per prompt given
    grpokit sample --model runs/RUN/model               # interactive: one prompt per line
    echo "37+58" | grpokit sample --model runs/RUN/model

The options are SampleCommandConfig's (below): the model and rollout sections of a
training config plus a sample section; `grpokit sample --help` lists them. --model takes a folder
written by `grpokit train` (full weights, or a LoRA/QLoRA adapter that is put back on its base),
any transformers model folder or hub id, or builtin:arithmetic. Prompts go through the model's
chat template, tokenized once, and are sampled with grpokit's own rollout, so the rollout
fields mean what they mean in training. The sampling defaults come from the grpokit_config.yaml
saved beside the model when there is one (its rollout's SAVED_SAMPLING fields).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tyro.conf import Positional

from grpokit.config import JsonMapping, ModelConfig, RolloutConfig
from grpokit.rewards.answers import THINK_CLOSE, THINK_OPEN

DESCRIPTION = """Sample answers from a model: the prompts given, else one per line from standard input.
The rollout section's temperature, top_p, top_k, max_new_tokens and min_new_tokens default to those
the model was trained with (its grpokit_config.yaml), else to the defaults shown; rollout.group_size
is the number of completions per prompt. Of the model section, sample reads name_or_path, device, dtype
and trust_remote_code (a trained folder's grpokit_config.yaml says how to load the rest)."""

SAVED_SAMPLING = ("temperature", "top_p", "top_k", "max_new_tokens", "min_new_tokens")


@dataclass
class SampleConfig:
    """`grpokit sample`'s own settings."""

    prompts: Positional[list[str]] = field(default_factory=list)  # prompts to answer (none: one per line from standard input, with a '> ' prompt on a terminal)
    system_prompt: str = ""  # system message put before every prompt, as data.system_prompt in training ("" = none)
    think: bool = True  # let the chat template think (--sample.no-think passes enable_thinking=False, as Qwen3's template reads it)
    hide_think: bool = False  # print only what follows the <think> block
    chat_template_kwargs: JsonMapping = field(default_factory=dict)  # options for the chat template, e.g. {enable_thinking: false} (default: the trained run's data.chat_template_kwargs)
    seed: int = 0  # seed of sampling; each prompt draws from its own stream derived from it


@dataclass
class SampleCommandConfig:
    """Everything `grpokit sample` reads: completions of a model for prompts."""

    model: ModelConfig = field(default_factory=ModelConfig)
    rollout: RolloutConfig = field(default_factory=lambda: RolloutConfig(
        group_size=1, max_new_tokens=512, temperature=0.7, top_p=0.9))
    sample: SampleConfig = field(default_factory=SampleConfig)


def parse(argv: list[str]):
    """SampleCommandConfig from its defaults, the model's saved sampling settings, --config, then flags."""
    from grpokit.cli.args import parse_command
    from grpokit.models.loading import read_grpokit_config

    first = parse_command(SampleCommandConfig, argv, prog="grpokit sample", description=DESCRIPTION)
    folder = Path(first.model.name_or_path)
    saved = read_grpokit_config(folder) if folder.is_dir() else None
    if saved is None:
        return first
    base = SampleCommandConfig()
    base.rollout = dataclasses.replace(base.rollout, stop_token_ids=list(saved.rollout.stop_token_ids),
                                       **{k: getattr(saved.rollout, k) for k in SAVED_SAMPLING})
    base.sample = dataclasses.replace(base.sample, chat_template_kwargs=dict(saved.data.chat_template_kwargs))
    return parse_command(SampleCommandConfig, argv, prog="grpokit sample", description=DESCRIPTION, base=base)


def prompt_ids(tokenizer, prompt: str, *, system: str = "", think: bool = True,
               template_kwargs: dict | None = None) -> list[int]:
    """Chat-templated ids of one prompt, tokenized once (templating to text and tokenizing again
    can add a second BOS). A tokenizer without a chat template gets the raw text, with whatever
    special tokens it adds itself; template_kwargs go to the template, and think=False adds
    enable_thinking=False."""
    from grpokit.data.records import example_prompt_ids

    if not getattr(tokenizer, "chat_template", None):
        return list(tokenizer(prompt)["input_ids"])
    extra = {**(template_kwargs or {}), **({} if think else {"enable_thinking": False})}
    return example_prompt_ids(tokenizer, {"prompt": prompt, "system": system}, extra)


def shown_text(text: str, hide_think: bool) -> str:
    """The completion as printed: with sample.hide_think, only the text after the think block."""
    if not hide_think:
        return text
    close = text.rfind(THINK_CLOSE)
    if close >= 0:
        return text[close + len(THINK_CLOSE):].strip()
    if THINK_OPEN in text:
        return f"[still thinking when the token limit was reached: {len(text)} characters hidden]"
    return text.strip()


class ChatSession:
    """A loaded model answering prompts with one rollout section's sampling settings."""

    def __init__(self, model, tokenizer, rollout, sample):
        from grpokit.data.chat import stop_token_ids

        self.model, self.tokenizer, self.rollout, self.sample = model, tokenizer, rollout, sample
        self.stop_ids = stop_token_ids(tokenizer, model, rollout.stop_token_ids)
        self.calls = 0

    def answer(self, prompt: str) -> list[str]:
        from grpokit.algo.sampling import seeded_generator
        from grpokit.eval.evaluate import decode_completions
        from grpokit.rollout.generate import generate

        r, s = self.rollout, self.sample
        device = next(self.model.parameters()).device
        gen = seeded_generator(device, s.seed, self.calls)  # each prompt its own stream, reproducibly
        self.calls += 1
        ids = prompt_ids(self.tokenizer, prompt, system=s.system_prompt, think=s.think,
                         template_kwargs=s.chat_template_kwargs)
        rollout = generate(self.model, [ids], group_size=r.group_size, eos_id=self.stop_ids,
                           pad_id=self.tokenizer.pad_token_id, generator=gen,
                           **{k: getattr(r, k) for k in SAVED_SAMPLING})
        return decode_completions(self.tokenizer, rollout)


def _print_answers(texts: list[str], hide_think: bool, out) -> None:
    for i, text in enumerate(texts):
        prefix = f"[{i + 1}] " if len(texts) > 1 else ""
        print(prefix + shown_text(text, hide_think), file=out, flush=True)


def _read_prompts(stream, interactive: bool):
    while True:
        if interactive:
            print("> ", end="", file=sys.stderr, flush=True)
        line = stream.readline()
        if not line:
            return
        line = line.rstrip("\n")
        if interactive and line.strip() in ("exit", "quit"):
            return
        if line.strip():
            yield line


def main(argv: list[str] | None = None) -> int:
    from transformers.utils import logging as hf_logging

    from grpokit.config import check_sampling
    from grpokit.data.chat import describe_ids
    from grpokit.errors import ConfigError
    from grpokit.models.loading import load_trained
    from grpokit.models.locate import locate_model

    try:
        cfg = parse(list(sys.argv[1:] if argv is None else argv))
        check_sampling(cfg.rollout, training=False)
        if not cfg.model.name_or_path.startswith("builtin:"):
            locate_model(cfg.model.name_or_path, cfg.model.revision, field="--model", flag="--model")
    except ConfigError as exc:
        print(f"grpokit sample: error: {exc}", file=sys.stderr)
        return 2
    hf_logging.disable_progress_bar()
    m = cfg.model
    try:
        model, tokenizer = load_trained(m.name_or_path, device=m.device, dtype=m.dtype,
                                        trust_remote_code=m.trust_remote_code, log=lambda *a: None)
    except (OSError, ValueError) as exc:
        print(f"grpokit sample: cannot load model.name_or_path {m.name_or_path}: {exc}", file=sys.stderr)
        return 2
    if not getattr(tokenizer, "chat_template", None):
        print("grpokit sample: the tokenizer has no chat template; prompts are sent as raw text", file=sys.stderr)
    session = ChatSession(model, tokenizer, cfg.rollout, cfg.sample)
    print(f"grpokit sample: a completion ends at any of {describe_ids(tokenizer, session.stop_ids)}", file=sys.stderr)
    prompts = cfg.sample.prompts or _read_prompts(sys.stdin, interactive=sys.stdin.isatty())
    for prompt in prompts:
        _print_answers(session.answer(prompt), cfg.sample.hide_think, sys.stdout)
    return 0
