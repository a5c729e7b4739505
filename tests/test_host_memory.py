"""Level 1: keep_freed_memory makes a re-allocated large tensor reuse its pages instead of
faulting them in anew (checked in fresh processes: the setting is process-wide and one-way)."""

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
