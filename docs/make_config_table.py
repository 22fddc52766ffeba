"""The README's configuration table, generated from the schema and ``sts.settings``.

    python docs/make_config_table.py            # print the table
    python docs/make_config_table.py --write    # rewrite it in README.md between the markers
    python docs/make_config_table.py --check    # exit 1 when README.md's table is stale

One row per key a config may hold (``workflow/schemas/config.schema.yaml``, ``$ref`` resolved):
its description from the schema (empty when it has none), its default from the frozen dataclass
of its block in ``sts.settings`` (the schema's own default where no dataclass field holds it),
and the demo's value (``config/config.yaml``) where that differs from the default. Add a
description to the schema or move a default into ``sts.settings`` and re-run with ``--write``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
DEMO = ROOT / "config" / "config.yaml"
README = ROOT / "README.md"
START, END = "<!-- config-table:start -->", "<!-- config-table:end -->"
COMMAND = "python docs/make_config_table.py --write"
MISSING = object()

# Config block -> the sts.settings dataclasses that hold its defaults, and renames (config key ->
# field) where they differ. A class that sts.settings does not (or no longer) define is skipped,
# so a block whose dataclass moves or appears later only needs its name here.
BLOCKS: dict[str, list[tuple[str, dict]]] = {
    "synthetic": [("SynthParams", {})],
    "sweeps": [("SelectionParams", {})],
    "sweeps.qc": [("QcParams", {})],
    "scalogram": [("ScalogramParams", {})],
    "split": [("SplitParams", {})],
    "baseline": [("BaselineSettings", {})],
    "acquire": [("AcquireSettings", {})],
    "labels": [("LabelSettings", {})],
    "cnn": [("TuneSettings", "CNN_ARCH_KEYS"), ("PackSettings", {})],
    "cnn.normalisation": [("NormParams", {})],
    "cnn.pruner": [("TuneSettings", "PRUNER_KEYS")],
    "cnn.saliency": [("SaliencySettings", {})],
    "cnn.search_space": [("CNN_SPACE", {})],
    "cross_dataset": [("CrossDatasetSettings", {})],
    "predict": [("PredictSettings", {})],
}


def _settings():
    sys.path.insert(0, str(ROOT / "src"))
    import sts.settings

    return sts.settings


def code_default(block: str, key: str):
    """The default of ``block.key`` in sts.settings, or MISSING."""
    settings = _settings()
    for name, renames in BLOCKS.get(block, []):
        holder = getattr(settings, name, None)
        if holder is None:
            continue
        if isinstance(renames, str):  # a mapping that sts.settings defines itself
            renames = getattr(settings, renames, {})
        field = renames.get(key, key)
        if isinstance(holder, dict):
            if field in holder:
                return holder[field]
            continue
        if not dataclasses.is_dataclass(holder):
            continue
        for f in dataclasses.fields(holder):
            if f.name != field:
                continue
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
    return MISSING


def _resolve(node: dict, schema: dict) -> dict:
    while "$ref" in node:
        ref = node["$ref"]
        target = schema
        for part in ref.lstrip("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def rows(schema: dict | None = None, demo: dict | None = None) -> list[dict]:
    """One dict per leaf key: key, description, default, demo (values or MISSING)."""
    schema = schema if schema is not None else yaml.safe_load(SCHEMA.read_text())
    demo = demo if demo is not None else yaml.safe_load(DEMO.read_text())
    out = []

    def demo_value(path: list[str]):
        node = demo
        for part in path:
            if not isinstance(node, dict) or part not in node:
                return MISSING
            node = node[part]
        return node

    def walk(props: dict, path: list[str]):
        for key, node in props.items():
            node = _resolve(node, schema)
            here = path + [key]
            props_here = node.get("properties") or {}
            # a {low, high} range (the search space) is one value, not two keys
            if props_here and set(props_here) != {"low", "high"} and node.get("type", "object") == "object":
                walk(node["properties"], here)
                continue
            block, name = ".".join(path), key
            default = code_default(block, name)
            if default is MISSING:
                default = node.get("default", MISSING)
            out.append(
                {
                    "key": ".".join(here),
                    "description": node.get("description", ""),
                    "default": default,
                    "demo": demo_value(here),
                }
            )

    walk(schema["properties"], [])
    return out


def fmt(value) -> str:
    """A value as YAML flow text in backticks; empty for MISSING."""
    if value is MISSING:
        return ""
    value = _plain(value)
    if isinstance(value, str):
        text = value
    else:
        text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
        text = text.removesuffix("...").strip()
    return f"`{text}`"


def _plain(value):
    """Tuples as lists, integral floats as ints (``4000.0`` reads ``4000``), recursively."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _same(a, b) -> bool:
    return _plain(a) == _plain(b)


def cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def table() -> str:
    """The Markdown table (compact pipes: the README's word count is for prose)."""
    lines = ["|key|what it does|default|demo|", "|---|---|---|---|"]
    for row in rows():
        demo = row["demo"]
        shown = "" if demo is MISSING or _same(demo, row["default"]) else fmt(demo)
        lines.append(f"|`{row['key']}`|{cell(row['description'])}|{cell(fmt(row['default']))}|{cell(shown)}|")
    return "\n".join(lines) + "\n"


def readme_table(text: str) -> str:
    """The table between the markers of ``text`` (ValueError when they are missing)."""
    if START not in text or END not in text:
        raise ValueError(f"README.md has no {START} ... {END} markers")
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def write(path: Path = README) -> bool:
    """Rewrite the table in place; True when it changed."""
    text = path.read_text()
    old = readme_table(text)
    new = table()
    if old == new:
        return False
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(f"{head}{START}\n{new}{END}{tail}")
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite README.md's table in place")
    mode.add_argument("--check", action="store_true", help="exit 1 when README.md's table is stale")
    args = parser.parse_args(argv)
    if args.write:
        print("README.md: table rewritten" if write() else "README.md: table already current")
    elif args.check:
        if readme_table(README.read_text()) != table():
            print(f"README.md's configuration table is stale: run `{COMMAND}`", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
