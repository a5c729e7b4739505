"""Runs `grpokit train` with checkpoint writes slowed down and announced, so a test can
SIGKILL the process while a save is in progress."""

import sys
import time

import grpokit.train.checkpoint as ckpt
from grpokit.cli.main import main

_real_fsync = ckpt._fsync_file
_seen = set()


def _slow_fsync(path):
    folder = path.parent.name
    if folder not in _seen:
        _seen.add(folder)
        print(f"SAVING {folder}", flush=True)
    time.sleep(0.04)
    _real_fsync(path)


ckpt._fsync_file = _slow_fsync
sys.exit(main(["train", *sys.argv[1:]]))
