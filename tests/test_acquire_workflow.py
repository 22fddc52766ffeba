"""End-to-end: the tiny config through the `allen` and `dandi` cohorts against the loopback services.

The same downstream DAG runs on acquired files (download -> select_sweeps -> scalogram ->
manifest, plus the byte report); 404s and unusable files end as excluded manifest rows.
"""

from __future__ import annotations

import re

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from acquire_fixtures import GHOST_ID
from conftest import REPO, smk, start_run
from sts.prep.sweeps import select_sweeps

pytestmark = pytest.mark.slow
TARGETS = ["results/manifest.csv", "results/acquire/report.csv"]


def config_for(services, workdir, cohort: str, train: list[str], test: list[str]) -> dict:
    cfg = yaml.safe_load((REPO / ".test" / "config.yaml").read_text())
    tag = {"allen": "Clamp", "dandi": "Seq"}[cohort]
    for name, cells in (("train", train), ("test", test)):
        (workdir / f"{name}.csv").write_text("".join(f"{sid}, {tag}\n" for sid in cells))
    cfg["split"].update(train_file="train.csv", test_file="test.csv", n_folds=2)
    cfg["cohort"] = cohort
    cfg["acquire"] = {
        "allen_api": services.server.url, "dandi_api": f"{services.server.url}/api",
        "patchseq_metadata": str(services.patchseq_csv), "retries": 2, "backoff_s": 0.05, "timeout_s": 20,
    }
    return cfg


def run_cohort(services, workdir, cohort, train, test, cells=None):
    cfg = config_for(services, workdir, cohort, train, test)
    cfg["acquire"]["cells"] = cells
    start_run(workdir, cfg, *TARGETS, "--resources", "downloads=2")
    manifest = pd.read_csv(workdir / "results" / "manifest.csv", dtype={"specimen_id": str}, keep_default_na=False)
    report = pd.read_csv(workdir / "results" / "acquire" / "report.csv", dtype={"specimen_id": str})
    return manifest.set_index("specimen_id"), report.set_index("specimen_id")


def assert_same_sweeps_as_whole_file(services, workdir, sid):
    with h5py.File(workdir / "results" / "sweeps" / f"{sid}.h5") as f:
        got = f["traces_mv"][()]
    np.testing.assert_array_equal(got, select_sweeps(services.nwb[sid]).traces_mv)


def test_allen_cohort_end_to_end(acquire_services, tmp_path):
    svc = acquire_services
    clamp = svc.cells[svc.cells["dataset"] == "clamp"]
    good = list(clamp.loc[clamp["defect"] == "", "specimen_id"])
    gone = GHOST_ID  # listed by the API, file answers 404
    corrupt = clamp.loc[clamp["defect"] == "corrupt_file", "specimen_id"].item()
    silent = clamp.loc[clamp["defect"] == "no_spiking", "specimen_id"].item()
    svc.server.faults[svc.allen_file_path(good[0])] = ["500"]  # 500 then 200
    manifest, report = run_cohort(svc, tmp_path, "allen", [*clamp["specimen_id"], gone], [])
    assert set(manifest.index) == {*clamp["specimen_id"], gone}
    assert "HTTP 404" in manifest.loc[gone, "reason"] and manifest.loc[gone, "status"] == "excluded"
    assert "unusable NWB file" in manifest.loc[corrupt, "reason"]
    assert "no long-square sweep with a spike in the Allen sweep table" in manifest.loc[silent, "reason"]
    ok = good
    assert (manifest.loc[ok, "status"] == "ok").all()
    assert (manifest.loc[ok, "label"] == clamp.set_index("specimen_id").loc[ok, "label"]).all()
    for sid in ok:
        assert_same_sweeps_as_whole_file(svc, tmp_path, sid)
        assert report.loc[sid, "bytes_fetched"] == report.loc[sid, "remote_size"] == svc.nwb[sid].stat().st_size
    assert report.loc[silent, "bytes_fetched"] == 0 and report.loc[gone, "bytes_fetched"] == 0
    assert (tmp_path / "results" / "metadata" / "allen_cells.csv").exists()
    proc = smk(tmp_path, "--dry-run", *TARGETS)  # nothing re-downloads
    out = proc.stdout + proc.stderr
    assert "Nothing to be done" in out or not re.search(r"^download\s+\d+", out, re.M)


def test_dandi_cohort_end_to_end(acquire_services, tmp_path):
    svc = acquire_services
    seq = svc.cells[svc.cells["dataset"] == "seq"]
    good = list(seq.loc[seq["defect"] == "", "specimen_id"])[:5]  # `acquire.cells` keeps 5 + 2 defects
    bad = list(seq.loc[seq["defect"].isin(["no_plus40", "no_long_square"]), "specimen_id"])
    seq = seq[seq["specimen_id"].isin(good + bad)]
    svc.server.faults[svc.blob_path(good[0])] = ["pass"] * 5 + ["500"]  # a 500 mid-read
    svc.server.reset_counters()
    manifest, report = run_cohort(svc, tmp_path, "dandi", good[:4] + bad, good[4:], cells=good + bad)
    assert set(manifest.index) == set(seq["specimen_id"])
    assert (manifest.loc[good, "status"] == "ok").all() and set(manifest.loc[good, "split"]) == {"train", "test"}
    assert (manifest.loc[good, "label"] == seq.set_index("specimen_id").loc[good, "label"]).all()  # from T-types
    reasons = {"no_plus40": "no sweep at rheobase+40 pA", "no_long_square": "no long-square sweeps",
               "nan_trace": "NaN values in the response"}
    for sid, defect in seq.loc[seq["defect"] != "", ["specimen_id", "defect"]].itertuples(index=False):
        assert manifest.loc[sid, "status"] == "excluded" and reasons[defect] in manifest.loc[sid, "reason"]
    for sid in good:
        assert_same_sweeps_as_whole_file(svc, tmp_path, sid)
        fetched = report.loc[sid, "bytes_fetched"]
        assert fetched == svc.server.bytes_sent[svc.blob_path(sid)]  # client and server agree
        assert fetched <= 2_000_000 and fetched < 0.15 * report.loc[sid, "remote_size"]
        assert (tmp_path / "results" / "nwb" / f"{sid}.nwb").stat().st_size < fetched
    print(report[["bytes_fetched", "remote_size", "fraction_of_file"]].to_string())
