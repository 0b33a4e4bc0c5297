"""The package layout is the architecture, read from the code's own imports (``ast``, every import
statement, at module level or inside a function):

    study -> stacked -> run -> cost -> nn, data -> errors

Arrows point down; nothing imports upward, and no module takes part in an import circle. Also:
no module in src/ is over 300 lines."""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

SRC = ROOT / "src"
PKG = SRC / "qsnn"
# package -> the packages it may import (besides itself)
ALLOWED = {
    "errors": set(),
    "nn": {"errors"},
    "data": {"errors"},
    "cost": {"errors", "nn", "data"},
    "run": {"errors", "nn", "data", "cost"},
    "stacked": {"errors", "nn", "data", "cost", "run"},
    "study": {"errors", "nn", "data", "cost", "run", "stacked"},
    # the commands kept by their old names: python -m qsnn.bench, python -m qsnn.dashboard
    "bench": {"cost"},
    "dashboard": {"study"},
}
MAX_LINES = 300


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PKG.rglob("*.py")}


def imports(path: Path, name: str, known: dict[str, Path]) -> set[str]:
    """The qsnn modules ``path`` imports (``from pkg import mod`` counts as importing ``pkg.mod``)."""
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "qsnn"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[:len(pkg) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            if base.split(".")[0] != "qsnn":
                continue
            for a in node.names:
                out.add(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base)
    return {m for m in out if m in known}


def layer(module: str) -> str:
    return module.split(".")[1] if "." in module else "qsnn"


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imports(p, m, known) - {m} for m, p in known.items()}


def test_every_package_has_a_layer():
    assert {layer(m) for m in modules()} - {"qsnn"} == set(ALLOWED)


def test_no_import_runs_against_the_layers():
    bad = [f"{m} imports {d}" for m, deps in graph().items() for d in sorted(deps)
           if layer(m) != "qsnn" and layer(d) != layer(m) and layer(d) not in ALLOWED[layer(m)]]
    assert not bad, "imports against the layers (study -> stacked -> run -> cost -> nn, data -> errors):\n" + \
        "\n".join(bad)


def circles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), i.e. the import circles."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    assert circles(graph()) == []


def test_the_checks_see_a_circle_and_an_upward_import():
    """The graph reader and the circle finder themselves, on a constructed case."""
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    deps = graph()
    assert "qsnn.errors" in deps["qsnn.run.validate"] and "qsnn.nn.net" in deps["qsnn.nn.models.csnn"]
    assert "qsnn.study.stats" in deps["qsnn.study.report_tables"]  # `from qsnn.study import stats`


def test_no_module_is_over_300_lines():
    long = {str(p.relative_to(ROOT)): n for p in SRC.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split by duty: {long}"
