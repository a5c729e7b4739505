"""Checkpoints that survive being killed at any instant, and exact resume: the files and their
commit protocol, then a run's side (its output folder, save_run, resume_run and the checks a
resume makes).

A checkpoint is a folder `step-00000042/` holding:
  trainable.safetensors   the trainable parameters by name (full model, or the adapter)
  optimizer.safetensors   optimiser tensors;  optimizer.json  its param groups and layout
  rng.safetensors         torch CPU/CUDA generator states;  state.json  everything else
                          (step, scheduler, prompt-order position, python/numpy RNG,
                          metrics rows written, counters)
  config.json             the run's config
  manifest.json           written last: versions, data fingerprint, file list -> "complete"
No pickle: tensors go to safetensors, the rest to JSON.

Commit protocol: write everything into `.tmp-step-.../` on the same filesystem, fsync each file,
rename the folder into place, fsync the parent. A folder without a manifest is never used.
Old checkpoints are deleted only after the new one is committed.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from grpokit.config import Config, to_dict
from grpokit.errors import CheckpointError, ConfigError
from grpokit.parallel.dist import Dist
from grpokit.parallel.sharding import full_state, load_full_state, reads_weights
from grpokit.train.logs import truncate_lines
from grpokit.train.trainer import Trainer

STEP_DIR = re.compile(r"^step-(\d{8})$")


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True))


# ------------------------------------------------------------------ state <-> files


def optimizer_files(sd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer.state_dict() as (tensors, JSON layout)."""
    tensors, layout = {}, {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{key}"] = value.contiguous().cpu()
            else:
                layout.setdefault("scalars", {})[f"{idx}.{key}"] = value
    layout["param_groups"] = sd["param_groups"]
    return tensors, layout


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], layout: dict) -> None:
    opt.load_state_dict(optimizer_state(tensors, layout))


def optimizer_state(tensors: dict[str, torch.Tensor], layout: dict) -> dict:
    """The optimizer.state_dict() that optimizer_files wrote."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    for key, value in layout.get("scalars", {}).items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    return {"state": state, "param_groups": layout["param_groups"]}


def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            tensors[f"torch_cuda_{i}"] = torch.cuda.get_rng_state(i)
    py = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return tensors, {"python": [py[0], list(py[1]), py[2]],
                     "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]}


def merge_rank_rng(states: list[tuple[dict, dict]]) -> tuple[dict[str, torch.Tensor], dict]:
    """One file for every rank's generators: tensors keyed rank{r}.NAME, info as a list."""
    tensors = {f"rank{r}.{k}": v for r, (t, _) in enumerate(states) for k, v in t.items()}
    return tensors, {"ranks": [info for _, info in states]}


def set_rng_state(tensors: dict[str, torch.Tensor], info: dict, rank: int = 0) -> None:
    """Restore this rank's generators (rank 0's when the checkpoint had fewer ranks)."""
    rank = rank if rank < len(info["ranks"]) else 0
    info = info["ranks"][rank]
    mine = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(f"rank{rank}.")}
    torch.set_rng_state(mine["torch_cpu"])
    for key, value in mine.items():
        if key.startswith("torch_cuda_") and torch.cuda.is_available():
            torch.cuda.set_rng_state(value, int(key.rsplit("_", 1)[1]))
    v, keys, gauss = info["python"]
    random.setstate((v, tuple(keys), gauss))
    kind, keys, pos, has_gauss, cached = info["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


# ------------------------------------------------------------------ commit, list, prune


def save_checkpoint(root: Path, step: int, *, trainable: dict[str, torch.Tensor], optimizer_state: dict,
                    state: dict, config: dict, manifest: dict, keep_last: int = 2,
                    rng: list[tuple[dict, dict]] | None = None) -> Path:
    """Write and atomically commit checkpoint `step`; prune older ones only after the commit.
    `trainable` is trainable_tensors(model), `optimizer_state` optimizer.state_dict() (or the
    same gathered from shards: grpokit.parallel.sharding.full_state).

    On any error (disk full included) the partial folder is removed and the previous checkpoint
    is left as it was."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        opt_tensors, opt_layout = optimizer_files(optimizer_state)
        rng_tensors, rng_info = merge_rank_rng(rng or [rng_state()])
        files = {
            "trainable.safetensors": lambda p: save_file(trainable, str(p)),
            "optimizer.safetensors": lambda p: save_file(opt_tensors, str(p)),
            "optimizer.json": lambda p: _write_json(p, opt_layout),
            "rng.safetensors": lambda p: save_file(rng_tensors, str(p)),
            "state.json": lambda p: _write_json(p, {**state, "rng": rng_info, "step": step}),
            "config.json": lambda p: _write_json(p, config),
        }
        for name, write in files.items():
            write(tmp / name)
            _fsync_file(tmp / name)
        _write_json(tmp / "manifest.json", {**manifest, "step": step, "files": sorted(files), "complete": True})
        _fsync_file(tmp / "manifest.json")
        _fsync_dir(tmp)
        if final.exists():  # a complete checkpoint of this step already exists (re-save after resume)
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(root)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        previous = latest_checkpoint(root)
        kept = f"the previous checkpoint {previous.name} is kept" if previous else "no earlier checkpoint exists"
        if isinstance(exc, OSError):
            raise CheckpointError(f"could not write checkpoint at step {step} ({exc.strerror or exc}); "
                                  f"the partial folder was removed and {kept}") from exc
        raise
    prune(root, keep_last)
    return final


def complete_checkpoints(root: Path) -> list[Path]:
    """Committed checkpoints, oldest first (folders without a complete manifest are ignored)."""
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        m = STEP_DIR.match(child.name)
        if m and (child / "manifest.json").is_file():
            try:
                if json.loads((child / "manifest.json").read_text()).get("complete"):
                    found.append((int(m.group(1)), child))
            except (OSError, ValueError):
                continue
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: Path) -> Path | None:
    done = complete_checkpoints(root)
    return done[-1] if done else None


def prune(root: Path, keep_last: int) -> None:
    """Delete all but the newest keep_last checkpoints, and leftovers of interrupted writes."""
    done = complete_checkpoints(root)
    for old in done[: max(0, len(done) - max(1, keep_last))]:
        shutil.rmtree(old, ignore_errors=True)
    for child in root.iterdir():
        if child.name.startswith(".tmp-step-"):
            pid = child.name.rsplit("-", 1)[-1]
            if not pid.isdigit() or int(pid) != os.getpid():
                shutil.rmtree(child, ignore_errors=True)


def load_checkpoint(path: Path, weights: bool = True) -> dict:
    """Everything a checkpoint holds, as tensors and plain objects (weights=False: without the
    model's and the optimiser's tensors, for a rank that receives them from rank 0)."""
    manifest = json.loads((path / "manifest.json").read_text())
    if not manifest.get("complete"):
        raise CheckpointError(f"{path} is not a complete checkpoint")
    return {
        "manifest": manifest,
        "trainable": load_file(str(path / "trainable.safetensors")) if weights else {},
        "optimizer_tensors": load_file(str(path / "optimizer.safetensors")) if weights else {},
        "optimizer_layout": json.loads((path / "optimizer.json").read_text()),
        "rng_tensors": load_file(str(path / "rng.safetensors")),
        "state": json.loads((path / "state.json").read_text()),
        "config": json.loads((path / "config.json").read_text()),
    }


def config_differences(saved: dict, current: dict, prefix: str = "", defaults: dict | None = None) -> list[str]:
    """Dotted names of fields whose values differ between two config dicts. A field the saved
    config lacks (it was added to grpokit after the checkpoint was written) differs only when
    the current value is not its default (`defaults`, a config dict of the same shape)."""
    out = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key, "<missing>"), current.get(key, "<missing>")
        default = (defaults or {}).get(key, "<missing>")
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, name + ".", default if isinstance(default, dict) else None)
        elif a == "<missing>" and b == default:
            continue  # a field newer than the checkpoint, at the value the old code behaved as
        elif a != b:
            out.append(f"{name}: {a!r} in the checkpoint, {b!r} now")
    return out


# ------------------------------------------------------------------ a run's output folder, save, resume

# Config fields that may change between a run and its resumption.
RESUME_FREE = {"output_dir", "train.resume", "train.stop_at_step", "train.allow_config_change", "log", "model.device"}


def prepare_output_dir(cfg: Config) -> tuple[Path, Path | None]:
    """(output folder, checkpoint to resume from). A folder that already holds a run is refused
    unless resuming, so nothing saved is overwritten. Raises ConfigError naming the field."""
    out = Path(cfg.output_dir or f"runs/{datetime.now():%Y%m%d-%H%M%S}")
    resume = cfg.train.resume
    if resume:
        found = latest_checkpoint(out / "checkpoints") if resume == "auto" else Path(resume)
        if found is None and resume == "auto" and _same_run_without_checkpoint(out, cfg):
            out.mkdir(parents=True, exist_ok=True)
            for name in ("metrics.jsonl", "rollouts.jsonl"):
                truncate_lines(out / name, 0)  # logs of steps that were never checkpointed
            return out, None  # nothing to resume yet: a fresh start
        if found is None:
            raise ConfigError(f"train.resume: no complete checkpoint in {out / 'checkpoints'}")
        if not (found / "manifest.json").is_file():
            raise ConfigError(f"train.resume: {found} is not a complete checkpoint")
        return out, found
    if out.exists() and any(p.name != "doctor.json" for p in out.iterdir()):  # a doctor's report is no run
        raise ConfigError(f"output_dir: {out} already holds files from another run; choose another "
                          "--output-dir, or continue it with --train.resume auto")
    out.mkdir(parents=True, exist_ok=True)
    return out, None


def agree_output_dir(cfg: Config, d: Dist) -> tuple[Path, Path | None]:
    """prepare_output_dir decided by rank 0; every rank gets the same answer (or error)."""
    result = None
    if d.is_main:
        try:
            result = prepare_output_dir(cfg)
        except ConfigError as exc:
            result = exc
    result = d.broadcast_object(result)
    if isinstance(result, Exception):
        raise result
    return result


def _same_run_without_checkpoint(out: Path, cfg: Config) -> bool:
    """True for an empty/missing folder, or one holding only this same config's early logs."""
    if not out.exists() or not any(out.iterdir()):
        return True
    saved = out / "config.json"
    if not saved.is_file():
        return False
    return not binding_differences(json.loads(saved.read_text()), cfg)


def binding_differences(saved: dict, cfg: Config) -> list[str]:
    """Config differences that would change the run's result (RESUME_FREE fields excluded)."""
    diffs = config_differences(saved, to_dict(cfg), defaults=to_dict(Config()))
    return [d for d in diffs if not any(d.startswith(f + ".") or d.startswith(f + ":") for f in RESUME_FREE)]


def data_fingerprint(examples: list[dict]) -> str:
    """A short hash of the training prompts and answers, stored in the manifest."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps([ex.get("prompt"), ex.get("answer")], default=str).encode())
    return h.hexdigest()[:16]


def check_resume(saved: dict, cfg: Config, fingerprint: str) -> None:
    """ConfigError listing what differs from the checkpoint, unless train.allow_config_change."""
    diffs = binding_differences(saved["config"], cfg)
    if saved["manifest"].get("data_fingerprint") != fingerprint:
        diffs.append(f"data: fingerprint {saved['manifest'].get('data_fingerprint')} in the checkpoint, "
                     f"{fingerprint} now")
    if diffs and not cfg.train.allow_config_change:
        raise ConfigError("train.resume: the checkpoint was made with a different config or data:\n  "
                          + "\n  ".join(diffs) + "\n(--train.allow-config-change resumes anyway)")


def versions() -> dict:
    import transformers

    from grpokit.version import __version__

    return {"grpokit": __version__, "torch": torch.__version__, "transformers": transformers.__version__}


def save_run(trainer: Trainer, out: Path, *, fingerprint: str, state: dict) -> Path:
    """Checkpoint the run at trainer.step_idx into out/checkpoints: full weights and optimiser
    state (gathered from shards), every rank's generators, the loop state and `state` (the run's
    own: accuracy before, log rows). Every rank calls it; rank 0 writes."""
    d, cfg = trainer.dist, trainer.cfg
    rng = d.gather_objects(rng_state())
    tensors = full_state(trainer.model, trainer.optimizer, d)
    path = out / "checkpoints" / f"step-{trainer.step_idx:08d}"
    if d.is_main:
        manifest = {"data_fingerprint": fingerprint, "versions": versions(), "world_size": d.world}
        path = save_checkpoint(out / "checkpoints", trainer.step_idx, trainable=tensors[0], optimizer_state=tensors[1],
                               state={"trainer": trainer.state_dict(), **state}, config=to_dict(cfg),
                               manifest=manifest, keep_last=cfg.train.keep_last, rng=rng)
    d.barrier()
    return path


def resume_run(path: Path, trainer: Trainer, fingerprint: str) -> dict:
    """Load checkpoint `path` into the trainer after checking its config and data: weights and
    optimiser state (into the shards), loop state, this rank's generators. Returns the run's own
    state that save_run stored. Every rank calls it."""
    d = trainer.dist
    saved = load_checkpoint(path, weights=reads_weights(trainer.model, d))
    check_resume(saved, trainer.cfg, fingerprint)
    load_full_state(trainer.model, trainer.optimizer, saved["trainable"],
                    optimizer_state(saved["optimizer_tensors"], saved["optimizer_layout"]), d)
    trainer.load_state_dict(saved["state"]["trainer"])
    set_rng_state(saved["rng_tensors"], saved["state"]["rng"], rank=d.rank)
    return saved["state"]
