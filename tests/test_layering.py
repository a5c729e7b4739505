"""The package's layering: each layer imports only from the layers below it, and no module
imports itself back through others (docs/design.md, "Layout").

Imports inside functions count like those at the top: a deferred import hides a cycle from
Python, not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "grpokit"

# Bottom first. A module may import from its own layer and from any layer listed before it.
LAYERS: list[set[str]] = [
    {"errors", "registry", "version"},
    {"algo"},  # pure tensor math
    {"sandbox"},  # running untrusted code (no torch)
    {"rewards"},  # scoring completions
    {"data"},  # sources, presets, records, prompt order, the demo's problems
    {"config"},  # the typed config, checked against the registries below it
    {"envs"},  # multi-turn environments and tools (the python tool runs in the sandbox)
    {"rollout"},  # sampling completions: the Rollout type, decoders
    {"policy"},  # log-prob forwards, the reference policy
    {"eval"},  # accuracy and pass@k over a dataset
    {"tasks"},  # the demo's model and warm start
    {"models"},  # loading, adapters, saving
    {"parallel"},  # processes, sharding, host memory
    {"train"},  # the trainer, the run, logs, checkpoints
    {"viewer"},  # reading a finished run
    {"cli"},  # the command line
    {"__init__", "__main__"},
]


def layer_of(module: str) -> int:
    """Layer index of a dotted module name inside grpokit ('grpokit.data.records' -> data's)."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module}: its folder {top!r} is in no layer; add it to LAYERS in {__file__}")


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1 and parts[:-1] != ["grpokit"]:
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, module: str) -> set[str]:
    """Every grpokit module named by an import anywhere in the file (functions included)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "grpokit"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != "grpokit":
                continue
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # `from pkg import module`
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the grpokit modules it imports (names that are not modules are dropped)."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        graph[name] = {m for m in imports_of(path, name) if m in files and m != name}
    return graph


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)}), a higher layer"
                  for a, deps in graph.items() for b in deps if layer_of(b) > layer_of(a))


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None. A package's __init__ importing its own
    submodules is not a cycle unless a submodule imports the package back."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_each_layer_imports_only_from_the_layers_below():
    assert layer_violations(import_graph()) == []


def test_the_package_has_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_the_checks_catch_an_upward_import_and_a_cycle():
    graph = {"grpokit.data.records": {"grpokit.data.order"}, "grpokit.data.order": {"grpokit.data.records"},
             "grpokit.algo.losses": {"grpokit.train.trainer"}, "grpokit.train.trainer": set()}
    assert find_cycle(graph) == ["grpokit.data.order", "grpokit.data.records", "grpokit.data.order"]
    assert layer_violations(graph) == ["grpokit.algo.losses (layer 1) imports grpokit.train.trainer (layer 13), "
                                       "a higher layer"]


def test_a_cycle_written_into_a_real_file_is_found(tmp_path):
    import shutil

    copy = tmp_path / "grpokit"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    order = copy / "data" / "order.py"
    order.write_text(order.read_text() + "\n\ndef _late():\n    from grpokit.data.records import load_split\n")
    cycle = find_cycle(import_graph(copy))
    assert cycle is not None and "grpokit.data.order" in cycle and "grpokit.data.records" in cycle
