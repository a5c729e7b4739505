"""`grpokit train`'s pre-flight: a run that will not learn stops before step 1 with the doctor's
table (exit 2, nothing trained or saved but doctor.json); --doctor.no-preflight runs it; on the
demo the pre-flight says "will learn" in one line and leaves the run exactly as without it."""

import json

import torch

from grpokit.config import Config
from grpokit.train.run import run_training

CONSTANT = "def constant(completion, example):\n    return 0.5\n"


def train_args(model_dir, out, *extra) -> list[str]:
    return ["train", "--model", str(model_dir), "--output-dir", str(out), "--data.eval-size", "8",
            "--log.no-progress", "--log.no-plot", "--log.no-tensorboard", *extra]


def test_a_run_that_will_not_learn_stops_before_step_1_and_the_flag_skips_the_check(
        arithmetic_model_dir, tmp_path, capsys):
    from grpokit.cli.main import main

    reward = tmp_path / "const.py"
    reward.write_text(CONSTANT)
    out = tmp_path / "run"
    args = train_args(arithmetic_model_dir, out, "--reward.names", f"{reward}:constant", "--train.steps", "1")
    assert main(args) == 2
    printed = capsys.readouterr().out
    assert "gives the same value (0.5) to every completion" in printed
    assert "verdict: will not learn (exit status 2)" in printed
    assert "the pre-flight stopped the run before step 1" in printed and "--doctor.no-preflight" in printed
    assert sorted(p.name for p in out.iterdir()) == ["doctor.json"]  # no step, no model, no metrics
    assert json.loads((out / "doctor.json").read_text())["findings"]["prompts"] == 8

    assert main(args + ["--doctor.no-preflight"]) == 0  # the same folder: a doctor's report is no run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 1


def _short_run(model_dir, out, preflight: bool, log) -> list[dict]:
    cfg = Config(output_dir=str(out))
    cfg.model.name_or_path = str(model_dir)
    cfg.data.eval_size = 8
    cfg.train.steps, cfg.train.eval_every = 2, 0
    cfg.log.progress = cfg.log.plot = cfg.log.tensorboard = False
    cfg.doctor.preflight = preflight
    run_training(cfg, log=log)
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_the_demo_s_preflight_says_will_learn_and_changes_nothing(arithmetic_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    lines = []
    checked = _short_run(arithmetic_model_dir, tmp_path / "a", True, lines.append)
    plain = _short_run(arithmetic_model_dir, tmp_path / "b", False, lambda *a: None)
    preflight = [line for line in lines if line.startswith("pre-flight")]
    assert len(preflight) == 1 and preflight[0].startswith("pre-flight: will learn (8 prompts x 16"), lines
    assert not any("WARN" in line or "FAIL" in line for line in lines)
    keys = ["reward/total/mean", "update/loss", "update/grad_norm", "update/lr", "eval/accuracy"]
    assert [{k: r.get(k) for k in keys} for r in checked] == [{k: r.get(k) for k in keys} for r in plain]
    a = AutoModelForCausalLM.from_pretrained(tmp_path / "a" / "model").state_dict()
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "b" / "model").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_under_torchrun_every_rank_stops_on_rank_0_s_verdict(arithmetic_model_dir, tmp_path):
    from tests.test_distributed import _torchrun

    reward = tmp_path / "const.py"
    reward.write_text(CONSTANT)
    out = tmp_path / "run"
    proc = _torchrun(["-m", "grpokit", *train_args(arithmetic_model_dir, out, "--reward.names", f"{reward}:constant",
                                                   "--rollout.prompts-per-step", "4")], timeout=300)
    assert proc.returncode != 0
    assert proc.stdout.count("verdict: will not learn (exit status 2)") == 1, proc.stdout + proc.stderr[-3000:]
    assert "exitcode  : 2" in proc.stderr or "exit code 2" in proc.stderr or "exitcode: 2" in proc.stderr, \
        proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["doctor.json"]
