"""The package's shape: packages by concern with no loop between them (counting the lazy imports inside
functions too), layered in the pipeline's order; no module at the top but the command line and the settings;
no import loops between modules; no private name imported from another module; every rule calls one
function (its script) or one ``sts`` command (its shell)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


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
    assert ("sts.warm.client", "") in graph["sts.cli"]  # inside a function, a submodule by name
    assert ("sts.settings", "check_arch") in graph["sts.cnn.models"]  # at the top


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


# Bottom to top: a package may import only the ones before it. settings: every block's defaults;
# io: atomic writes, HDF5, untrusted files, text; recordings: the file formats; prep: per-cell sweeps and
# scalograms; trust: metrics, calibration, OOD; synth, acquire: where cells come from; cohort: the cell
# table and manifest; baseline, cnn, fusion: the models; serve: sts predict; report; warm: the warm-start
# server; cli: the dispatcher over each package's commands.
LAYERS = ("settings", "io", "recordings", "prep", "trust", "synth", "acquire", "cohort", "baseline", "cnn",
          "fusion", "serve", "report", "warm", "cli")  # fmt: skip
TOP_MODULES = {"sts", "sts.cli", "sts.settings"}


def package(module: str) -> str:
    """The package (or top-level module) under sts that ``module`` belongs to: sts.prep.sweeps -> prep."""
    return module.split(".")[1]


def cli_commands() -> set[str]:
    """The modules whose ``add_parser`` sts.cli calls by name (``COMMANDS``): imports too."""
    tree = ast.parse((SRC / "sts" / "cli.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["COMMANDS"]:
            return set(ast.literal_eval(node.value))
    raise AssertionError("sts.cli has no COMMANDS")


def package_edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for m, deps in imports().items():
        if m == "sts":
            continue
        targets = {t for t, _ in deps} | (cli_commands() if m == "sts.cli" else set())
        edges.setdefault(package(m), set()).update(package(t) for t in targets if t != "sts")
    return {p: ts - {p} for p, ts in edges.items()}


def test_only_the_command_line_and_the_settings_at_the_top():
    loose = sorted(m for m in imports() if m.count(".") == 1 and m not in TOP_MODULES
                   and not (SRC / "sts" / package(m) / "__init__.py").exists())  # fmt: skip
    assert not loose, f"modules outside a package: {loose}"


def test_the_dispatcher_registers_each_package_s_own_commands():
    graph = imports()
    assert cli_commands() and all(c in graph and c != "sts.cli" for c in cli_commands())
    assert {t for t, _ in graph["sts.cli"]} <= {"sts.warm.client", "sts.warm.server"}  # the rest by COMMANDS


def test_no_loops_between_packages_and_each_imports_only_those_below_it():
    edges = package_edges()
    assert set(edges) <= set(LAYERS), f"packages missing from LAYERS: {sorted(set(edges) - set(LAYERS))}"
    upward = sorted(f"{p} -> {t}" for p, ts in edges.items() for t in ts if LAYERS.index(t) > LAYERS.index(p))
    assert not upward, f"imports of a package above (LAYERS): {upward}"
    loops, state = [], {}

    def visit(p: str, stack: list[str]) -> None:  # without the layering, loops are still named
        state[p] = "open"
        for t in sorted(edges.get(p, ())):
            if state.get(t) == "open":
                loops.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t, stack + [t])
        state[p] = "done"

    for p in sorted(edges):
        if p not in state:
            visit(p, [p])
    assert not loops, f"loops between packages: {loops}"


def test_the_package_scan_sees_commands_and_lazy_imports():
    assert "cnn" in package_edges()["serve"] and "serve" in package_edges()["cli"]  # by COMMANDS


# Scripts that call no sts function, and why: they run in an env without sts.
NO_STS = {"allen_cells.py": "runs in workflow/envs/allensdk.yaml (old pins), imports neither sts nor pandas"}
SCRIPTS = ROOT / "workflow" / "scripts"


def sts_calls(path: Path) -> list[str]:
    """The calls in ``path`` of a name imported from sts (``f(...)``, ``mod.f(...)``)."""
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sts":
            names |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name.split(".")[0] == "sts"}
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            root = node.func
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in names:
                calls.append(ast.unparse(node.func))
    return calls


def test_each_rule_script_calls_one_sts_function():
    scripts = sorted(SCRIPTS.glob("*.py"))
    assert scripts and set(NO_STS) <= {s.name for s in scripts}
    wrong = {s.name: sts_calls(s) for s in scripts if len(sts_calls(s)) != (0 if s.name in NO_STS else 1)}
    assert not wrong, f"scripts calling other than one sts function: {wrong}"


def shell_commands() -> dict[str, str]:
    """``rule name -> its shell: string`` (adjacent literals joined) from every .smk file and the Snakefile."""
    out = {}
    files = sorted((ROOT / "workflow" / "rules").glob("*.smk")) + [ROOT / "Snakefile"]
    for path in files:
        rule = None
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"\s*(?:rule|checkpoint)\s+(\w+)\s*:", line)
            if m:
                rule = m.group(1)
            if line.strip() == "shell:":
                indent = len(lines[i + 1]) - len(lines[i + 1].lstrip())
                body = []
                for nxt in lines[i + 1:]:
                    if not nxt.strip() or len(nxt) - len(nxt.lstrip()) < indent:
                        break
                    body.append(nxt.strip())
                out[rule] = "".join(ast.literal_eval(s) for s in body)
    return out


def test_each_rule_shell_runs_one_sts_command():
    from sts.cli import build_parser

    known = set(build_parser()._subparsers._group_actions[0].choices)
    commands = shell_commands()
    assert len(commands) >= 5, commands
    wrong = {}
    for rule, cmd in commands.items():
        outside = re.sub(r"\$\([^)]*\)", "", cmd)  # $(dirname ...) computes an argument
        words = outside.split()
        if len(words) < 2 or words[0] != "sts" or words[1] not in known or re.search(r"&&|\|\||[;|`]", outside):
            wrong[rule] = cmd
    assert not wrong, f"rules whose shell is not one sts command: {wrong}"
