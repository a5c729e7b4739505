"""Command-line commands, one module each (grpokit.cli maps names to them)."""
