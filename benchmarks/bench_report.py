"""bench_grpo.py's summaries: per-system medians and matmul-peak fractions, grpokit's ratios to
the other systems (overall and round by round), the ablation gains, the printed tables."""

from __future__ import annotations

import os
import platform
import statistics
from pathlib import Path


def _med(records, key):
    return statistics.median(r[key] for r in records)


def summarize(res: dict, gflops: float) -> dict:
    recs = res["records"]
    rate = gflops * 1e9
    step = [r["step_s"] for r in recs]
    out = {
        "steps": len(recs), "step_s_median": statistics.median(step), "step_s_min": min(step), "step_s_max": max(step),
        "completions_per_s": _med(recs, "completions") / statistics.median(step),
        "gen_tokens_per_s": statistics.median(r["gen_tokens"] / r["step_s"] for r in recs),
        "gen_s": _med(recs, "gen_s"), "update_s": _med(recs, "update_s"), "cpu_s": _med(recs, "cpu_s"),
        "rows_updated": statistics.mean(r["rows_updated"] for r in recs),
        "zero_std_groups": statistics.mean(r["zero_std_groups"] for r in recs),
        "gen_tokens": statistics.mean(r["gen_tokens"] for r in recs),
        "frac_gen": statistics.median(r["gen_flops"] / (rate * r["gen_s"]) for r in recs),
        "frac_update": statistics.median(r["update_flops"] / (rate * max(r["update_s"], 1e-9)) for r in recs),
        "gen_gflops_needed": _med(recs, "gen_flops") / 1e9, "update_gflops_needed": _med(recs, "update_flops") / 1e9,
        "others_cores": max(r["others_cores"] for r in recs),
    }
    out.update({k: res["info"].get(k) for k in ("peak_rss_mb", "threads", "setup_s")})
    return out


def ablation_summary(on: list[dict], off: list[dict]) -> dict:
    s_on, s_off = _med(on, "step_s"), _med(off, "step_s")
    return {"step_s_on": s_on, "step_s_off": s_off, "gain": s_off / s_on,
            "gen_s_on": _med(on, "gen_s"), "gen_s_off": _med(off, "gen_s"),
            "update_s_on": _med(on, "update_s"), "update_s_off": _med(off, "update_s")}


def round_ratios(mine: list[dict], other: list[dict]) -> list[float]:
    """other's median step time over grpokit's, round by round (the steps taken side by side)."""
    out = []
    for r in sorted({x["round"] for x in mine} & {x["round"] for x in other}):
        out.append(_med([x for x in other if x["round"] == r], "step_s") / _med([x for x in mine if x["round"] == r], "step_s"))
    return out


def ratios(summary: dict, results: dict) -> dict:
    g = summary.get("grpokit")
    out = {}
    for other in ("trl", "textbook"):
        if g and other in summary:
            o = summary[other]
            per_round = round_ratios(results["grpokit"]["records"], results[other]["records"])
            out[f"grpokit/{other}"] = {
                "completions_per_s": g["completions_per_s"] / o["completions_per_s"],
                "per_round": per_round,
                "gen_tokens_per_s": g["gen_tokens_per_s"] / o["gen_tokens_per_s"],
                "peak_rss": g["peak_rss_mb"] / o["peak_rss_mb"] if g["peak_rss_mb"] and o["peak_rss_mb"] else None,
            }
    return out


def tables(report: dict) -> str:
    lines = ["| workload | system | steps | s/step median (min–max) | completions/s | gen tokens/s | gen s | update s "
             "| peak RSS MB | frac gen | frac update | others |", "|" + "---|" * 12]
    for wl, data in report["workloads"].items():
        for s, m in data["systems"].items():
            lines.append(
                f"| {wl} | {s} ({m['threads']}t) | {m['steps']} | {m['step_s_median']:.3f} "
                f"({m['step_s_min']:.3f}–{m['step_s_max']:.3f}) "
                f"| {m['completions_per_s']:.1f} | {m['gen_tokens_per_s']:.0f} | {m['gen_s']:.3f} | {m['update_s']:.3f} "
                f"| {m['peak_rss_mb']:.0f} | {m['frac_gen']:.1%} | {m['frac_update']:.1%} | {m['others_cores']:.2f} |")
    lines += ["", "| workload | ratio | completions/s | per round: median (min–max) | gen tokens/s | peak RSS |",
              "|---|---|---|---|---|---|"]
    for wl, data in report["workloads"].items():
        for name, r in data["ratios"].items():
            rss = f"{r['peak_rss']:.2f}" if r["peak_rss"] else "-"
            pr = r["per_round"]
            rounds = f"{statistics.median(pr):.2f}x ({min(pr):.2f}–{max(pr):.2f})" if pr else "-"
            lines.append(f"| {wl} | {name} | {r['completions_per_s']:.2f}x | {rounds} | {r['gen_tokens_per_s']:.2f}x "
                         f"| {rss} |")
    if any(d.get("ablations") for d in report["workloads"].values()):
        lines += ["", "| workload | switched off | steps | s/step off | s/step on | gain | gen s off/on "
                  "| update s off/on | others |", "|" + "---|" * 9]
        for wl, data in report["workloads"].items():
            for a in data.get("ablations", []):
                lines.append(f"| {wl} | {a['variant']}: {a['off']} | {len(a['records_off'])} "
                             f"| {a['step_s_off']:.3f} | {a['step_s_on']:.3f} "
                             f"| {a['gain']:.2f}x | {a['gen_s_off']:.3f}/{a['gen_s_on']:.3f} "
                             f"| {a['update_s_off']:.3f}/{a['update_s_on']:.3f} | {a['others_cores']:.2f} |")
    return "\n".join(lines)


def machine() -> dict:
    import importlib.metadata as md

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    versions = {}
    for pkg in ("torch", "transformers", "trl", "accelerate"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "python": platform.python_version(), **versions}
