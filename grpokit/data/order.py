"""The order in which training visits prompts (a PromptOrder): a seeded shuffle (ShuffledOrder),
or a curriculum (CurriculumOrder); `make_prompt_order` picks one from the data config.

Curriculum (textbook exercise 5): choose training prompts by how hard they are for the model now.

Difficulty is each prompt's pass rate p: the share of its group's completions that scored above
``threshold``, kept as a running average over the times the prompt was drawn (the newest group
weighs ``ema``), so it follows the model as it learns. Prompts never drawn count as p = ``prior``.

Strategies:

* ``learnability`` draws prompts with weight p(1-p): most often those the model solves
  sometimes, which are the groups with reward spread, i.e. the ones GRPO learns from (a group
  that is all right or all wrong has zero advantage everywhere);
* ``hard_first`` weighs 1-p, ``easy_first`` weighs p;
* ``easy_to_hard`` visits every prompt once per epoch, sorted from the highest pass rate to the
  lowest as measured when the epoch starts (the classic curriculum order).

Weighted strategies add ``min_weight`` to every weight, so a prompt that looks solved (or
hopeless) is still drawn now and then and its pass rate can change. One draw never repeats a
prompt (sampling without replacement, Efraimidis-Spirakis keys).

Both implement the PromptOrder protocol: ``next_indices``, ``record(indices, rewards_PG)`` (the
trainer calls it after scoring each step), ``stats`` (metrics for the log row) and
``state_dict``/``load_state_dict`` (stored in checkpoints).
"""

from __future__ import annotations

import math
import random
from typing import Protocol, Sequence

from grpokit.data.sources import DataError
from grpokit.registry import did_you_mean


class PromptOrder(Protocol):
    """Which training prompts each step visits; the trainer's only view of the order."""

    def next_indices(self, k: int) -> list[int]:
        """The next k indices into the training examples."""
        ...

    def record(self, indices: Sequence[int], rewards_PG) -> None:
        """The rewards [P, G] the prompts `indices` just earned (NaN = not judged)."""
        ...

    def stats(self) -> dict[str, float]:
        """Metrics for this step's log row (empty when the order has none)."""
        ...

    def state_dict(self) -> dict:
        """JSON-able state from which load_state_dict continues the same order."""
        ...

    def load_state_dict(self, state: dict) -> None:
        ...


class ShuffledOrder:
    """Visits training examples in a seeded shuffled order, epoch after epoch.

    Its whole state is (seed, epoch, position), so a resumed run continues the same order."""

    def __init__(self, n: int, seed: int):
        if n <= 0:
            raise ValueError("the training set is empty")
        self.n, self.seed, self.epoch, self.position = n, seed, 0, 0
        self._order = self._make_order()

    def _make_order(self) -> list[int]:
        order = list(range(self.n))
        random.Random(f"{self.seed}:{self.epoch}").shuffle(order)
        return order

    def next_indices(self, k: int) -> list[int]:
        out = []
        while len(out) < k:
            if self.position == self.n:
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._make_order()
            out.append(self._order[self.position])
            self.position += 1
        return out

    def record(self, indices, rewards_PG) -> None:
        """Nothing to learn from rewards: the order is fixed (a curriculum uses them)."""

    def stats(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch, self.position = state["seed"], state["epoch"], state["position"]
        self._order = self._make_order()


STRATEGIES = {
    "learnability": lambda p: p * (1.0 - p),
    "hard_first": lambda p: 1.0 - p,
    "easy_first": lambda p: p,
    "easy_to_hard": None,  # an order, not weights
}


def check_curriculum_config(cfg) -> None:
    name = cfg.curriculum
    if name != "none" and name not in STRATEGIES:
        hint = did_you_mean(name, ["none", *STRATEGIES])
        raise DataError(f"data.curriculum: unknown strategy {name!r}{hint} (choices: none, {', '.join(STRATEGIES)})")
    if not 0 < cfg.curriculum_ema <= 1:
        raise DataError(f"data.curriculum_ema: must be in (0, 1], got {cfg.curriculum_ema}")
    if cfg.curriculum_min_weight < 0:
        raise DataError(f"data.curriculum_min_weight: must be >= 0, got {cfg.curriculum_min_weight}")


def make_prompt_order(cfg, n: int) -> PromptOrder:
    """The training order data.curriculum asks for: ShuffledOrder for 'none', else a CurriculumOrder."""
    check_curriculum_config(cfg)
    if cfg.curriculum == "none":
        return ShuffledOrder(n, cfg.seed)
    return CurriculumOrder(n, cfg.seed, strategy=cfg.curriculum, ema=cfg.curriculum_ema,
                             min_weight=cfg.curriculum_min_weight)


def _rows(rewards_PG) -> list[list[float]]:
    """Nested float lists from a [P, G] tensor, array or list of lists."""
    if hasattr(rewards_PG, "tolist"):
        rewards_PG = rewards_PG.tolist()
    return [[float(x) for x in row] for row in rewards_PG]


class CurriculumOrder:
    """Prompt indices chosen by current pass rate; see the module docstring."""

    def __init__(self, n: int, seed: int, *, strategy: str = "learnability", ema: float = 0.5,
                 prior: float = 0.5, min_weight: float = 0.05, threshold: float = 0.0):
        if n <= 0:
            raise ValueError("the training set is empty")
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown curriculum strategy {strategy!r} (choices: {', '.join(STRATEGIES)})")
        self.n, self.seed, self.strategy = n, seed, strategy
        self.ema, self.prior, self.min_weight, self.threshold = ema, prior, min_weight, threshold
        self.rates: list[float | None] = [None] * n  # running pass rate; None = never judged
        self.seen = [0] * n  # judged completions per prompt
        self.calls = 0  # next_indices calls so far: each draw's RNG is seeded by (seed, call)
        self.epoch, self.position = 0, 0
        self._order: list[int] = []

    # -- what the trainer tells us

    def record(self, indices, rewards_PG) -> None:
        """Update the pass rate of prompt indices[i] with its group's rewards rewards_PG[i].
        NaN rewards (not judged) are left out; a group with none judged changes nothing."""
        rows = _rows(rewards_PG)
        if len(rows) != len(indices):
            raise ValueError(f"{len(indices)} indices but {len(rows)} reward groups")
        for index, row in zip(indices, rows):
            judged = [r for r in row if not math.isnan(r)]
            if not judged:
                continue
            rate = sum(r > self.threshold for r in judged) / len(judged)
            old = self.rates[index]
            self.rates[index] = rate if old is None else (1 - self.ema) * old + self.ema * rate
            self.seen[index] += len(judged)

    def pass_rate(self, index: int) -> float:
        rate = self.rates[index]
        return self.prior if rate is None else rate

    def weights(self) -> list[float]:
        """Sampling weight of every prompt under a weighted strategy."""
        f = STRATEGIES[self.strategy]
        if f is None:
            raise ValueError(f"strategy {self.strategy!r} orders prompts; it has no weights")
        return [self.min_weight + f(self.pass_rate(i)) for i in range(self.n)]

    def stats(self) -> dict:
        """Metrics for a log row: share of prompts judged at least once, their mean pass rate,
        and the shares that look solved (p = 1) and unsolved (p = 0)."""
        known = [r for r in self.rates if r is not None]
        share = lambda xs: len(xs) / self.n  # noqa: E731
        return {
            "curriculum/seen_share": share(known),
            "curriculum/pass_rate_mean": sum(known) / len(known) if known else math.nan,
            "curriculum/solved_share": share([r for r in known if r == 1.0]),
            "curriculum/unsolved_share": share([r for r in known if r == 0.0]),
        }

    # -- what the trainer asks for

    def next_indices(self, k: int) -> list[int]:
        if self.strategy == "easy_to_hard":
            return self._next_in_order(k)
        rng = random.Random(f"{self.seed}:{self.calls}")
        self.calls += 1
        out: list[int] = []
        while len(out) < k:  # k > n: whole passes, then the rest
            out.extend(self._draw(min(k - len(out), self.n), rng))
        return out

    def _draw(self, k: int, rng: random.Random) -> list[int]:
        """k distinct indices, index i chosen with probability proportional to its weight
        (Efraimidis & Spirakis 2006: the k largest keys u^(1/w))."""
        keys = []
        for i, w in enumerate(self.weights()):
            u = 1.0 - rng.random()  # in (0, 1]
            keys.append((math.log(u) / w if w > 0 else -math.inf, i))
        keys.sort(reverse=True)
        return [i for _, i in keys[:k]]

    def _next_in_order(self, k: int) -> list[int]:
        out = []
        while len(out) < k:
            if self.position >= len(self._order):
                if self._order:
                    self.epoch += 1
                self._order, self.position = self._sorted_epoch(), 0
            out.append(self._order[self.position])
            self.position += 1
        return out

    def _sorted_epoch(self) -> list[int]:
        """Every prompt once, highest pass rate first; ties (and unjudged prompts) in seeded order."""
        order = list(range(self.n))
        random.Random(f"{self.seed}:epoch:{self.epoch}").shuffle(order)
        return sorted(order, key=lambda i: -self.pass_rate(i))

    # -- resuming

    def state_dict(self) -> dict:
        return {"seed": self.seed, "strategy": self.strategy, "calls": self.calls, "epoch": self.epoch,
                "position": self.position, "order": list(self._order), "rates": list(self.rates),
                "seen": list(self.seen)}

    def load_state_dict(self, state: dict) -> None:
        if len(state["rates"]) != self.n:
            raise ValueError(f"curriculum state is for {len(state['rates'])} prompts, this run has {self.n}")
        self.seed, self.strategy, self.calls = state["seed"], state["strategy"], state["calls"]
        self.epoch, self.position, self._order = state["epoch"], state["position"], list(state["order"])
        self.rates, self.seen = list(state["rates"]), list(state["seen"])
