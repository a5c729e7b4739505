"""`grpokit train | ...` — the command line. Config fields become flags (--train.lr 1e-4);
`--config FILE.yaml` loads a file first, and flags given after it override the file."""

from __future__ import annotations

import sys

USAGE = """usage: grpokit COMMAND [options]

commands:
  train    train with GRPO (no options: the built-in arithmetic demo)
  sample   answer prompts with a model (chat template, same sampling options; interactive without prompts)
  eval     score a model on a preset or data file: accuracy, pass@k, before/after (--compare)
  view     see a run's metrics and completions in a browser (one HTML file, or --serve)

`grpokit COMMAND --help` lists the options of a command."""


def _split_config_flag(argv: list[str]) -> tuple[str | None, list[str]]:
    """Pull `--config FILE` (or --config=FILE) out of argv."""
    rest, path, i = [], None, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--config":
            if i + 1 >= len(argv):
                raise SystemExit("grpokit: --config needs a file path")
            path, i = argv[i + 1], i + 2
            continue
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    return path, rest


def parse_config(argv: list[str], prog: str = "grpokit train"):
    """Config from defaults, an optional YAML file, then command-line overrides."""
    import tyro

    from grpokit.config import Config, load_yaml

    path, rest = _split_config_flag(argv)
    default = load_yaml(path) if path else Config()
    return tyro.cli(Config, default=default, args=rest, prog=prog,
                    description="Train with GRPO. --config FILE.yaml loads a config file; later flags override it.")


def cmd_train(argv: list[str]) -> int:
    from grpokit.train.checkpoint import CheckpointError
    from grpokit.config import ConfigError
    from grpokit.rewards import RewardError
    from grpokit.train.run import run_training

    try:
        cfg = parse_config(argv)
        run_training(cfg)
    except (ConfigError, RewardError) as exc:
        print(f"grpokit: config error: {exc}", file=sys.stderr)
        return 2
    except (CheckpointError, FloatingPointError) as exc:
        print(f"grpokit: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("grpokit: stopped at once; the last complete checkpoint is kept", file=sys.stderr)
        return 130
    return 0


# name -> "module:function"; each command's module is imported only when it runs.
COMMANDS = {"train": "grpokit.cli.main:cmd_train"}
COMMANDS["sample"] = "grpokit.cli.sample:main"
COMMANDS["eval"] = "grpokit.cli.eval:main"
COMMANDS["view"] = "grpokit.viewer.cli:main"


def _resolve(target: str):
    import importlib

    module, _, fn = target.partition(":")
    return getattr(importlib.import_module(module), fn)


def _no_model_io_bars() -> None:
    """No transformers progress bar for each model load and save ("Loading weights", "Writing
    model shards"): grpokit's own lines say what happens. Download bars (huggingface_hub's) stay,
    and transformers' warnings still show."""
    from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars
    from transformers.utils import logging as hf_logging

    hub_bars = not are_progress_bars_disabled()
    hf_logging.disable_progress_bar()  # also turns off huggingface_hub's bars: turn those back on
    if hub_bars:
        enable_progress_bars()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        import difflib

        near = difflib.get_close_matches(command, list(COMMANDS), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        print(f"grpokit: unknown command {command!r}{hint}\n\n{USAGE}", file=sys.stderr)
        return 2
    _no_model_io_bars()
    code = _resolve(COMMANDS[command])(rest)
    dist = sys.modules.get("grpokit.parallel.dist")  # loaded only by commands that may join a process group
    return dist.leave_process(code) if dist is not None else code
