"""Score a step's completions with a weighted sum of named rewards, serially or in processes.

``RewardScorer(names, weights, kwargs)`` resolves every name once (see registry.py), binds its
keyword arguments, and checks them against the function's signature, so a misspelt name or
keyword fails at start-up, not at step 1000.

Per call, a reward may return a finite number or None ("could not judge"). Anything else -- an
exception, NaN, inf, a string, a list -- becomes None *and* a failure message naming the
reward, the example (index and id) and what came back. A step fails loudly (``RewardError``)
only when some reward fails on more than ``max_fail_share`` of its calls; the share is taken
per reward, because one reward broken on every call would otherwise hide under a mean over
several healthy ones while turning every total into None.

The total is the weighted sum of the components, and None when any component with a non-zero
weight is None: a partial sum would silently be a different reward for that completion. The
trainer leaves None totals out of the group statistics and reports their share.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import inspect
import logging
import math
import multiprocessing
import numbers
import pickle
import traceback
from dataclasses import dataclass, field

from .registry import RewardError, resolvable_spec, resolve_reward

__all__ = ["RewardScorer", "ScoreResult"]

log = logging.getLogger("grpokit.rewards")

_LOGGED_PER_STEP = 3
_ID_KEYS = ("id", "unique_id", "task_id", "idx")


@dataclass
class ScoreResult:
    """Rewards for one step. ``components[name][i]`` is reward ``name`` on completion ``i``."""

    total: list[float | None]
    components: dict[str, list[float | None]]
    errors: list[str] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """Per reward ``reward/<name>/mean`` (over judged completions; NaN if none),
        ``reward/<name>/none_share`` and ``reward/<name>/fail_share``; the same mean and
        none share for ``reward/total``; and ``reward/fail_share`` over all calls."""
        out: dict[str, float] = {}
        calls = failed = 0
        for name, values in [*self.components.items(), ("total", self.total)]:
            judged = [v for v in values if v is not None]
            n = max(len(values), 1)
            out[f"reward/{name}/mean"] = sum(judged) / len(judged) if judged else math.nan
            out[f"reward/{name}/none_share"] = (len(values) - len(judged)) / n
            if name in self.components:  # (a component may itself be called "total")
                out[f"reward/{name}/fail_share"] = self.failures.get(name, 0) / n
                calls += len(values)
                failed += self.failures.get(name, 0)
        out["reward/fail_share"] = failed / calls if calls else 0.0
        return out


# ----------------------------------------------------------------------------- one call


def _describe_example(index: int, example) -> str:
    if isinstance(example, dict):
        for key in _ID_KEYS:
            if key in example:
                return f"example {index} ({key}={example[key]!r})"
    return f"example {index}"


def _call_reward(name: str, fn, completion: str, example, index: int):
    """``(value, failure message or None)`` for one call; never raises."""
    try:
        value = fn(completion, example)
    except Exception as exc:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = f" at {frame.filename}:{frame.lineno}" if frame else ""
        return None, (
            f"reward {name!r} raised {type(exc).__name__}: {exc} on "
            f"{_describe_example(index, example)}{where}"
        )
    if value is None:
        return None, None
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        value = value.item()  # a 0-d tensor or array
    if isinstance(value, numbers.Real):
        number = float(value)
        if math.isfinite(number):
            return number, None
        shown = repr(number)
    else:
        shown = f"{type(value).__name__} {_short_repr(value)}"
    return None, (
        f"reward {name!r} returned {shown} on {_describe_example(index, example)}; "
        "expected a finite float, or None for 'could not judge'"
    )


def _short_repr(value, limit: int = 80) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<unprintable {type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _score_serial(components, completions, examples, start: int = 0):
    """``{name: [(value, message), ...]}`` for ``completions[i]`` with index ``start + i``."""
    return {
        name: [
            _call_reward(name, fn, c, ex, start + i)
            for i, (c, ex) in enumerate(zip(completions, examples))
        ]
        for name, fn in components
    }


# ----------------------------------------------------------------------------- worker processes

_WORKER_COMPONENTS: list = []


def _init_worker(payload) -> None:
    """In each worker: rebuild the reward functions from specs (or pickled functions)."""
    global _WORKER_COMPONENTS
    logging.getLogger("grpokit.rewards").setLevel(logging.ERROR)  # the parent does the logging
    components = []
    for name, spec_or_fn, kwargs in payload:
        fn = resolve_reward(spec_or_fn) if isinstance(spec_or_fn, str) else spec_or_fn
        components.append((name, functools.partial(fn, **kwargs) if kwargs else fn))
    _WORKER_COMPONENTS = components


def _score_chunk(start: int, completions, examples):
    return start, _score_serial(_WORKER_COMPONENTS, completions, examples, start)


class RewardScorer:
    """A weighted sum of named rewards, scored serially or by ``workers`` processes.

    ``names``: registry names or plug-in specs; ``weights``: one float each; ``kwargs[name]``:
    keyword arguments bound to that reward. With ``workers > 0`` a step with at least
    ``parallel_min`` completions is split over a process pool ('spawn'), created on first use
    and kept until ``close()``.
    """

    def __init__(
        self,
        names: list[str],
        weights: list[float],
        kwargs: dict[str, dict] | None = None,
        max_fail_share: float = 0.5,
        workers: int = 0,
        parallel_min: int = 64,
    ) -> None:
        names, weights = list(names), [float(w) for w in weights]
        if not names:
            raise RewardError("at least one reward is needed")
        if len(names) != len(weights):
            raise RewardError(
                f"{len(names)} reward names {names} but {len(weights)} weights {weights}; "
                "give one weight per reward"
            )
        if not all(math.isfinite(w) for w in weights):
            raise RewardError(f"reward weights must be finite numbers, got {weights}")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise RewardError(f"reward names must be unique; repeated: {duplicates}")
        kwargs = dict(kwargs or {})
        stray = sorted(set(kwargs) - set(names))
        if stray:
            raise RewardError(f"reward.kwargs: given for {stray}, which are not in reward.names {names}")
        if not 0.0 <= max_fail_share <= 1.0:
            raise RewardError(f"max_fail_share must be within [0, 1], got {max_fail_share}")
        self.names, self.weights = names, weights
        self.kwargs = {n: dict(kwargs.get(n) or {}) for n in names}
        self.max_fail_share = float(max_fail_share)
        self.workers, self.parallel_min = int(workers), int(parallel_min)
        self._components = [(n, self._bind(n)) for n in names]
        # Specs for worker processes, fixed now: a relative plug-in path must not move if the
        # working directory changes before the pool starts.
        self._worker_specs = {n: resolvable_spec(n) for n in names}
        self._pool: cf.ProcessPoolExecutor | None = None
        self._pool_unusable = False

    def _bind(self, name: str):
        fn = resolve_reward(name)
        kw = self.kwargs[name]
        if not kw:
            return fn
        try:
            signature = inspect.signature(fn)
            signature.bind_partial("completion", {}, **kw)
        except TypeError as exc:
            accepted = [p.name for p in list(signature.parameters.values())[2:]
                        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
            raise RewardError(f"reward.kwargs.{name}: reward {name!r} does not accept {kw} ({exc}); its keyword "
                              f"arguments are: {', '.join(accepted) or 'none'}") from None
        except ValueError:
            pass  # no introspectable signature: find out at call time
        return functools.partial(fn, **kw)

    # -- scoring

    def score(self, completions: list[str], examples: list[dict]) -> ScoreResult:
        """Score ``completions[i]`` against ``examples[i]`` with every reward; see the module
        docstring for None, failures and the total. Raises ``RewardError`` when a reward fails
        on more than ``max_fail_share`` of the completions."""
        if len(completions) != len(examples):
            raise ValueError(
                f"{len(completions)} completions but {len(examples)} examples; need one each"
            )
        raw = None
        if self.workers > 0 and len(completions) >= self.parallel_min and not self._pool_unusable:
            raw = self._score_parallel(list(completions), list(examples))
        if raw is None:
            raw = _score_serial(self._components, completions, examples)
        return self._collect(raw, len(completions))

    def _collect(self, raw, n: int) -> ScoreResult:
        components: dict[str, list[float | None]] = {}
        errors: list[str] = []
        failures: dict[str, int] = {}
        for name in self.names:
            pairs = raw[name]
            components[name] = [value for value, _ in pairs]
            messages = [message for _, message in pairs if message]
            failures[name] = len(messages)
            errors.extend(messages)
        for message in errors[:_LOGGED_PER_STEP]:
            log.warning("%s", message)
        if len(errors) > _LOGGED_PER_STEP:
            more = len(errors) - _LOGGED_PER_STEP
            log.warning("... and %d more reward failures in this step", more)
        self._raise_if_too_many(failures, errors, n)
        total = [self._weighted(i, components) for i in range(n)]
        return ScoreResult(total=total, components=components, errors=errors, failures=failures)

    def _weighted(self, i: int, components) -> float | None:
        total = 0.0
        for name, weight in zip(self.names, self.weights):
            if weight == 0.0:
                continue  # logged, not counted: its None does not void the total
            value = components[name][i]
            if value is None:
                return None
            total += weight * value
        return total

    def _raise_if_too_many(self, failures: dict[str, int], errors: list[str], n: int) -> None:
        if n == 0:
            return
        broken = {k: v for k, v in failures.items() if v / n > self.max_fail_share}
        if not broken:
            return
        summary = ", ".join(f"{name!r} failed on {k} of {n}" for name, k in broken.items())
        shown = "\n  ".join([m for m in errors if any(repr(b) in m for b in broken)][:5])
        raise RewardError(
            f"too many reward failures this step ({summary}; max_fail_share="
            f"{self.max_fail_share}). First failures:\n  {shown}"
        )

    # -- processes

    def _payload(self):
        payload = []
        for name in self.names:
            spec = self._worker_specs[name]
            if spec is None:
                fn = resolve_reward(name)
                pickle.dumps(fn)  # fails here, in the parent, if it cannot travel
                spec = fn
            payload.append((name, spec, self.kwargs[name]))
        return payload

    def _ensure_pool(self) -> cf.ProcessPoolExecutor | None:
        if self._pool is None:
            try:
                payload = self._payload()
            except Exception as exc:
                log.warning("rewards cannot go to worker processes (%s); scoring serially", exc)
                self._pool_unusable = True
                return None
            self._pool = cf.ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(payload,),
            )
        return self._pool

    def _score_parallel(self, completions, examples):
        pool = self._ensure_pool()
        if pool is None:
            return None
        n = len(completions)
        size = max(1, -(-n // (self.workers * 4)))
        futures = [
            pool.submit(_score_chunk, s, completions[s:s + size], examples[s:s + size])
            for s in range(0, n, size)
        ]
        raw = {name: [None] * n for name in self.names}
        try:
            for future in futures:
                start, part = future.result()
                for name, pairs in part.items():
                    raw[name][start:start + len(pairs)] = pairs
        except Exception as exc:  # _score_chunk never raises: this is the pool or pickling
            log.warning("reward worker pool failed (%s: %s); scoring serially from now on",
                        type(exc).__name__, exc)
            self.close()
            self._pool_unusable = True
            return None
        return raw

    def close(self) -> None:
        """Shut the worker processes down (a later parallel ``score`` starts new ones)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "RewardScorer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
