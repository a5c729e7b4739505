"""One measured system in its own process, driven by bench_grpo.py over a pipe.

    python benchmarks/worker.py SYSTEM WORKLOAD VARIANT

Protocol (one JSON object per line): the worker prints {"ready": ...} once set up, then for
every command line "N" read from stdin runs N steps and prints {"records": [...]}; "threads N"
sets torch's intra-op threads; "seek K" makes the next step use the prompts of step K (systems
that cannot rewind, TRL, are never sent it); on "quit" it prints {"peak_rss_mb": ..., ...} and exits. Library chatter on stdout is sent to stderr, so
the protocol channel carries only these lines. A process of its own per system keeps each
system's peak RSS separate (the kernel's ru_maxrss of the process) and its imports apart.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class Protocol:
    def __init__(self):
        self.out = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)  # anything else written to stdout goes to stderr
        sys.stdout = sys.stderr

    def send(self, obj: dict) -> None:
        self.out.write(json.dumps(obj) + "\n")

    def next_budget(self, session=None) -> int | None:
        """Steps to run next, or None when told to quit; "threads N" sets torch's intra-op
        threads on the way (answered with the count now in force), "seek K" the session's
        prompt position (answered with it)."""
        import torch

        while (line := sys.stdin.readline().strip()).startswith(("threads ", "seek ")):
            word, n = line.split()
            if word == "threads":
                torch.set_num_threads(int(n))
                self.send({"threads": torch.get_num_threads()})
            else:
                session.seek(int(n))
                self.send({"step": int(n)})
        return None if line in ("", "quit") else int(line)

    def finish(self) -> None:
        import torch

        self.send({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   "threads": torch.get_num_threads()})


def serve_steps(session, proto: Protocol) -> None:
    """Run step() in the batches the driver asks for."""
    while (n := proto.next_budget(session)) is not None:
        proto.send({"records": [session.step() for _ in range(n)]})


def main(system: str, workload: str, variant: str) -> None:
    proto = Protocol()
    t0 = time.perf_counter()
    import torch

    if system == "grpokit":
        from benchmarks.grpokit_runner import GrpokitSession

        session = GrpokitSession(workload, variant)
    elif system == "textbook":
        from benchmarks.textbook_loop import TextbookLoop

        session = TextbookLoop(workload)
    elif system == "trl":
        from benchmarks.trl_runner import serve

        serve(workload, proto, on_ready=lambda: proto.send(
            {"ready": True, "setup_s": time.perf_counter() - t0, "threads": torch.get_num_threads()}))
        proto.finish()
        return
    else:
        raise SystemExit(f"unknown system {system!r}")
    proto.send({"ready": True, "setup_s": time.perf_counter() - t0, "threads": torch.get_num_threads()})
    serve_steps(session, proto)
    proto.finish()


if __name__ == "__main__":
    main(*sys.argv[1:4])
