"""Live alerts: signs, in each step's metrics row, that a run has stopped learning.

``AlertMonitor(cfg.alerts).update(row)`` is fed one log row per step (the trainer's metrics,
global batch) and returns the alerts that *start* at that step. An alert that has started stays
quiet while its condition holds; once the condition has been clear for ``alerts.rearm_steps``
steps it may fire again. No torch, no I/O: the run prints the alerts, writes them into the row's
``alerts`` list (metrics.jsonl) and collects them into summary.json.

The conditions (thresholds: grpokit.config.AlertsConfig; README "Will it learn?"):

* ``equal_rewards``: ``reward/zero_std_share >= zero_std_share`` for ``zero_std_steps`` steps
  in a row: the groups' advantages are zero, so the steps have no gradient (GRPO, DAPO §3.2).
* ``truncation``: the mean of ``completion/truncated_share`` over ``truncated_steps`` steps is
  above ``truncated_share``.
* ``entropy_collapse``: ``completion/entropy`` below ``entropy_ratio`` x its mean over the first
  ``entropy_steps`` steps, for ``entropy_steps`` steps in a row (the policy stopped exploring).
* ``reward_flat``: the mean of ``reward/total/mean`` over the last ``flat_steps / 4`` steps has not
  risen more than ``flat_delta`` above its best for ``flat_steps`` steps (a patience rule: on the
  demo's three 600-step runs the longest such stall was 109 steps).
* ``kl_blowup`` / ``clip_blowup``: ``update/kl > max_kl`` / ``update/clipped_share > max_clipped_share``.
* ``nonfinite``: ``update/nonfinite_steps`` grew, or ``update/loss`` / ``update/grad_norm`` is not finite.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass

from grpokit.config import AlertsConfig


@dataclass(frozen=True)
class Alert:
    """One alert: its kind, the step where it started, what was seen, and the fix."""

    kind: str
    step: int
    message: str
    fix: str

    def line(self) -> str:
        return f"alert at step {self.step}: {self.message}; {self.fix}"

    def to_dict(self) -> dict:
        return asdict(self)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _mean(values) -> float:
    return sum(values) / len(values)


class AlertMonitor:
    """Feed it each step's row with ``update``; it returns the alerts starting at that step."""

    def __init__(self, cfg: AlertsConfig):
        self.cfg = cfg
        self.rewards: deque[float] = deque(maxlen=max(1, cfg.flat_steps // 4))  # the smoothed reward's window
        self.best_reward: float | None = None
        self.since_best = 0
        self.truncated: deque[float] = deque(maxlen=cfg.truncated_steps)
        self.first_entropy: list[float] = []
        self.zero_std_streak = self.low_entropy_streak = 0
        self.nonfinite_seen = 0
        self.active: dict[str, int] = {}  # kind -> steps its condition has been clear (0 = holds now)
        self.fired: list[Alert] = []

    def update(self, row: dict) -> list[Alert]:
        """The alerts that start at this row's step (each kind: once per episode)."""
        step = int(row.get("step", 0))
        found = {kind: text for kind, text in self._conditions(row)}
        new = []
        for kind in ("equal_rewards", "truncation", "entropy_collapse", "reward_flat", "kl_blowup",
                     "clip_blowup", "nonfinite"):
            if kind in found:
                if kind not in self.active:
                    message, fix = found[kind]
                    new.append(Alert(kind, step, message, fix))
                self.active[kind] = 0
            elif kind in self.active:
                self.active[kind] += 1
                if self.active[kind] >= self.cfg.rearm_steps:
                    del self.active[kind]
        self.fired.extend(new)
        return new

    def _conditions(self, row: dict):
        """(kind, (message, fix)) for every condition that holds at this row."""
        for check in (self._equal_rewards, self._truncation, self._entropy, self._flat, self._blowups,
                      self._nonfinite):
            yield from check(row)

    def _equal_rewards(self, row: dict):
        c, share = self.cfg, row.get("reward/zero_std_share")
        if not _finite(share):
            return
        self.zero_std_streak = self.zero_std_streak + 1 if share >= c.zero_std_share else 0
        if self.zero_std_streak >= c.zero_std_steps:
            yield "equal_rewards", (
                f"{share:.0%} of groups had all-equal rewards (no gradient) for {self.zero_std_streak} steps in a row",
                "the task is too hard or too easy for the model now: change the difficulty or the reward, raise "
                "rollout.group_size, or use a curriculum (data.curriculum learnability)")

    def _truncation(self, row: dict):
        c, share = self.cfg, row.get("completion/truncated_share")
        if not _finite(share):
            return
        self.truncated.append(share)
        if len(self.truncated) == c.truncated_steps and _mean(self.truncated) > c.truncated_share:
            yield "truncation", (
                f"{_mean(self.truncated):.0%} of completions hit rollout.max_new_tokens over the last "
                f"{c.truncated_steps} steps",
                "raise rollout.max_new_tokens, or penalise length (reward overlong, algo.mask_truncated)")

    def _entropy(self, row: dict):
        c, entropy = self.cfg, row.get("completion/entropy")
        if not _finite(entropy):
            return
        if len(self.first_entropy) < c.entropy_steps:
            self.first_entropy.append(entropy)
            return
        floor = c.entropy_ratio * _mean(self.first_entropy)
        self.low_entropy_streak = self.low_entropy_streak + 1 if entropy < floor else 0
        if self.low_entropy_streak >= c.entropy_steps:
            yield "entropy_collapse", (
                f"completion entropy {entropy:.3g} nats/token, under {c.entropy_ratio:g} x its start "
                f"({_mean(self.first_entropy):.3g}) for {self.low_entropy_streak} steps",
                "the policy stopped exploring: lower train.lr, raise algo.eps_high (clip-higher) or "
                "rollout.temperature")

    def _flat(self, row: dict):
        c, reward = self.cfg, row.get("reward/total/mean")
        if not _finite(reward) or c.flat_delta <= 0:
            return
        self.rewards.append(reward)
        if len(self.rewards) < self.rewards.maxlen:
            return
        mean = _mean(self.rewards)
        if self.best_reward is None or mean > self.best_reward + c.flat_delta:
            self.best_reward, self.since_best = mean, 0
        else:
            self.since_best += 1
        if self.since_best >= c.flat_steps:
            yield "reward_flat", (
                f"the {len(self.rewards)}-step mean reward ({mean:.3f}) has not risen {c.flat_delta:g} above its "
                f"best ({self.best_reward:.3f}) for {self.since_best} steps",
                "learning has stalled: raise train.lr, check the reward on `grpokit view`, or stop the run")

    def _blowups(self, row: dict):
        c = self.cfg
        kl, clipped = row.get("update/kl"), row.get("update/clipped_share")
        if _finite(kl) and kl > c.max_kl:
            yield "kl_blowup", (f"KL to the reference {kl:.3g} per token (alerts.max_kl {c.max_kl:g})",
                                "lower train.lr or raise algo.beta")
        if _finite(clipped) and clipped > c.max_clipped_share:
            yield "clip_blowup", (
                f"the clip acted on {clipped:.0%} of update tokens (alerts.max_clipped_share {c.max_clipped_share:g})",
                "the policy moves too far per step: lower train.lr or algo.mu")

    def _nonfinite(self, row: dict):
        count = row.get("update/nonfinite_steps")
        grew = _finite(count) and count > self.nonfinite_seen
        if _finite(count):
            self.nonfinite_seen = count
        bad = [k for k in ("update/loss", "update/grad_norm") if k in row and not _finite(row[k])]
        if grew or bad:
            what = ", ".join(bad) or "the gradient"
            yield "nonfinite", (f"non-finite {what} (update skipped)",
                                "lower train.lr, keep train.max_grad_norm > 0, use model.dtype bf16 or fp32 "
                                "rather than fp16")
