import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"

# The built-in task caches its warm-started model; keep the tests' cache inside the checkout.
os.environ.setdefault("GRPOKIT_CACHE", str(REPO / ".cache"))


@pytest.fixture(scope="session")
def arithmetic_model_dir():
    """Folder of the warm-started demo model (built once, then cached).

    GRPOKIT_TEST_WARM_TARGET=0.25 (or 0.45, ...) warm-starts it to that greedy dev accuracy
    instead, checked every 5 steps: the learning tests must hold for any warm start a CPU's float
    rounding gives (held-out 0.25 to 0.45), and this shows them at either end."""
    from grpokit.tasks.arithmetic import ArithmeticSpec, load_or_build

    target = os.environ.get("GRPOKIT_TEST_WARM_TARGET")
    spec = ArithmeticSpec(warm_target=float(target), warm_check_every=5) if target else ArithmeticSpec()
    return load_or_build(spec, log=lambda *_: None)


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


def real_sandbox(limits):
    """A bubblewrap Sandbox, or a failure naming why there is none (a skip with
    GRPOKIT_SANDBOX_OPTIONAL=1): the sandbox tests never fall back to a weaker mode."""
    from grpokit.sandbox import Sandbox, sandbox_problem

    problem = sandbox_problem()
    if problem is not None:
        if os.environ.get("GRPOKIT_SANDBOX_OPTIONAL") == "1":
            pytest.skip(f"bubblewrap sandbox unavailable: {problem}")
        pytest.fail(f"bubblewrap sandbox unavailable (install bubblewrap): {problem}")
    return Sandbox(limits)
