"""AllenSDK itself (its own env) against the loopback Allen API: the `allen_cells` rule's script.

AllenSDK pins numpy<1.24 / pandas 1.5 and cannot live in the test environment; installing it
in a second venv takes minutes, so CI does not. Opt in with an interpreter that has it:

    python3.11 -m venv .venv-allensdk && .venv-allensdk/bin/pip install allensdk==2.16.2
    STS_ALLENSDK_PYTHON=.venv-allensdk/bin/python python -m pytest tests/test_acquire_allensdk.py
"""

from __future__ import annotations

import os
import subprocess

import pandas as pd
import pytest

from conftest import REPO
from sts.acquire import allen

PYTHON = os.environ.get("STS_ALLENSDK_PYTHON")
RUN = """
import runpy, types
snakemake = types.SimpleNamespace(log=[{log!r}], output=types.SimpleNamespace(cells={out!r}),
                                  params=types.SimpleNamespace(api={api!r}))
runpy.run_path({script!r}, init_globals={{"snakemake": snakemake}})
"""


@pytest.mark.skipif(not PYTHON, reason="opt-in: set STS_ALLENSDK_PYTHON to a Python with allensdk==2.16.2")
def test_allensdk_cell_list_matches_sts_client(acquire_services, tmp_path):
    url = acquire_services.server.url
    out, log = tmp_path / "allensdk_cells.csv", tmp_path / "allen_cells.log"
    code = RUN.format(log=str(log), out=str(out), api=url, script=str(REPO / "workflow/scripts/allen_cells.py"))
    proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "AllenSDK CellTypesApi" in log.read_text()
    by_sdk = pd.read_csv(out, dtype=str)
    by_sts = allen.list_cells(url).astype(str).replace("nan", pd.NA)
    pd.testing.assert_frame_equal(by_sdk.reset_index(drop=True), by_sts.reset_index(drop=True), check_dtype=False)
