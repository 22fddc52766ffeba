"""Conda envs of the workflow (`--software-deployment-method conda`).

Rules and env files are discovered, not listed: every rule that runs something names an
env file that exists; every env pins its packages; the env explicitly provides the
third-party modules that its rules' code imports (the rule's script, or the `sts`
subcommand its shell calls, followed through the package's imports); its pins agree with
pyproject.toml; and its pip section, under its conda pins, resolves on PyPI.

Conda channels are not reachable here, so conda packages are checked offline (pins,
agreement with pyproject.toml). The pip resolution needs PyPI: it is skipped, saying so,
only when PyPI cannot be reached.
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import tomllib
from functools import cache
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from conftest import REPO, workflow_rules

SRC = REPO / "src"
ENV_DIR = REPO / "workflow" / "envs"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())

# Import name -> distribution names (PyPI or conda-forge) that provide it, where they differ.
PROVIDERS = {
    "yaml": {"pyyaml"},
    "sklearn": {"scikit-learn"},
    "pywt": {"pywavelets"},
    "PIL": {"pillow"},
    "skimage": {"scikit-image"},
    "torch": {"torch", "pytorch"},
    "dateutil": {"python-dateutil"},
    "hdmf": {"hdmf", "pynwb"},  # pynwb's own data layer, pinned by it
}
# conda-forge names whose PyPI distribution is called differently.
PYPI_NAME = {"pytorch": "torch"}
ACTIONS = ("shell", "script", "notebook", "wrapper", "run")


# ---------------------------------------------------------------- rules ---------------


def string_value(text: str) -> str:
    """The string literal of a directive (`"../envs/sts.yaml"`)."""
    return ast.literal_eval(text.strip().rstrip(","))


@cache
def rules() -> dict[str, dict]:
    return workflow_rules()


def runnable_rules() -> list[str]:
    return sorted(name for name, r in rules().items() if any(a in r for a in ACTIONS))


def env_path(rule: str) -> Path:
    r = rules()[rule]
    return (r["file"].parent / string_value(r["conda"])).resolve()


# ------------------------------------------------------------- env files --------------


@cache
def env_spec(path: Path) -> dict:
    """{python, conda: {name: version}, pip: {name: version}, local: [pip paths], unpinned: [...]}."""
    env = yaml.safe_load(path.read_text())
    spec = {"python": None, "conda": {}, "pip": {}, "local": [], "unpinned": []}
    for dep in env.get("dependencies", []):
        if isinstance(dep, dict):
            for req in dep.get("pip", []):
                if req.startswith(("-e", ".", "/")):  # this repository (`-e ../..`)
                    spec["local"].append(req.removeprefix("-e").strip())
                    continue
                r = Requirement(req)
                pins = [s for s in r.specifier if s.operator == "=="]
                if len(pins) == 1 and len(r.specifier) == 1:
                    spec["pip"][canonicalize_name(r.name)] = pins[0].version
                else:
                    spec["unpinned"].append(f"pip: {req}")
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*={1,2}\s*([0-9][A-Za-z0-9.*+_-]*)", dep.strip())
        if not m:
            spec["unpinned"].append(dep)
        elif m[1] == "python":
            spec["python"] = m[2]
        else:
            spec["conda"][canonicalize_name(m[1])] = m[2]
    return spec


def env_files() -> list[Path]:
    return sorted(ENV_DIR.glob("*.yaml"))


def provided(spec: dict) -> set[str]:
    names = set(spec["conda"]) | set(spec["pip"])
    if spec["local"]:
        names.add("sts")
    return names


# --------------------------------------------------------- what rules import ----------


def module_file(name: str) -> Path | None:
    base = SRC.joinpath(*name.split("."))
    for cand in (base / "__init__.py", base.with_suffix(".py")):
        if cand.exists():
            return cand
    return None


def optional_import(node: ast.Try) -> bool:
    """A `try` whose ImportError is caught and survived (not re-raised, not an exit)."""
    for h in node.handlers:
        if h.type is not None and re.search(r"ImportError|ModuleNotFoundError", ast.unparse(h.type)):
            return not any(isinstance(n, ast.Raise) or re.match(r"(sys\.)?exit\(", ast.unparse(n)) for n in h.body)
    return False


def bindings_in(tree: ast.AST, module: str, is_package: bool, top_only: bool = False) -> dict[str, str]:
    """Name -> absolute dotted name, for each import in a syntax tree.

    Optional imports (in a `try` that catches ImportError) and `if TYPE_CHECKING:` blocks
    are left out; `top_only` stops at function and class bodies (what importing runs).
    """
    found: dict[str, str] = {}

    def visit(node, optional):
        if isinstance(node, ast.Try):
            opt = optional or optional_import(node)
            for child in node.body:
                visit(child, opt)
            for child in node.handlers + node.orelse + node.finalbody:
                visit(child, optional)
            return
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        if isinstance(node, ast.Import) and not optional:
            for alias in node.names:
                found[alias.asname or alias.name.split(".")[0]] = alias.name
        elif isinstance(node, ast.ImportFrom) and not optional:
            if node.level:
                package = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{node.module}" if node.module else package
            else:
                base = node.module
            found.setdefault(f"<from {base}>", base)
            for alias in node.names:
                found[alias.asname or alias.name] = f"{base}.{alias.name}"
        if top_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return
        for child in ast.iter_child_nodes(node):
            visit(child, optional)

    visit(tree, False)
    return found


def referenced(tree: ast.AST, names: dict[str, str], defs: dict[str, str]) -> set[str]:
    """Dotted names a piece of code uses: `f(...)` and `mod.f(...)` through imports or local defs."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in names:
            out.add(f"{names[node.value.id]}.{node.attr}")
        elif isinstance(node, ast.Name):
            if node.id in names:
                out.add(names[node.id])
            elif node.id in defs:
                out.add(defs[node.id])
    return out


@cache
def sts_module(module: str) -> tuple[dict[str, str], dict[str, ast.AST], bool] | None:
    """(top-level import bindings, top-level defs, is_package) of an sts module, or None."""
    path = module_file(module)
    if path is None:
        return None
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    return bindings_in(tree, module, is_package, top_only=True), defs, is_package


def third_party(names: set[str]) -> set[str]:
    """Top-level third-party modules that running code which uses `names` imports.

    Followed through the sts package: a module brings its top-level imports (and its
    parent packages'); a function or class brings the imports in its body and whatever
    it uses in turn (the package imports lazily, inside functions).
    """
    seen, todo, out = set(), list(names), set()
    while todo:
        name = todo.pop()
        top = name.split(".")[0]
        if top != "sts":
            if top not in sys.stdlib_module_names and top != "__future__":
                out.add(top)
            continue
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # a submodule import runs its packages' __init__
            info = sts_module(".".join(parts[:i]))
            if info is not None:
                todo.extend(info[0].values())
        module, _, attr = name.rpartition(".")
        info = sts_module(module)
        if info is None or sts_module(name) is not None or attr not in info[1]:
            continue
        top_names, defs, is_package = info
        node = info[1][attr]
        local = {**top_names, **bindings_in(node, module, is_package)}
        todo.extend(local.values())
        todo.extend(referenced(node, local, {d: f"{module}.{d}" for d in defs}))
    return out


def script_names(path: Path, dists: set[str]) -> set[str]:
    """What a Snakemake script imports and uses in an env providing `dists` (all of it:
    scripts are short), minus the branch that env never takes where the script adapts to
    an optional import (`try: import x / except ImportError: x = None`, then `if x is None:`)."""
    tree = ast.parse(path.read_text())
    optional: dict[str, bool] = {}  # name -> its import succeeds in this env
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and optional_import(node):
            for name, target in bindings_in(ast.Module(body=node.body, type_ignores=[]), "__main__", False).items():
                optional[name] = satisfied(target.split(".")[0], dists)

    class DeadBranches(ast.NodeTransformer):
        def visit_If(self, node):
            m = re.fullmatch(r"(not )?(\w+)( is None| is not None)?", ast.unparse(node.test))
            if m and m[2] in optional:
                negated = bool(m[1]) != (m[3] == " is None")
                body = node.body if optional[m[2]] != negated else node.orelse
                return [self.visit(n) for n in body]
            return self.generic_visit(node)

    tree = ast.fix_missing_locations(DeadBranches().visit(tree))
    names = bindings_in(tree, "__main__", False)
    return set(names.values()) | referenced(tree, names, {})


@cache
def sts_parser() -> argparse.ArgumentParser:
    from sts.cli import build_parser

    return build_parser()


def sts_handler(words: list[str]):
    """The function that `sts WORD [WORD]` runs (subcommands may nest), or None."""
    parser = sts_parser()
    for word in words:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or word not in subs[0].choices:
            break
        parser = subs[0].choices[word]
        if parser.get_default("func") is not None:
            return parser.get_default("func")
    return None


def rule_imports(rule: str, dists: set[str]) -> tuple[set[str], list[str]]:
    """Top-level modules (sts included) a rule's code imports in an env providing `dists`,
    and what that code is (for messages)."""
    r, names, what = rules()[rule], set(), []
    if "script" in r:
        script = (r["file"].parent / string_value(r["script"])).resolve()
        names |= script_names(script, dists)
        what.append(script.relative_to(REPO).as_posix())
    if "shell" in r:
        for cmd in re.findall(r"(?<![\w/.-])sts((?:\s+[a-z][\w-]*){1,2})", r["shell"]):
            cmd = cmd.strip()
            func = sts_handler(cmd.split())
            assert func is not None, f"rule {rule}: `sts {cmd}` is not a subcommand of the sts CLI"
            names.add(f"{func.__module__}.{func.__name__}")  # its module and its body
            what.append(f"sts {cmd}")
    return third_party(names) | {"sts"} & {n.split(".")[0] for n in names}, what


def satisfied(module: str, dists: set[str]) -> bool:
    wanted = PROVIDERS.get(module, {canonicalize_name(module)})
    return bool({canonicalize_name(d) for d in wanted} & dists)


# ------------------------------------------------------------------ tests -------------


def test_parser_sees_every_rule_snakemake_lists():
    """The text parser must not miss rules: compare with Snakemake's own list."""
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--configfile",
         str(REPO / ".test" / "config.yaml"), "--list-rules"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )
    listed = {ln.strip() for ln in proc.stdout.splitlines() if re.fullmatch(r"\w+", ln.strip())}
    assert listed, proc.stdout + proc.stderr
    assert listed <= set(rules()), f"rules the parser missed: {sorted(listed - set(rules()))}"


@pytest.mark.parametrize("rule", runnable_rules())
def test_rule_names_existing_env(rule):
    r = rules()[rule]
    if "run" in r:
        pytest.fail(f"rule {rule} uses run:, which cannot have a conda env; use script: instead")
    assert "conda" in r, f"rule {rule} ({r['file'].name}) has no conda: directive"
    path = env_path(rule)
    assert path.parent == ENV_DIR, f"rule {rule}: env {path} is not under workflow/envs/"
    assert path.is_file(), f"rule {rule}: env file {path} does not exist"


@pytest.mark.parametrize("path", env_files(), ids=lambda p: p.name)
def test_env_is_pinned_and_agrees_with_pyproject(path):
    spec = env_spec(path)
    assert not spec["unpinned"], f"{path.name}: not pinned to a version: {spec['unpinned']}"
    assert spec["python"], f"{path.name}: python is not pinned"
    assert Version(spec["python"]) in SpecifierSet(PYPROJECT["project"]["requires-python"]), path.name
    ranges = {canonicalize_name(Requirement(r).name): Requirement(r).specifier for r in PYPROJECT["project"]["dependencies"]}
    for name, version in {**spec["conda"], **spec["pip"]}.items():
        name = PYPI_NAME.get(name, name)
        if name in ranges:
            v = Version(version.rstrip(".*"))
            assert v in ranges[name], f"{path.name}: {name} {version} is outside pyproject.toml's {ranges[name]}"
    for local in spec["local"]:
        target = (path.parent / local.split("[")[0]).resolve()
        assert (target / "pyproject.toml").is_file(), f"{path.name}: pip path {local} is not this repository"


@pytest.mark.parametrize("rule", [r for r in runnable_rules() if "conda" in rules()[r]])
def test_env_provides_what_rule_imports(rule):
    spec = env_spec(env_path(rule))
    dists = provided(spec)
    needed, what = rule_imports(rule, dists)
    assert what, f"rule {rule}: found no script and no `sts` command to check"
    if "sts" in needed:
        assert spec["local"], f"rule {rule} runs the sts package but {env_path(rule).name} does not install it"
    missing = sorted(m for m in needed - {"sts"} if not satisfied(m, dists))
    assert not missing, (
        f"rule {rule} ({', '.join(what)}) imports {missing}, not listed in {env_path(rule).name}"
    )


def pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


def start_pip_resolution(path: Path, workdir: Path) -> subprocess.Popen | None:
    """Start `pip install --dry-run` of an env's PyPI packages under its conda pins (stderr to a
    file in ``workdir``, named after the env)."""
    spec = env_spec(path)
    if not spec["pip"]:
        return None
    constraints = workdir / f"{path.stem}-conda-pins.txt"
    constraints.write_text(
        "".join(
            f"{PYPI_NAME.get(n, n)}=={v}{'.*' if v.count('.') < 2 else ''}\n"
            for n, v in spec["conda"].items()
            if n != "pip"
        )
    )
    python = [] if spec["python"] == "%d.%d" % sys.version_info[:2] else [
        "--python-version", spec["python"], "--only-binary=:all:"]
    # --isolated: PyPI as a user's conda env sees it, not this machine's pip config.
    cmd = [sys.executable, "-m", "pip", "install", "--isolated", "--dry-run", "--ignore-installed", "--quiet",
           *python, "-c", str(constraints), *(f"{n}=={v}" for n, v in spec["pip"].items())]
    with open(workdir / f"{path.stem}.err", "w") as err:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)


_RESOLUTIONS: dict = {}


def start_pip_resolutions() -> dict[Path, subprocess.Popen | None] | None:
    """All envs' resolutions at once (they wait on the network, not on the CPU), started once per
    session; None if PyPI is not reachable. conftest.py calls this as soon as a test that needs them
    is collected, so that the waiting overlaps with the tests that run first."""
    if "procs" not in _RESOLUTIONS:
        _RESOLUTIONS["workdir"] = workdir = Path(tempfile.mkdtemp(prefix="sts-pip-"))
        _RESOLUTIONS["procs"] = {p: start_pip_resolution(p, workdir) for p in env_files()} if pypi_reachable() else None
    return _RESOLUTIONS["procs"]


@pytest.fixture(scope="module")
def pip_resolutions():
    procs = start_pip_resolutions()
    yield procs
    for proc in (procs or {}).values():
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
    shutil.rmtree(_RESOLUTIONS.pop("workdir"), ignore_errors=True)
    _RESOLUTIONS.clear()


@pytest.mark.parametrize("path", [p for p in env_files() if env_spec(p)["pip"]], ids=lambda p: p.name)
def test_env_pip_section_resolves(path, pip_resolutions):
    """pip resolves the env's pip packages, with their dependencies, under its conda pins.

    That is what `conda env create` asks of pip after solving the conda part. The local
    package's own ranges are checked offline against the pins above (and resolved by CI's
    `pip install -e .`); resolving them again per env would cost minutes.
    """
    if pip_resolutions is None:
        pytest.skip("PyPI is not reachable: pip section not resolved (pins checked offline above)")
    proc = pip_resolutions[path]
    proc.wait(timeout=600)
    err = (_RESOLUTIONS["workdir"] / f"{path.stem}.err").read_text()
    assert proc.returncode == 0, f"{path.name}: pip cannot resolve its packages:\n{err[-3000:]}"
