"""The command line: `grpokit train | eval | sample` (each a thin layer over the library)."""

from grpokit.cli.main import main

__all__ = ["main"]
