"""The Snakemake profiles (profiles/*/config.yaml): they name real rules and this Snakemake
accepts them. That they work on a real scheduler is tests/cluster/slurm_smoke.sh's job."""

from __future__ import annotations

import re
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
    proc = dry_run(path, tmp_path)
    assert "select_sweeps" in proc.stdout


def usable_profile(path, tmp_path):
    """The profile's folder; without the SLURM plugin, a copy without its executor line."""
    if yaml.safe_load(path.read_text()).get("executor") != "slurm":
        return path.parent
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401

        return path.parent
    except ImportError:
        profile_dir = tmp_path / "profile"
        profile_dir.mkdir(exist_ok=True)
        text = "".join(ln for ln in path.read_text().splitlines(True) if not ln.startswith("executor:"))
        (profile_dir / "config.yaml").write_text(text)
        return profile_dir


def dry_run(path, tmp_path, *args):
    """A dry run of the .test config with the profile (and ``args``); it must succeed."""
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
         "--configfile", str(REPO / ".test" / "config.yaml"), "--profile", str(usable_profile(path, tmp_path)),
         "--dry-run", *args],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, f"{path}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def job_resources(stdout: str) -> dict[str, dict[str, str]]:
    """Rule -> its first job's resources, from a dry run's job list."""
    out, rule = {}, None
    for line in stdout.splitlines():
        m = re.match(r"^\s*(?:local)?rule (\w+):$", line)  # indented: a job of a group
        if m:
            rule = m[1]
        elif rule and line.strip().startswith("resources:") and rule not in out:
            items = line.split(":", 1)[1].split(", ")
            out[rule] = dict(item.strip().split("=", 1) for item in items)
    return out


# The rules a cluster may kill for memory or time, whose memory and runtime grow with `attempt`.
GROWING = ("cnn_pack", "cnn_tune", "cnn_train", "baseline", "baseline_oof")


def test_slurm_resources_grow_with_attempt(tmp_path):
    """On the SLURM profile, attempt k of the CNN, pack and baseline rules asks for k times the
    memory and runtime of the first (the profile's retries give attempts 1-3); other rules, the
    per-cell ones, ask for the same on every attempt."""
    path = REPO / "profiles" / "slurm" / "config.yaml"
    profile = yaml.safe_load(path.read_text())
    assert profile["retries"] >= 2
    first, *later = [job_resources(dry_run(path, tmp_path, "--attempt", str(k)).stdout) for k in (1, 2, 3)]
    assert set(GROWING) <= set(first)
    assert first["cnn_pack"]["mem_mb"] == str(profile["set-resources"]["cnn_pack"]["mem_mb"]).split()[0]
    for attempt, res in enumerate(later, start=2):
        for rule in GROWING:
            for key in ("mem_mb", "runtime"):
                assert int(res[rule][key]) == attempt * int(first[rule][key]), (rule, key, attempt)
        for rule in ("select_sweeps", "scalogram", "manifest", "cnn_evaluate"):
            assert res[rule]["mem_mb"] == first[rule]["mem_mb"] and res[rule]["runtime"] == first[rule]["runtime"]
