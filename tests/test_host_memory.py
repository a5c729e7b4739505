"""Level 1: keep_freed_memory makes a re-allocated large tensor reuse its pages instead of
faulting them in anew (checked in fresh processes: the setting is process-wide and one-way);
`grpokit train` applies it once at its start, and constructing a Trainer does not."""

import subprocess
import sys

import pytest

SCRIPT = """
import resource, sys, torch
from grpokit.parallel.host_memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def cycle():  # 40 MiB, above glibc's largest mmap threshold, freed below a small live tensor
    global small
    x = torch.ones(40 * 2**20 // 4); small = torch.ones(1000); del x
for _ in range(30):  # warm up: the heap grows until its free blocks fit the aligned requests
    cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    cycle()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_blocks_are_reused_without_page_faults():
    pages = 10 * 40 * 2**20 // 4096  # every page of ten 40 MiB tensors
    assert _faults("default") > 0.9 * pages  # glibc maps and unmaps blocks this large each time
    assert _faults("keep") < 0.02 * pages


def test_grpokit_train_applies_it_once_at_its_start_and_says_so(monkeypatch):
    """The command applies the process-wide setting (and logs it); several processes, a GPU or
    --train.no-keep-freed-memory leave glibc's defaults."""
    from grpokit.cli.main import apply_process_settings, parse_config
    from grpokit.parallel import host_memory

    calls = []
    monkeypatch.setattr(host_memory, "keep_freed_memory", lambda: calls.append(1) or True)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    lines = []
    assert apply_process_settings(parse_config(["--model.device", "cpu"]), log=lines.append) == ["train.keep_freed_memory"]
    assert len(calls) == 1 and len(lines) == 1 and "train.keep_freed_memory" in lines[0]
    assert apply_process_settings(parse_config(["--model.device", "cpu", "--train.no-keep-freed-memory"])) == []
    assert apply_process_settings(parse_config(["--model.device", "cuda"])) == []
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert apply_process_settings(parse_config(["--model.device", "cpu"])) == []
    assert len(calls) == 1


TRAINER = """
import torch
from grpokit.config import Config
from grpokit.parallel import host_memory
from grpokit.tasks.arithmetic import ArithmeticSpec, build_model, build_tokenizer
from grpokit.train.trainer import Trainer
tok = build_tokenizer()
model = build_model(ArithmeticSpec(hidden_size=32, layers=1, heads=2, intermediate_size=64), tok, seed=0)
Trainer(Config(), model, tok, [{"prompt": "1+1", "answer": "2"}], scorer=None)
print(host_memory._applied)
"""


def test_constructing_a_trainer_leaves_the_allocator_alone():
    out = subprocess.run([sys.executable, "-c", TRAINER], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "False"
