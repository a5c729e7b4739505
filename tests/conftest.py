import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"

# The built-in task caches its warm-started model; keep the tests' cache inside the checkout.
os.environ.setdefault("GRPOKIT_CACHE", str(REPO / ".cache"))


@pytest.fixture(scope="session")
def arithmetic_model_dir():
    """Folder of the warm-started demo model (built once, then cached)."""
    from grpokit.tasks.arithmetic import load_or_build

    return load_or_build(log=lambda *_: None)


@pytest.fixture()
def tiny_llama():
    """A randomly initialised tiny Llama over the arithmetic character tokenizer."""
    import torch

    from grpokit.tasks.arithmetic import ArithmeticSpec, build_model, build_tokenizer

    tok = build_tokenizer()
    spec = ArithmeticSpec(hidden_size=32, layers=2, heads=2, intermediate_size=64)
    model = build_model(spec, tok, seed=0)
    torch.manual_seed(0)
    return model, tok
