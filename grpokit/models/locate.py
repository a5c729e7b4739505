"""Clear errors at the model/data boundary, before any compute.

``locate_model`` finds the model a config names, or raises one short ConfigError saying what was
tried (a local folder, the Hugging Face cache, the hub) and how to point at a local folder,
instead of transformers' retries and OSError traceback. ``naming_the_model`` turns "this
tokenizer cannot encode row N" into an error that names the model and what to do.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from grpokit.data.chat import PromptEncodeError
from grpokit.errors import ConfigError

__all__ = ["locate_model", "naming_the_model"]


def _looks_local(name: str) -> bool:
    """A path rather than a hub id (owner/name): absolute, relative with ./ or ~, or deeper."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


def _hub_attempt(name: str, revision: str) -> str | None:
    """None when config.json of hub repo `name` is cached or can be fetched; else why not."""
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(name, "config.json", revision=revision or None)
    except Exception as exc:  # an id the hub would refuse ("a/b/c", bad characters)
        return f"not a valid hub id ({type(exc).__name__}: {exc})"
    if isinstance(cached, str):
        return None
    where = f"the Hugging Face cache {constants.HF_HUB_CACHE} (not there)"
    if constants.HF_HUB_OFFLINE:
        return f"{where}; the hub (not asked: HF_HUB_OFFLINE is set)"
    try:
        hf_hub_download(name, "config.json", revision=revision or None)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        return f"{where}; the hub ({type(exc).__name__}: {reason})"
    return None


def locate_model(name: str, revision: str = "", field: str = "model.name_or_path",
                 flag: str = "--model.name-or-path") -> None:
    """Return when ``name`` is a local model folder or a hub model that is cached or reachable;
    otherwise raise ConfigError naming ``field``, what was tried and how to use a local folder."""
    folder = Path(name).expanduser()
    if folder.is_dir():
        return
    tried = f"a local folder {folder.resolve()} (none there)"
    if not _looks_local(name):
        why = _hub_attempt(name, revision)
        if why is None:
            return
        tried += f"; {why}"
    raise ConfigError(
        f"{field}: cannot find the model {name!r}. Tried: {tried}. To train or sample offline, download the "
        f"model's folder (config.json, weights, tokenizer files) on a machine with network and point at it: "
        f"{flag} /path/to/folder")


@contextlib.contextmanager
def naming_the_model(name: str, flag: str):
    """Re-raise PromptEncodeError (a tokenizer that cannot encode the data) as a ConfigError that
    names the model and says what to do."""
    try:
        yield
    except PromptEncodeError as exc:
        builtin = (" The built-in arithmetic model's character tokenizer knows only digits and arithmetic "
                   "signs." if name.startswith("builtin:") else "")
        raise ConfigError(f"model {name!r} cannot read this data: {exc}.{builtin} Give a model whose tokenizer "
                          f"covers the text with {flag} (a local folder or hub id).") from None
