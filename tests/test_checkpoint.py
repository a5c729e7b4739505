"""Checkpoints: exact resume, SIGKILL during saves, SIGTERM, non-finite steps, disk full."""

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from grpokit.models.state import trainable_tensors
from grpokit.train import checkpoint as ckpt
from grpokit.config import Config
from grpokit.errors import ConfigError

HELPER = Path(__file__).parent / "helpers" / "slow_save_train.py"
TIMING = ("time/generation", "time/reward", "time/update")


def _flags(model_dir, out, **extra):
    base = {
        "model.name-or-path": str(model_dir), "rollout.prompts-per-step": 4, "rollout.group-size": 4,
        "train.steps": 12, "train.micro-batch-size": 5, "algo.mu": 2, "train.eval-every": 0,
        "train.warmup-steps": 2, "train.lr": 3e-4,
    }
    base.update(extra)
    args = ["--output-dir", str(out), "--log.no-progress", "--log.no-plot", "--log.no-tensorboard", "--log.rollouts"]
    for k, v in base.items():
        args += [f"--{k}", str(v)]
    return args


def _train(args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "grpokit", "train", *args], capture_output=True, text=True,
                          env=env, timeout=300, **kw)


def _final_state(out: Path):
    last = ckpt.latest_checkpoint(out / "checkpoints")
    state = json.loads((last / "state.json").read_text())
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    rows = [{k: v for k, v in r.items() if k not in TIMING} for r in rows]
    rollouts = (out / "rollouts.jsonl").read_text().splitlines()
    return {
        "params": load_file(str(last / "trainable.safetensors")),
        "optim": load_file(str(last / "optimizer.safetensors")),
        "lr": state["trainer"]["scheduler"]["_last_lr"],
        "prompt_order": state["trainer"]["prompt_order"],
        "rows": rows,
        "rollouts": rollouts,
    }


def _assert_identical(a, b):
    assert a["params"].keys() == b["params"].keys()
    for k in a["params"]:
        assert torch.equal(a["params"][k], b["params"][k]), k
    for k in a["optim"]:
        assert torch.equal(a["optim"][k], b["optim"][k]), k
    assert a["lr"] == b["lr"] and a["prompt_order"] == b["prompt_order"]
    assert a["rollouts"] == b["rollouts"]  # prompt order, sampled token ids, rewards
    assert a["rows"] == b["rows"]  # every logged metric except wall-clock timings


@pytest.fixture(scope="module")
def straight_run(arithmetic_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    proc = _train(_flags(arithmetic_model_dir, out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _final_state(out)


@pytest.mark.slow
def test_stop_and_resume_is_bit_identical_to_a_straight_run(arithmetic_model_dir, straight_run, tmp_path):
    out = tmp_path / "split"
    first = _train(_flags(arithmetic_model_dir, out, **{"train.stop-at-step": 5}))
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Continue with" in first.stdout and not (out / "summary.json").exists()
    assert [p.name for p in ckpt.complete_checkpoints(out / "checkpoints")] == ["step-00000005"]
    second = _train(_flags(arithmetic_model_dir, out, **{"train.resume": "auto"}))
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stdout
    _assert_identical(_final_state(out), straight_run)
    assert len(straight_run["rollouts"]) == 12 and len(straight_run["params"]) > 10


@pytest.mark.slow
def test_sigkill_during_saves_always_resumes_from_the_last_complete_checkpoint(
        arithmetic_model_dir, straight_run, tmp_path):
    out = tmp_path / "killed"
    args = _flags(arithmetic_model_dir, out, **{"train.save-every": 1, "train.resume": "auto"})
    rng = random.Random(0)
    kills = 0
    for _ in range(14):
        before = [p.name for p in ckpt.complete_checkpoints(out / "checkpoints")]
        proc = subprocess.Popen([sys.executable, str(HELPER), *args], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        saving, seen = None, 0
        for line in proc.stdout:  # the first save of each launch commits, so every launch progresses
            seen += line.startswith("SAVING")
            if seen == 2:
                saving = line.split()[1]
                break
        if saving is None:  # finished without being killed
            assert proc.wait(timeout=60) == 0
            break
        time.sleep(rng.uniform(0.0, 0.3))  # somewhere inside the slowed save (7 fsyncs x 40 ms)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        kills += 1
        done = ckpt.complete_checkpoints(out / "checkpoints")
        for path in done:  # every checkpoint that counts as complete loads whole
            ckpt.load_checkpoint(path)
        assert done and (not before or done[-1].name >= before[-1])  # never behind the last complete one
    else:
        pytest.fail("the run never finished")
    assert kills >= 10
    assert (out / "summary.json").exists()
    _assert_identical(_final_state(out), straight_run)


def test_sigterm_finishes_the_step_checkpoints_and_exits_cleanly(arithmetic_model_dir, tmp_path):
    out = tmp_path / "term"
    proc = subprocess.Popen([sys.executable, "-m", "grpokit", "train",
                             *_flags(arithmetic_model_dir, out, **{"train.steps": 400})],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"  # the signal handlers are installed before the first row
    deadline = time.monotonic() + 600  # generous: a loaded machine is slow, and a miss fails below
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 4):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run logged fewer than 4 rows before the signal: {proc.communicate()[1][-2000:]}")
        time.sleep(0.2)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-2000:]
    assert time.monotonic() - sent < 30
    assert "stopped (SIGTERM)" in stdout
    last = ckpt.latest_checkpoint(out / "checkpoints")
    steps_logged = len([1 for x in (out / "metrics.jsonl").read_text().splitlines() if '"update/loss"' in x])
    assert last is not None and last.name == f"step-{steps_logged:08d}"
    assert not (out / "summary.json").exists()


def _small_cfg(model_dir, out, **train):
    cfg = Config(output_dir=str(out))
    cfg.model.name_or_path = str(model_dir)
    cfg.rollout.prompts_per_step, cfg.rollout.group_size = 4, 4
    cfg.train.eval_every, cfg.log.progress, cfg.log.plot, cfg.log.tensorboard = 0, False, False, False
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


def test_nonfinite_steps_are_skipped_then_the_run_stops_after_k_in_a_row(arithmetic_model_dir, tmp_path, monkeypatch):
    import grpokit.train.trainer as trainer_mod
    from grpokit.train.run import run_training

    bad_steps = {2, 5, 6, 7}
    real = trainer_mod.aggregate
    calls = {"trainer": None}

    def poisoned(loss_BT, mask_BT, kind, **kw):
        value = real(loss_BT, mask_BT, kind, **kw)
        return value * float("nan") if calls["trainer"].step_idx + 1 in bad_steps else value

    monkeypatch.setattr(trainer_mod, "aggregate", poisoned)
    real_init = trainer_mod.Trainer.__init__

    def spy_init(self, *a, **kw):
        real_init(self, *a, **kw)
        calls["trainer"] = self

    monkeypatch.setattr(trainer_mod.Trainer, "__init__", spy_init)
    out = tmp_path / "nan"
    cfg = _small_cfg(arithmetic_model_dir, out, steps=20, save_every=1, max_nonfinite_steps=3, keep_last=10)
    cfg.algo.skip_zero_advantage = False  # every step computes a loss, whatever tokens were sampled
    with pytest.raises(FloatingPointError, match="3 steps in a row had a non-finite"):
        run_training(cfg, log=lambda *a: None)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()][1:]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert [r["update/nonfinite_steps"] for r in rows] == [0, 1, 1, 1, 2, 3, 4]
    s4, s6 = (load_file(str(out / "checkpoints" / f"step-0000000{i}" / "trainable.safetensors")) for i in (4, 6))
    assert all(torch.equal(s4[k], s6[k]) for k in s4)  # skipped steps left the weights alone
    assert all(torch.isfinite(v).all() for v in s6.values())


def test_disk_full_during_save_keeps_the_previous_checkpoint(arithmetic_model_dir, tmp_path, monkeypatch):
    from grpokit.train.run import run_training

    out = tmp_path / "full"
    run_training(_small_cfg(arithmetic_model_dir, out, steps=2, save_every=1), log=lambda *a: None)
    assert [p.name for p in ckpt.complete_checkpoints(out / "checkpoints")] == ["step-00000001", "step-00000002"]
    real_save = ckpt.save_file
    count = {"n": 0}

    def full_disk(tensors, path):
        count["n"] += 1
        if count["n"] == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(tensors, path)

    monkeypatch.setattr(ckpt, "save_file", full_disk)
    cfg = _small_cfg(arithmetic_model_dir, out, steps=3, resume="auto", allow_config_change=True)
    with pytest.raises(ckpt.CheckpointError, match=r"No space left on device.*previous checkpoint step-00000002 is kept"):
        run_training(cfg, log=lambda *a: None)
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["step-00000001", "step-00000002"]  # no partial folder left behind
    ckpt.load_checkpoint(out / "checkpoints" / "step-00000002")


def test_resume_with_a_different_config_names_the_fields(arithmetic_model_dir, tmp_path):
    from grpokit.train.run import run_training

    out = tmp_path / "cfg"
    run_training(_small_cfg(arithmetic_model_dir, out, steps=1), log=lambda *a: None)
    cfg = _small_cfg(arithmetic_model_dir, out, steps=1, resume="auto", lr=1e-3)
    with pytest.raises(ConfigError, match=r"train\.lr: 0\.0002 in the checkpoint, 0\.001 now"):
        run_training(cfg, log=lambda *a: None)


def test_startup_problems_are_reported_before_the_model_loads(tmp_path, monkeypatch):
    import grpokit.train.run as run_mod
    from grpokit.rewards import RewardError

    monkeypatch.setattr(run_mod, "load_model", lambda *a, **k: pytest.fail("model loaded before validation"))
    cfg = Config(output_dir=str(tmp_path / "a"))
    cfg.rollout.group_size = 1
    with pytest.raises(ConfigError, match="rollout.group_size: must be >= 2"):
        run_mod.run_training(cfg)
    cfg = Config(output_dir=str(tmp_path / "b"))
    cfg.reward.names = ["arithmetc"]
    with pytest.raises(RewardError, match="arithmetic"):
        run_mod.run_training(cfg)
    cfg = Config(output_dir=str(tmp_path / "c"))
    cfg.algo.aggregation = "token_meen"
    with pytest.raises(ConfigError, match="did you mean 'token_mean'"):
        run_mod.run_training(cfg)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_atomic_commit_ignores_unfinished_folders(tmp_path):
    root = tmp_path / "checkpoints"
    (root / "step-00000003").mkdir(parents=True)  # no manifest: an interrupted write
    (root / ".tmp-step-00000004-1").mkdir()
    assert ckpt.latest_checkpoint(root) is None
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 2)).sum().backward()
    opt.step()
    path = ckpt.save_checkpoint(root, 1, trainable=trainable_tensors(model), optimizer_state=opt.state_dict(),
                                state={"x": 1}, config={}, manifest={})
    assert ckpt.latest_checkpoint(root) == path
    assert not (root / ".tmp-step-00000004-1").exists()
    loaded = ckpt.load_checkpoint(path)
    opt2 = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters())
    ckpt.load_optimizer(opt2, loaded["optimizer_tensors"], loaded["optimizer_layout"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_a_field_newer_than_the_checkpoint_differs_only_off_its_default():
    from grpokit.train.checkpoint import config_differences

    saved = {"algo": {"beta": 0.0}, "train": {"lr": 1e-4}}
    defaults = {"algo": {"beta": 0.0, "dynamic_sampling": False}, "train": {"lr": 1e-4}, "alerts": {"on": True}}
    same = {"algo": {"beta": 0.0, "dynamic_sampling": False}, "train": {"lr": 1e-4}, "alerts": {"on": True}}
    assert config_differences(saved, same, defaults=defaults) == []
    changed = {"algo": {"beta": 0.0, "dynamic_sampling": True}, "train": {"lr": 1e-4}, "alerts": {"on": True}}
    assert config_differences(saved, changed, defaults=defaults) == [
        "algo.dynamic_sampling: '<missing>' in the checkpoint, True now"]
    # without defaults (or a field the current config lacks) every missing field differs
    assert config_differences(saved, same) == [
        "alerts: '<missing>' in the checkpoint, {'on': True} now",
        "algo.dynamic_sampling: '<missing>' in the checkpoint, False now"]
