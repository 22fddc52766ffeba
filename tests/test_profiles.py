"""The Snakemake profiles (profiles/*/config.yaml): they name real rules and this Snakemake
accepts them. That they work on a real scheduler is tests/cluster/slurm_smoke.sh's job."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from conftest import REPO, workflow_rules

PROFILES = sorted((REPO / "profiles").glob("*/config.yaml"))
RULE_KEYS = ("groups", "set-resources", "set-threads")


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.parent.name)
def test_profile_names_existing_rules(path):
    """A renamed rule must not silently lose its cluster resources or its group."""
    profile = yaml.safe_load(path.read_text())
    named = {rule for key in RULE_KEYS for rule in profile.get(key) or {}}
    unknown = sorted(named - set(workflow_rules()))
    assert not unknown, f"{path.relative_to(REPO)} names rules the workflow does not have: {unknown}"
    groups = set((profile.get("groups") or {}).values())
    assert groups <= set(profile.get("group-components") or {}), "every group needs its group-components"


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.parent.name)
def test_profile_loads_in_a_dry_run(path, tmp_path):
    """This Snakemake accepts every key and value of the profile (the .test config, dry run).

    Without the SLURM plugin (the `cluster` extra) the executor line is left out: the
    rest of the profile is still checked."""
    profile_dir = path.parent
    if yaml.safe_load(path.read_text()).get("executor") == "slurm":
        try:
            import snakemake_executor_plugin_slurm  # noqa: F401
        except ImportError:
            profile_dir = tmp_path / "profile"
            profile_dir.mkdir()
            text = "".join(ln for ln in path.read_text().splitlines(True) if not ln.startswith("executor:"))
            (profile_dir / "config.yaml").write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
         "--configfile", str(REPO / ".test" / "config.yaml"), "--profile", str(profile_dir), "--dry-run"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, f"{path}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert "select_sweeps" in proc.stdout
