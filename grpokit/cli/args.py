"""The one parser of every command: a typed config from grpokit.config, then a YAML file, then flags.

`grpokit train`, `grpokit eval` and `grpokit sample` each read one dataclass of grpokit.config
(Config, EvalCommandConfig, SampleCommandConfig) through parse_command(): the same sections,
the same field comments as help, the same checks of every key. Two short forms stay for the
flags every command names first: `--model X` is `--model.name_or_path X` and `--data X` is
`--data.source X`.
"""

from __future__ import annotations

SHORT_FORMS = {"--model": "--model.name_or_path", "--data": "--data.source"}


def split_config_flag(argv: list[str]) -> tuple[str | None, list[str]]:
    """Pull `--config FILE` (or --config=FILE) out of argv: (FILE or None, the other arguments)."""
    rest, path, i = [], None, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--config":
            if i + 1 >= len(argv):
                raise SystemExit("grpokit: --config needs a file path or a shipped recipe's name")
            path, i = argv[i + 1], i + 2
            continue
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    return path, rest


def expand_short_forms(argv: list[str]) -> list[str]:
    """argv with `--model X` / `--model=X` / `--data X` written as the fields they set."""
    out = []
    for arg in argv:
        flag, eq, value = arg.partition("=")
        out.append(SHORT_FORMS[flag] + eq + value if flag in SHORT_FORMS else arg)
    return out


def parse_command(cls, argv: list[str], *, prog: str, description: str, base=None):
    """``cls`` from ``base`` (default: cls()), then the `--config` file (a path or a shipped
    recipe's name), then the flags. An unknown key in the file raises ConfigError naming it and
    the nearest valid one; an unknown flag makes tyro print the nearest and exit with status 2."""
    import tyro

    from grpokit.config import load_yaml

    path, rest = split_config_flag(argv)
    default = base if base is not None else cls()
    if path:
        default = load_yaml(path, cls, default)
    short = ", ".join(f"{k} X = {v} X" for k, v in SHORT_FORMS.items())
    return tyro.cli(cls, default=default, args=expand_short_forms(rest), prog=prog,
                    description=f"{description}\n\n--config FILE.yaml (or a shipped recipe's name) loads a "
                                f"config file; later flags override it. Short forms: {short}.")
