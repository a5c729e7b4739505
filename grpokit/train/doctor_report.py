"""`grpokit doctor`'s verdict: the problems in its findings (doctor.py), each with a concrete fix;
the exit status (0 = will learn, 1 = warnings, 2 = will not learn); the console table; doctor.json.

The rules (thresholds: grpokit.config.DoctorConfig, README "Will it learn?"):

* truncation: the share of completions that hit rollout.max_new_tokens, from doctor.truncated_fail
  will not learn when the longest reference answer does not fit in the limit or algo.mask_truncated drops
  the cut completions from the loss (else a warning), from doctor.truncated_warn a warning. The
  suggested limit is
  max(2 x the limit, ceil(1.5 x needed)), where needed is the longest completion that ended, or
  the longest reference answer in tokens + 1 (its end token), whichever is larger.
* a reward failing (raising, or returning a non-number) on more than reward.max_fail_share of the
  calls: will not learn (the run would stop at such a step); on any call: warning.
* a reward returning None: from doctor.none_fail, will not learn; from doctor.none_warn, warning.
* a weighted reward giving one value to every completion: will not learn when it is the only one
  (every group is equal), else a warning (it adds nothing).
* groups with all-equal rewards: all of them, will not learn (why: pass@G = 0, every completion
  passes, or the reward); from doctor.equal_groups_warn, warning. pass@G = 0: will not learn.
* a reward scoring the same completions differently twice: warning.
* the held-out evaluation raising (the accuracy reward): will not learn (the run evaluates first).
* one step's peak memory (CUDA on a GPU, else host RSS) over doctor.memory_limit_gib: will not learn.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from grpokit.config import DoctorConfig

VERDICTS = {0: "will learn", 1: "may learn (see the warnings)", 2: "will not learn"}


class WillNotLearn(Exception):
    """The training pre-flight found that the run will not learn; the message is the doctor's table."""


@dataclass(frozen=True)
class Problem:
    severity: str  # "fail" (will not learn) or "warn"
    check: str
    text: str
    fix: str

    def line(self) -> str:
        return f"  {self.severity.upper():4}  {self.text}: {self.fix}"


def suggested_max_new_tokens(length: dict) -> int:
    """A limit that leaves room: see the module docstring."""
    limit = length["max_new_tokens"]
    needed = max(length["ended_max"] or 0, (length["answer_tokens_max"] or 0) + 1)
    return max(2 * limit, math.ceil(1.5 * needed))


def truncation_problems(f: dict, c: DoctorConfig) -> list[Problem]:
    """Truncation from doctor.truncated_fail stops learning when the reference answers do not fit
    in the limit, when algo.mask_truncated leaves those completions out of the loss, or in tool
    episodes (env.name: a cut episode never gives its answer); else (a
    story that runs on, say) it is a warning, and what it costs shows in the pass and group checks."""
    length = f["length"]
    share, limit = length["truncated_share"], length["max_new_tokens"]
    if share < c.truncated_warn or share == 0:
        return []
    answers = length["answer_tokens_max"]
    episode = f.get("multi_turn", False)  # a cut tool episode never reaches its answer
    blocking = (answers is not None and answers > limit) or f.get("mask_truncated", False) or episode
    severity = "fail" if share >= c.truncated_fail and blocking else "warn"
    why = f" (the longest answer alone needs {answers})" if answers is not None and answers > limit else \
        " (algo.mask_truncated leaves them out of the loss)" if f.get("mask_truncated", False) else \
        " (a tool episode's budget holds the call, the tool's answer and the final answer)" if episode else ""
    return [Problem(severity, "truncation", f"{share:.0%} of completions hit rollout.max_new_tokens={limit}{why}",
                    f"raise rollout.max_new_tokens to >= {suggested_max_new_tokens(length)}")]


def reward_problems(f: dict, c: DoctorConfig) -> list[Problem]:
    out = []
    weighted = [n for n, r in f["rewards"].items() if r["weight"] != 0]
    for name, r in f["rewards"].items():
        if r["fail_share"] > 0:
            severity = "fail" if r["fail_share"] > f["max_fail_share"] else "warn"
            first = f" (first: {r['first_failure']:.200})" if r["first_failure"] else ""
            out.append(Problem(severity, "reward_failures", f"reward {name!r} raised or returned a non-number on "
                               f"{r['fail_share']:.0%} of calls{first}",
                               f"fix the reward; the run stops when over reward.max_fail_share={f['max_fail_share']}"))
        elif r["none_share"] >= c.none_warn and r["none_share"] > 0:
            severity = "fail" if r["none_share"] >= c.none_fail else "warn"
            out.append(Problem(severity, "reward_none", f"reward {name!r} returned None for {r['none_share']:.0%}",
                               "those completions are left out of their groups: check the answer format the reward "
                               "expects against `grpokit sample` output"))
        if r["weight"] != 0 and r["distinct"] == 1 and r["none_share"] < 1:
            alone = weighted == [name]
            out.append(Problem("fail" if alone else "warn", "reward_constant",
                               f"reward {name!r} gives the same value ({r['mean']:g}) to every completion",
                               "it cannot rank completions: check its inputs, or drop it from reward.names"))
    return out


def group_problems(f: dict, c: DoctorConfig) -> list[Problem]:
    g, G = f["groups"], f["group_size"]
    pass_g, share = g[f"pass@{G}"], g["equal_groups_share"]
    out = []
    truncated = f["length"]["truncated_share"]
    cut = truncated >= c.truncated_warn
    if pass_g == 0:  # cut completions may be the ones that would have passed: that fix comes first
        first = (f"raise rollout.max_new_tokens to >= {suggested_max_new_tokens(f['length'])} first ({truncated:.0%} "
                 f"of completions were cut); else " if truncated >= c.truncated_warn else "")
        out.append(Problem("fail", "never_solved", f"no prompt solved by any of its {G} completions "
                           f"(pass@{G} = 0, pass rule: {f['pass_rule']})",
                           first + "the task is too hard for this model: lower the difficulty, warm-start (SFT) the "
                           "model, or raise rollout.group_size"))
    if share >= 1:
        why = (f"{truncated:.0%} of completions are cut by rollout.max_new_tokens: raise it to >= "
               f"{suggested_max_new_tokens(f['length'])} first" if cut and pass_g == 0 else
               "every completion passes (pass@1 = 1): make the task harder" if g["pass@1"] >= 1 else
               "the task is too hard for this model: lower the difficulty or warm-start" if pass_g == 0 else
               "the reward does not separate completions: give it more levels (partial credit) or raise "
               "rollout.group_size")
        out.append(Problem("fail", "equal_groups", f"all groups have equal rewards, so no gradient "
                           f"(pass@1 {g['pass@1']:.2f}, pass@{G} {pass_g:.2f})", why))
    elif share >= c.equal_groups_warn:
        out.append(Problem("warn", "equal_groups", f"{share:.0%} of groups have equal rewards (no gradient from them)",
                           "lower the difficulty, raise rollout.group_size, or use data.curriculum learnability"))
    return out


def step_problems(f: dict, c: DoctorConfig) -> list[Problem]:
    step, out = f.get("step"), []
    if f.get("eval_error"):
        out.append(Problem("fail", "evaluation", f"the held-out evaluation failed ({f['eval_error']:.200})",
                           "the run evaluates before step 1: fix reward.accuracy_reward (or the first reward)"))
    for name in f["nondeterministic_rewards"]:
        out.append(Problem("warn", "nondeterministic", f"reward {name!r} scored the same completions differently twice",
                           "seed or remove the randomness in the reward (group advantages assume a fixed reward)"))
    if step and c.memory_limit_gib > 0:
        kind, peak = ("CUDA", step["peak_cuda_gib"]) if step["peak_cuda_gib"] is not None else \
            ("host RSS", step["peak_rss_gib"])
        if peak > c.memory_limit_gib:
            out.append(Problem("fail", "memory", f"one step needs {peak:.2f} GiB ({kind}, longest prompts), over the "
                               f"memory limit {c.memory_limit_gib:g} GiB (doctor.memory_limit_gib)",
                               "lower rollout.prompts_per_step or train.micro_batch_size, or turn on "
                               "model.gradient_checkpointing"))
    return out


def find_problems(findings: dict, c: DoctorConfig) -> list[Problem]:
    """Every problem in the findings, the ones that stop learning first."""
    found = [p for check in (truncation_problems, reward_problems, group_problems, step_problems)
             for p in check(findings, c)]
    return sorted(found, key=lambda p: p.severity != "fail")


def exit_code(problems: list[Problem]) -> int:
    """0 = will learn, 1 = warnings only, 2 = will not learn."""
    return 2 if any(p.severity == "fail" for p in problems) else 1 if problems else 0


def _num(value, fmt: str = ".3f") -> str:
    return "-" if value is None else format(value, fmt)


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min" if seconds < 7200 else \
        f"{seconds / 3600:.1f} h"


def findings_lines(f: dict) -> list[str]:
    """The measured part of the table."""
    L, g, G = f["length"], f["groups"], f["group_size"]
    lines = [f"grpokit doctor: {f['prompts']} prompts x {G} completions, longest prompts first",
             f"  completion length   mean {L['mean']:.1f} / p95 {L['p95']:g} / max {L['max']} tokens of "
             f"max_new_tokens {L['max_new_tokens']}; truncated {L['truncated_share']:.1%}",
             f"  {'reward':18}{'weight':>8}{'mean':>9}{'std':>9}{'None':>8}{'failed':>8}"]
    for name, r in f["rewards"].items():
        name = name if len(name) <= 18 else "..." + name[-15:]
        lines.append(f"  {name:18}{r['weight']:>8g}{_num(r['mean']):>9}{r['std']:>9.3f}{r['none_share']:>8.1%}"
                     f"{r['fail_share']:>8.1%}")
    lines.append(f"  {'total':18}{'':>8}{_num(g['total_mean']):>9}{g['total_std']:>9.3f}{g['total_none_share']:>8.1%}")
    lines.append(f"  groups              all-equal rewards {g['equal_groups_share']:.1%}; pass@1 {g['pass@1']:.3f}, "
                 f"pass@{G} {g[f'pass@{G}']:.3f} (passes: {f['pass_rule']})")
    same = "agree" if not f["nondeterministic_rewards"] else "DISAGREE"
    lines.append(f"  determinism         the same completions scored twice {same}")
    step, proj = f.get("step"), f["projection"]
    if step:
        cuda = f", CUDA peak {step['peak_cuda_gib']:.2f} GiB" if step["peak_cuda_gib"] is not None else ""
        lines.append(f"  one step            {step['seconds']:.2f} s, peak RSS {step['peak_rss_gib']:.2f} GiB{cuda} "
                     f"(prompts up to {step['prompt_tokens_max']} tokens)")
        lines.append(f"  whole run           ~{duration_text(proj['total_seconds'])}: {proj['steps']} steps x "
                     f"{step['seconds']:.2f} s + {proj['evals']} evaluations x {duration_text(proj['eval_seconds'])}")
    return lines


def format_report(findings: dict, problems: list[Problem]) -> str:
    code = exit_code(problems)
    return "\n".join(findings_lines(findings) + [p.line() for p in problems] +
                     [f"verdict: {VERDICTS[code]} (exit status {code})"])


def write_report(path: Path, findings: dict, problems: list[Problem]) -> Path:
    """doctor.json: the verdict, the exit status, the problems and every finding."""
    code = exit_code(problems)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"verdict": VERDICTS[code], "exit_status": code,
                                "problems": [asdict(p) for p in problems], "findings": findings}, indent=2))
    return path
