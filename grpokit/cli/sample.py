"""`grpokit sample`: chat with a trained model (or any causal LM) from the command line.

    grpokit sample --model runs/RUN/model "37+58"       # one answer per prompt given
    grpokit sample --model runs/RUN/model               # interactive: one prompt per line
    echo "37+58" | grpokit sample --model runs/RUN/model

--model takes a folder written by `grpokit train` (full weights, or a LoRA/QLoRA adapter that is
put back on its base), any transformers model folder or hub id, or builtin:arithmetic. Prompts go
through the model's chat template, tokenized once, and are sampled with grpokit's own rollout,
so temperature / top-p / top-k mean what they mean in training. Defaults come from the
grpokit_config.yaml saved beside the model when there is one.
"""

from __future__ import annotations

import argparse
import sys

from grpokit.cli.eval import json_mapping
from grpokit.data.chat import describe_ids, encode_prompt, stop_token_ids
from grpokit.rewards.answers import THINK_CLOSE, THINK_OPEN

FALLBACK = {"max_new_tokens": 512, "min_new_tokens": 0, "temperature": 0.7, "top_p": 0.9, "top_k": 0}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="grpokit sample", description="Sample answers from a model: prompts "
                                "given, else one per line from standard input.")
    p.add_argument("prompts", nargs="*", metavar="PROMPT", help="prompts to answer (none: read one per line)")
    p.add_argument("--model", required=True, help="trained output folder (model/), adapter folder, model "
                   "folder, hub id, or builtin:arithmetic")
    p.add_argument("--system", default="", help="system message put before each prompt")
    g = p.add_argument_group("sampling (defaults: the model's grpokit_config.yaml rollout, else shown)")
    g.add_argument("--temperature", type=float, default=None, help=f"0 = greedy (else {FALLBACK['temperature']})")
    g.add_argument("--top-p", type=float, default=None, help=f"nucleus mass (else {FALLBACK['top_p']})")
    g.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens (0 = off)")
    g.add_argument("--max-new-tokens", type=int, default=None, help=f"else {FALLBACK['max_new_tokens']}")
    g.add_argument("--min-new-tokens", type=int, default=None, help="EOS is forbidden before this many tokens")
    g.add_argument("-n", "--num-samples", type=int, default=1, help="completions per prompt")
    g.add_argument("--seed", type=int, default=0, help="seed of sampling")
    t = p.add_argument_group("thinking")
    t.add_argument("--hide-think", action="store_true", help="print only what follows the <think> block")
    t.add_argument("--no-think", action="store_true",
                   help="ask the chat template not to think (enable_thinking=False, as Qwen3's reads it)")
    t.add_argument("--chat-template-kwargs", type=json_mapping, default=None, metavar="JSON",
                   help='options for the chat template, e.g. \'{"enable_thinking": false}\' (default: the saved '
                   "config's data.chat_template_kwargs)")
    m = p.add_argument_group("model")
    m.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    m.add_argument("--dtype", default="auto", help="auto | fp32 | bf16 | fp16")
    m.add_argument("--trust-remote-code", action="store_true", help="run modelling code shipped in a hub repo")
    return p


def sampling_options(args, saved_cfg) -> dict:
    """Flags given win; then the saved training config's rollout section; then FALLBACK."""
    saved = vars(saved_cfg.rollout) if saved_cfg is not None else {}
    out = {}
    for key, fallback in FALLBACK.items():
        flag = getattr(args, key)
        out[key] = flag if flag is not None else saved.get(key, fallback)
    return out


def check_options(opts: dict, n: int) -> str | None:
    """An error message naming the flag, or None."""
    if opts["temperature"] < 0:
        return f"--temperature must be >= 0, got {opts['temperature']}"
    if not 0 < opts["top_p"] <= 1:
        return f"--top-p must be in (0, 1], got {opts['top_p']}"
    if opts["top_k"] < 0:
        return f"--top-k must be >= 0, got {opts['top_k']}"
    if opts["max_new_tokens"] < 1:
        return f"--max-new-tokens must be >= 1, got {opts['max_new_tokens']}"
    if not 0 <= opts["min_new_tokens"] <= opts["max_new_tokens"]:
        return "--min-new-tokens must be between 0 and --max-new-tokens"
    if n < 1:
        return f"--num-samples must be >= 1, got {n}"
    return None


def prompt_ids(tokenizer, prompt: str, *, system: str = "", think: bool = True,
               template_kwargs: dict | None = None) -> list[int]:
    """Chat-templated ids of one prompt, tokenized once (DESIGN pitfall 3). A tokenizer without
    a chat template gets the raw text, with whatever special tokens it adds itself."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    extra = dict(template_kwargs or {}) if think else {**(template_kwargs or {}), "enable_thinking": False}
    return encode_prompt(tokenizer, messages, extra)


def shown_text(text: str, hide_think: bool) -> str:
    """The completion as printed: with --hide-think, only the text after the think block."""
    if not hide_think:
        return text
    close = text.rfind(THINK_CLOSE)
    if close >= 0:
        return text[close + len(THINK_CLOSE):].strip()
    if THINK_OPEN in text:
        return f"[still thinking when the token limit was reached: {len(text)} characters hidden]"
    return text.strip()


class Sampler:
    """A loaded model and the options to answer prompts with."""

    def __init__(self, model, tokenizer, opts: dict, *, n: int, seed: int, system: str, think: bool,
                 template_kwargs: dict | None = None, stop_ids: list[int] | None = None):
        self.model, self.tokenizer, self.opts = model, tokenizer, opts
        self.n, self.seed, self.system, self.think = n, seed, system, think
        self.template_kwargs = template_kwargs or {}
        self.stop_ids = stop_ids if stop_ids is not None else stop_token_ids(tokenizer, model)
        self.calls = 0

    def answer(self, prompt: str) -> list[str]:
        import torch

        from grpokit.eval.evaluate import decode_completions
        from grpokit.rollout.generate import generate

        device = next(self.model.parameters()).device
        gen = torch.Generator(device=device)
        gen.manual_seed(self.seed * 1_000_003 + self.calls)  # each prompt its own stream, reproducibly
        self.calls += 1
        ids = prompt_ids(self.tokenizer, prompt, system=self.system, think=self.think,
                         template_kwargs=self.template_kwargs)
        rollout = generate(self.model, [ids], group_size=self.n, eos_id=self.stop_ids,
                           pad_id=self.tokenizer.pad_token_id, generator=gen, **self.opts)
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
    args = build_parser().parse_args(argv)
    from pathlib import Path

    from transformers.utils import logging as hf_logging

    from grpokit.errors import ConfigError
    from grpokit.models.loading import load_trained, read_grpokit_config
    from grpokit.models.locate import locate_model

    folder = Path(args.model)
    saved = read_grpokit_config(folder) if folder.is_dir() else None
    opts = sampling_options(args, saved)
    error = check_options(opts, args.num_samples)
    if error:
        print(f"grpokit sample: {error}", file=sys.stderr)
        return 2
    hf_logging.disable_progress_bar()
    try:
        if not args.model.startswith("builtin:"):
            locate_model(args.model, field="--model", flag="--model")
        model, tokenizer = load_trained(args.model, device=args.device, dtype=args.dtype,
                                        trust_remote_code=args.trust_remote_code, log=lambda *a: None)
    except ConfigError as exc:
        print(f"grpokit sample: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"grpokit sample: cannot load --model {args.model}: {exc}", file=sys.stderr)
        return 2
    if not getattr(tokenizer, "chat_template", None):
        print("grpokit sample: the tokenizer has no chat template; prompts are sent as raw text", file=sys.stderr)
    stops = stop_token_ids(tokenizer, model, saved.rollout.stop_token_ids if saved is not None else ())
    print(f"grpokit sample: a completion ends at any of {describe_ids(tokenizer, stops)}", file=sys.stderr)
    template_kwargs = args.chat_template_kwargs if args.chat_template_kwargs is not None else (
        saved.data.chat_template_kwargs if saved is not None else {})
    sampler = Sampler(model, tokenizer, opts, n=args.num_samples, seed=args.seed, system=args.system,
                      think=not args.no_think, template_kwargs=template_kwargs, stop_ids=stops)
    prompts = args.prompts or _read_prompts(sys.stdin, interactive=sys.stdin.isatty())
    for prompt in prompts:
        _print_answers(sampler.answer(prompt), args.hide_think, sys.stdout)
    return 0
