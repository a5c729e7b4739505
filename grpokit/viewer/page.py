"""The viewer's page: one HTML file with its script, style and data inline.

Data travels as JSON inside <script type="application/json">, with <, >, &, U+2028 and U+2029
written as \\u escapes, so no text in it (a completion holding "</script>") can end the element.
The page's own script is allowed by its SHA-256 in a Content-Security-Policy that also forbids
every network request but the local server's (--serve), so even markup that reached the page
could run nothing and fetch nothing. The script renders model text with textContent only."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from pathlib import Path

from grpokit.viewer.data import RunData

STATIC = Path(__file__).parent / "static"
SCRIPTS = ("util.js", "charts.js", "views.js", "step.js", "main.js")
DEFAULT_MAX_MB = 20.0  # completions embedded in the file, at most (metrics and groups come on top)
_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def json_for_script(obj) -> str:
    """JSON safe inside a <script> element (see the module's docstring). NaN is refused."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for char, escape in _ESCAPES.items():
        text = text.replace(char, escape)
    return text


def choose_steps(sizes: dict[int, int], budget_bytes: float) -> list[int]:
    """Steps whose completions go into the file: all when they fit in `budget_bytes`, else as
    many evenly spaced ones as fit, the first and the last among them."""
    steps = sorted(sizes)
    total = sum(sizes.values())
    if total <= budget_bytes:
        return steps
    n = int(len(steps) * budget_bytes / total)
    while n >= 2:
        picked = sorted({steps[round(i * (len(steps) - 1) / (n - 1))] for i in range(n)})
        if sum(sizes[s] for s in picked) <= budget_bytes:
            return picked
        n = min(n - 1, int(n * 0.95))
    return []


def _step_for_page(record: dict) -> dict:
    """A rollouts record as the page uses it (prompts travel once, in the prompts table)."""
    return {k: v for k, v in record.items() if k not in ("prompts", "answers")}


def vocab_for(records, decode) -> dict[str, str] | None:
    """{token id: its text} for every id in `records`, or None without a decoder."""
    if decode is None:
        return None
    ids = {i for r in records for row in r.get("completion_ids") or [] for i in row}
    return {str(i): decode(i) for i in sorted(ids)}


def payload(run: RunData, *, steps: list[int], decode=None, lazy: bool = False) -> dict:
    """Everything the page shows: metrics and groups for every step, completions for `steps`."""
    records = [run.read_step(s) for s in steps]
    alerts = [dict(t) for t in sorted({tuple(sorted(a.items())) for a in run.alerts}, key=lambda t: dict(t)["step"])]
    return {
        "meta": {"run": run.folder.name, "components": run.components, "accuracy_component": run.accuracy_component,
                 "group_size": run.group_size, "rollout_steps": sorted(run.offsets), "embedded_steps": steps,
                 "lazy": lazy, "has_rollouts": bool(run.offsets)},
        "config": run.config, "summary": run.summary, "metrics": run.metrics, "alerts": alerts,
        "groups": run.groups, "prompts": {str(k): v for k, v in run.prompts.items()},
        "steps": {str(r["step"]): _step_for_page(r) for r in records},
        "vocab": vocab_for(records, decode),
    }


def _static(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def render_html(data: dict) -> str:
    """The whole page as one string."""
    script = "\n".join(_static(name) for name in SCRIPTS)
    if "</script" in script.lower():
        raise AssertionError("the viewer's script may not contain '</script'")
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = (f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; img-src data:; "
           "connect-src 'self'; base-uri 'none'; form-action 'none'")
    parts = {"CSP": csp, "TITLE": html.escape(str(data["meta"]["run"])), "STYLE": _static("viewer.css"),
             "DATA": json_for_script(data), "SCRIPT": script}
    # one pass over the template: text inserted for one placeholder is never searched for another
    return re.sub(r"\{\{(\w+)\}\}", lambda m: parts[m.group(1)], _static("page.html"))


def write_page(run: RunData, out: Path, *, max_mb: float = DEFAULT_MAX_MB, steps: list[int] | None = None,
               decode=None) -> tuple[Path, list[int]]:
    """Write the self-contained page to `out`; (its path, the steps whose completions it holds)."""
    if steps is None:
        steps = choose_steps({s: n for s, (_, n) in run.offsets.items()}, max_mb * 1e6)
    else:
        missing = [s for s in steps if s not in run.offsets]
        if missing:
            raise ValueError(f"--steps: {missing} not in {run.rollouts_path} (it holds {len(run.offsets)} steps)")
    out.write_text(render_html(payload(run, steps=steps, decode=decode)), encoding="utf-8")
    return out, steps
