"""The README stays short, current and linked: its configuration table is the generated one, it has at most
2,500 words, every page it links exists, and it holds the exact commands CI runs."""

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_WORDS = 2500


def _generator():
    spec = importlib.util.spec_from_file_location("make_config_table", ROOT / "docs" / "make_config_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_table_is_current():
    gen = _generator()
    assert gen.readme_table(README.read_text()) == gen.table(), (
        f"README.md's configuration table is stale (schema, sts.settings or config/config.yaml changed): "
        f"run `{gen.COMMAND}` and commit README.md"
    )


def test_config_table_has_every_schema_key_once():
    gen = _generator()
    keys = [row["key"] for row in gen.rows()]
    assert len(keys) == len(set(keys))
    for key in ("cohort", "sweeps.fs_hz", "sweeps.qc.drift_max_mv", "cnn.search_space.learning_rate", "predict.model"):
        assert key in keys


def test_config_table_tolerates_keys_without_description():
    gen = _generator()
    schema = {"properties": {"block": {"type": "object", "properties": {"bare": {"type": "integer"}}}}}
    (row,) = gen.rows(schema=schema, demo={"block": {"bare": 3}})
    assert row["key"] == "block.bare" and row["description"] == "" and row["demo"] == 3


def test_readme_at_most_2500_words():
    words = len(README.read_text().split())  # as `wc -w README.md`
    assert words <= MAX_WORDS, (
        f"README.md has {words} words (at most {MAX_WORDS}): move detail to docs/ and link it"
    )


def test_linked_pages_exist():
    for page in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).resolve().is_file(), f"{page.relative_to(ROOT)} links {target}: no such file"


def test_readme_links_the_docs():
    text = README.read_text()
    for name in ("design", "security", "benchmarks"):
        assert f"docs/{name}.md" in text
    assert "CHANGELOG.md" in text


def test_readme_holds_the_commands_ci_runs():
    """.ci/run calls the README's install, lint and test commands: each must stay verbatim in the README."""
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [ci[i + 1].strip() for i, line in enumerate(ci) if line.startswith("# --- README:")]
    assert len(commands) == 3
    text = README.read_text()
    for command in commands:
        assert f"\n{command}\n" in text, f"README.md lacks CI's command: {command}"
