"""Shared fixtures: paths, and small synthetic NWB files written in both real layouts."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


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
