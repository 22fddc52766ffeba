"""Shared fixtures: paths, and small synthetic NWB files written in both real layouts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# Reason fragments expected for each defect kind of the synthetic cohort: file-level defects
# (sweep selection) and metadata defects (manifest).
FILE_DEFECT_REASONS = {
    "corrupt_file": "unreadable NWB file",
    "no_long_square": "no long-square sweeps",
    "no_spiking": "no long-square sweep with a spike",
    "no_plus40": "no sweep at rheobase+40 pA",
    "nan_trace": "NaN values in the response of sweep",
}
DEFECT_REASONS = {**FILE_DEFECT_REASONS, "duplicate_id": "duplicate specimen_id", "unsure_label": "label Unsure"}
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]


def smk(workdir: Path, *args: str, config: dict | None = None, check=True) -> subprocess.CompletedProcess:
    """Run this workflow's Snakefile in ``workdir`` (writing ``config`` to its config.yaml first)."""
    cfg = workdir / "config.yaml"
    if config is not None:
        cfg.write_text(yaml.safe_dump(config))
    cmd = SNAKEMAKE + ["--directory", str(workdir), "--configfile", str(cfg), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


@pytest.fixture(scope="session")
def synth_cells(tmp_path_factory):
    """A cohort table and its NWB files (good and defective cells of both layouts)."""
    from sts.synth import make_cohort, write_cell

    cohort = make_cohort(40, seed=7, defect_fraction=0.2)
    out = tmp_path_factory.mktemp("nwb")
    paths = {}
    for row in cohort.drop_duplicates("specimen_id").to_dict("records"):
        path = out / f"{row['specimen_id']}.nwb"
        write_cell(row, path)
        paths[row["specimen_id"]] = path
    return cohort, paths


@pytest.fixture(scope="session")
def acquire_services(tmp_path_factory):
    """Loopback Allen + DANDI services serving 14 synthetic cells (seed 6) in the real layouts.

    Clamp cells: 3 good, corrupt_file (truncated NWB), no_spiking; seq cells: 6 good,
    no_plus40, no_long_square, nan_trace. Tests that inject faults restore what they change.
    """
    from acquire_fixtures import build_services, write_fixture_cells

    out = tmp_path_factory.mktemp("acquire")
    cohort, nwb = write_fixture_cells(out / "nwb", 14, seed=6, defect_fraction=0.35)
    services = build_services(cohort, nwb, out)
    yield services
    services.server.stop()
