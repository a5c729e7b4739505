"""`grpokit train | eval | sample` — the command line. Config fields become flags (--train.lr 1e-4);
`--config FILE.yaml` (or a shipped recipe's name) loads a file first, and flags override it.
Every command parses its typed config through grpokit.cli.args.parse_command."""

from __future__ import annotations

import os
import sys

USAGE = """usage: grpokit COMMAND [options]

commands:
  train    train with GRPO (no options: the built-in arithmetic demo)
  doctor   will this run learn? checks a train config before any training (exit 0 / 1 warnings / 2 will not learn)
  sample   answer prompts with a model (chat template, same sampling options; interactive without prompts)
  eval     score a model on a preset or data file: accuracy, pass@k, before/after (--eval.compare)
  view     see a run's metrics and completions in a browser (one HTML file, or --serve)

`grpokit COMMAND --help` lists the options of a command."""

TRAIN_DESCRIPTION = "Train with GRPO."
DOCTOR_DESCRIPTION = ("Will this run learn? Samples the run's first doctor.prompts prompts at its exact settings, "
                      "scores them, times one full step, and names each problem with its fix (same config and flags "
                      "as train). Exit status 0 = will learn, 1 = warnings, 2 = will not learn.")


def parse_config(argv: list[str], prog: str = "grpokit train", description: str = TRAIN_DESCRIPTION):
    """The training Config from defaults, an optional YAML file, then command-line overrides."""
    from grpokit.cli.args import parse_command
    from grpokit.config import Config

    return parse_command(Config, argv, prog=prog, description=description)


def apply_process_settings(cfg, log=print) -> list[str]:
    """Settings that change the whole process, applied once by the command before the run, and
    logged: today train.keep_freed_memory (glibc malloc keeps freed blocks; see
    grpokit/parallel/host_memory.py), in single-process runs on the CPU, where its gain was
    measured (a launcher's WORLD_SIZE > 1 keeps glibc's defaults). Returns what was applied."""
    from grpokit.parallel import host_memory

    applied = []
    single = int(os.environ.get("WORLD_SIZE", "1")) == 1
    device = cfg.model.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.train.keep_freed_memory and single and device == "cpu" and host_memory.keep_freed_memory():
        applied.append("train.keep_freed_memory")
        log("process: glibc malloc keeps freed memory for reuse (train.keep_freed_memory; "
            "--train.no-keep-freed-memory turns it off)")
    return applied


def cmd_train(argv: list[str]) -> int:
    from grpokit.errors import CheckpointError, ConfigError, RewardError
    from grpokit.train.doctor_report import WillNotLearn
    from grpokit.train.run import run_training

    try:
        cfg = parse_config(argv)
        apply_process_settings(cfg)
        run_training(cfg)
    except WillNotLearn as exc:
        if str(exc):  # the doctor's table, from rank 0 only
            print(exc)
        return 2
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


def cmd_doctor(argv: list[str]) -> int:
    """`grpokit doctor`: the same config and flags as train; exit 0 / 1 / 2 (docs/doctor.md)."""
    from grpokit.errors import ConfigError, RewardError
    from grpokit.train.run import run_doctor

    try:
        cfg = parse_config(argv, prog="grpokit doctor", description=DOCTOR_DESCRIPTION)
        apply_process_settings(cfg, log=lambda *a: None)
        return run_doctor(cfg)
    except (ConfigError, RewardError) as exc:
        print(f"grpokit: config error: {exc}", file=sys.stderr)
        return 2


# name -> "module:function"; each command's module is imported only when it runs.
COMMANDS = {"train": "grpokit.cli.main:cmd_train", "doctor": "grpokit.cli.main:cmd_doctor",
            "sample": "grpokit.cli.sample:main", "eval": "grpokit.cli.eval:main"}
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
    from grpokit.registry import did_you_mean

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"grpokit: unknown command {command!r}{did_you_mean(command, COMMANDS)}\n\n{USAGE}", file=sys.stderr)
        return 2
    _no_model_io_bars()
    code = _resolve(COMMANDS[command])(rest)
    dist = sys.modules.get("grpokit.parallel.dist")  # loaded only by commands that may join a process group
    return dist.leave_process(code) if dist is not None else code
