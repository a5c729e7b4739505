"""grpokit: GRPO on verifiable rewards."""

__version__ = "0.1.0"
