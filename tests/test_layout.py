"""The package's shape: no import loops (counting the lazy imports inside functions too) and no
private name imported from another module."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[tuple[str, str]]]:
    """Module -> {(imported sts module, imported name or '')}, from every import statement."""
    files = {module_name(f): f for f in SRC.rglob("*.py")}
    out = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {(a.name, "") for a in node.names if a.name in files}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                for a in node.names:
                    if f"{base}.{a.name}" in files:  # a submodule
                        found.add((f"{base}.{a.name}", ""))
                    elif base in files:
                        found.add((base, a.name))
        out[name] = {(m, n) for m, n in found if m != name}
    return out


def test_the_scan_sees_lazy_and_top_level_imports():
    graph = imports()
    assert ("sts.io.atomic", "write_json_atomic") in graph["sts.trust.calibration"]  # inside a function
    assert ("sts.settings", "ScalogramParams") in graph["sts.cli"]  # at the top


def test_no_import_loops():
    graph = {m: {t for t, _ in deps} for m, deps in imports().items()}

    def parents(module: str) -> set[str]:  # importing a.b.c runs a/__init__ and a/b/__init__ first
        parts = module.split(".")
        return {".".join(parts[:k]) for k in range(1, len(parts))} & set(graph)

    edges = {m: {t for t in deps if t not in parents(m)} for m, deps in graph.items()}
    loops, state, stack = [], {}, []

    def visit(m: str) -> None:
        state[m] = "open"
        stack.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == "open":
                loops.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert not loops, f"import loops: {loops}"


def test_no_private_names_imported_across_modules():
    crossing = sorted(f"{m} imports {t}.{n}" for m, deps in imports().items() for t, n in deps
                      if n.startswith("_") and not n.startswith("__"))  # fmt: skip
    assert not crossing, crossing
