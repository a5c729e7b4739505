"""Two CPU processes (gloo) under torchrun: exact gradients, learning with resume, failing fast."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HELPERS = Path(__file__).parent / "helpers"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args: list[str], timeout: float = 600):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def test_two_process_gradient_equals_single_process_gradient_for_every_aggregation(tmp_path):
    out = tmp_path / "grads.json"
    proc = _torchrun([str(HELPERS / "dist_grad.py"), str(out)], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["world"] == 2
    assert len(report["results"]) == 8  # 2 reward layouts x 4 aggregations
    for name, r in report["results"].items():
        assert r["grad_norm"] > 1e-3, name  # a real gradient, not two zeros
        assert r["max_abs_diff"] < 1e-6, (name, r)


@pytest.mark.slow
def test_two_process_demo_learns_and_resumes(arithmetic_model_dir, tmp_path):
    out = tmp_path / "run"
    flags = ["-m", "grpokit", "train", "--output-dir", str(out), "--model.name-or-path", str(arithmetic_model_dir),
             "--train.steps", "150", "--train.eval-every", "0", "--log.no-progress", "--log.no-tensorboard"]
    first = _torchrun([*flags, "--train.stop-at-step", "70"])
    assert first.returncode == 0, first.stderr[-3000:]
    assert (out / "checkpoints" / "step-00000070" / "manifest.json").is_file()
    manifest = json.loads((out / "checkpoints" / "step-00000070" / "manifest.json").read_text())
    assert manifest["world_size"] == 2
    rng = json.loads((out / "checkpoints" / "step-00000070" / "state.json").read_text())["rng"]
    assert len(rng["ranks"]) == 2  # each rank's generators are kept
    second = _torchrun([*flags, "--train.resume", "auto"])
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stdout + second.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 150
    assert summary["accuracy_after"] - summary["accuracy_before"] >= 0.08, summary
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, *range(1, 151), 150]  # rank 0 alone wrote the log, once per step


def test_a_failing_rank_brings_every_process_down_quickly(arithmetic_model_dir, tmp_path):
    plugin = tmp_path / "flaky.py"
    plugin.write_text(
        "import os\n"
        "def reward(completion, example):\n"
        "    if os.environ.get('RANK') == '1':\n"
        "        raise RuntimeError('reward exploded on rank 1')\n"
        "    return 0.0\n")
    start = time.monotonic()
    proc = _torchrun(["-m", "grpokit", "train", "--output-dir", str(tmp_path / "run"),
                      "--model.name-or-path", str(arithmetic_model_dir), "--train.steps", "50",
                      "--reward.names", f"{plugin}:reward", "--reward.max-fail-share", "0",
                      "--reward.accuracy-reward", "arithmetic", "--log.no-progress"], timeout=120)
    elapsed = time.monotonic() - start
    assert proc.returncode != 0
    assert elapsed < 60, elapsed
    assert "reward exploded on rank 1" in proc.stdout + proc.stderr
