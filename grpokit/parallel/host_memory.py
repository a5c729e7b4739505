"""Keeping freed host memory mapped, so a CPU training step does not page-fault its tensors in anew.

A GRPO step on the CPU allocates and frees the same large tensors every step (the logits chunks
of the update: 32 MB each on a 32k vocabulary; the KV cache; activations). glibc's malloc serves
such sizes with mmap and gives them back with munmap on free, or trims the top of its heap back
to the OS, so the next step faults every page in again and the kernel zeroes it: on the 2-core
benchmark machine ~2.5 us per 4 kB page, 47-70 k faults per step of the "reasoning" workload
(benchmarks/bench_host_memory.py). With mmap off and trimming off, freed blocks stay in the
heap and are reused: ~7 k faults per step, the update 3-6 % faster (docs/performance.md). The cost is memory held: RSS no longer falls back between steps, and settles a few large
blocks above the default's (tensors are 64-byte-aligned requests, whose freed blocks fit a later
request only once neighbours merge; tests/test_host_memory.py's 40 MiB alloc/free loop faults for
~15 rounds, then stays at 459 MiB RSS against 220 MiB by default, with no faults).

Process-wide and one-way (it applies to every later allocation, by anyone), so it is applied
once at the entry point, not by the trainer: `grpokit train` calls it before the run
(grpokit.cli.main.apply_process_settings, which logs it) when `train.keep_freed_memory` is on,
the model is on the CPU and the run is a single process (the gain was measured there;
multi-process runs keep glibc's defaults).
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)
_applied = False


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to serve large blocks from its heap (M_MMAP_MAX = 0) and never to
    trim it (M_TRIM_THRESHOLD = 2 GiB - 1, the largest it takes). True when applied (now or
    before); False where the C library has no mallopt (not glibc)."""
    global _applied
    if _applied:
        return True
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _applied = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
    return _applied
