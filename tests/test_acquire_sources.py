"""Allen and DANDI acquisition against the loopback services (no snakemake): listings, labels,
per-cell downloads and streaming, exclusion markers, cohort tables."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest

from acquire_fixtures import GHOST_ID
from conftest import REPO
from sts.acquire import allen, dandi_stream, labels
from sts.acquire.cell import Sources, acquire_cell, write_report
from sts.acquire.http import RetryPolicy
from sts.cohort.table import cohort_table
from sts.recordings import NwbReadError, open_recording
from sts.prep.sweeps import SelectionParams, select_sweeps

FAST = RetryPolicy(retries=2, backoff_s=0.01, timeout_s=20)
STREAM_BUDGET = 2_000_000  # bytes per streamed cell (issue 6)


def ids(services, dataset, defect=""):
    c = services.cells
    return list(c.loc[(c["dataset"] == dataset) & (c["defect"] == defect), "specimen_id"])


def sources(services, mode="stream") -> Sources:
    return Sources(allen_api=services.server.url, dandi_api=f"{services.server.url}/api", dandi_mode=mode)


@pytest.fixture(scope="module")
def asset_table(acquire_services, tmp_path_factory):
    path = tmp_path_factory.mktemp("meta") / "dandi_assets.csv"
    dandi_stream.list_assets(f"{acquire_services.server.url}/api", "000020").to_csv(path, index=False)
    return path


def test_labels_from_metadata():
    assert labels.label_from_allen("Pvalb-IRES-Cre", "aspiny") == "Pvalb"
    assert labels.label_from_allen("Htr3a-Cre_NO152", "aspiny") == "Vip/Lamp5"
    assert labels.label_from_allen("Sst-IRES-Cre", "spiny") == "Excitatory"  # dendrites decide first
    assert labels.label_from_allen("Gad2-IRES-Cre", "aspiny") == "Unsure"
    assert labels.label_from_allen(None, float("nan")) == "Unsure"
    assert labels.label_from_ttype("Lamp5 Lsp1") == labels.label_from_ttype("Vip Crispld2 Kcne4") == "Vip/Lamp5"
    assert labels.label_from_ttype("Sst Calb2 Pdlim5") == "Sst"
    assert labels.label_from_ttype("L2/3 IT VISp Agmat") == "Excitatory"
    assert labels.label_from_ttype("Sncg Vip Itih5") == "Vip/Lamp5"  # more rules: tests/test_labels_patchseq.py
    assert labels.label_from_ttype("Meis2 Adamts19") == labels.label_from_ttype("") == "Unsure"


def test_allen_listing_and_sweep_table(acquire_services):
    svc = acquire_services
    cells = allen.list_cells(svc.server.url, FAST)
    clamp = svc.cells[svc.cells["dataset"] == "clamp"]
    listed = sorted(cells["specimen__id"].astype(str))
    assert listed == sorted([*clamp["specimen_id"], GHOST_ID])  # the human cell dropped
    derived = {str(r.specimen__id): labels.label_from_allen(r.line_name, r.tag__dendrite_type)
               for r in cells.itertuples() if str(r.specimen__id) != GHOST_ID}
    assert derived == dict(zip(clamp["specimen_id"], clamp["label"]))
    sid = ids(svc, "clamp")[0]
    sweeps = allen.ephys_sweeps(svc.server.url, sid, FAST)
    assert allen.long_square_check(sweeps) == ""
    with h5py.File(svc.nwb[sid]) as f:
        assert sorted(sweeps["sweep_number"]) == sorted(int(k.split("_")[1]) for k in f["acquisition/timeseries"])
    assert "no long-square sweep with a spike" in allen.long_square_check(
        allen.ephys_sweeps(svc.server.url, ids(svc, "clamp", "no_spiking")[0], FAST))


def test_allen_cell_downloaded_whole_and_identical(acquire_services, tmp_path):
    svc = acquire_services
    sid = ids(svc, "clamp")[0]
    svc.server.faults[svc.allen_file_path(sid)] = ["500"]  # 500 then 200
    rep = acquire_cell(sid, "clamp", tmp_path / f"{sid}.nwb", tmp_path / "r.json", sources(svc), FAST)
    assert rep.status == "ok" and rep.mode == "whole"
    assert (tmp_path / f"{sid}.nwb").read_bytes() == svc.nwb[sid].read_bytes()
    assert rep.bytes_fetched == rep.remote_size == svc.nwb[sid].stat().st_size
    assert json.loads((tmp_path / "r.json").read_text())["bytes_fetched"] == rep.bytes_fetched


def test_404_and_unusable_files_become_excluded_markers(acquire_services, tmp_path):
    svc = acquire_services
    gone = GHOST_ID  # listed, but its file answers 404
    rep = acquire_cell(gone, "clamp", tmp_path / "gone.nwb", tmp_path / "gone.json", sources(svc), FAST)
    assert rep.status == "excluded" and "HTTP 404" in rep.reason
    sel = select_sweeps(tmp_path / "gone.nwb")  # the marker carries the reason downstream
    assert sel.status == "excluded" and "HTTP 404" in sel.reason and gone in sel.reason
    corrupt = ids(svc, "clamp", "corrupt_file")[0]
    rep = acquire_cell(corrupt, "clamp", tmp_path / "c.nwb", tmp_path / "c.json", sources(svc), FAST)
    assert rep.status == "excluded" and "unusable NWB file" in rep.reason
    with pytest.raises(NwbReadError, match="unusable NWB file"):
        open_recording(tmp_path / "c.nwb")


def test_allen_cell_without_spiking_long_square_is_not_downloaded(acquire_services, tmp_path):
    svc = acquire_services
    sid = ids(svc, "clamp", "no_spiking")[0]
    svc.server.reset_counters()
    rep = acquire_cell(sid, "clamp", tmp_path / "n.nwb", tmp_path / "n.json", sources(svc), FAST)
    assert rep.status == "excluded" and rep.bytes_fetched == 0
    assert svc.server.requests[svc.allen_file_path(sid)] == 0


def test_dandi_listing_pages_and_skips_other_assets(acquire_services, asset_table):
    svc = acquire_services
    table = pd.read_csv(asset_table, dtype=str)
    assert sorted(table["specimen_id"]) == sorted(svc.cells.loc[svc.cells["dataset"] == "seq", "specimen_id"])
    assert table["path"].str.endswith("_icephys.nwb").all()
    assert svc.server.requests[f"/api/dandisets/000020/versions/{'0.210913.1639'}/assets/"] >= 3  # several pages


def test_streaming_reads_only_the_two_sweeps(acquire_services, asset_table, tmp_path):
    """Per good patch-seq cell: same sweeps and traces as from the whole file, <= 2 MB fetched."""
    svc = acquire_services
    rows = []
    for sid in ids(svc, "seq"):
        svc.server.reset_counters()
        out = tmp_path / f"{sid}.nwb"
        rep = acquire_cell(sid, "seq", out, tmp_path / f"{sid}.json", sources(svc), FAST, asset_table,
                           SelectionParams())
        served = svc.server.bytes_sent[svc.blob_path(sid)]
        full, small = select_sweeps(svc.nwb[sid]), select_sweeps(out)
        assert rep.status == small.status == full.status == "ok"
        assert small.attrs["sweep_numbers"] == full.attrs["sweep_numbers"] == rep.sweeps
        np.testing.assert_array_equal(small.traces_mv, full.traces_mv)
        assert rep.bytes_fetched == served  # client-side accounting agrees with the server
        rows.append((sid, served, rep.remote_size))
    for sid, served, size in rows:
        print(f"{sid}: {served / 1e6:.2f} MB of {size / 1e6:.1f} MB ({100 * served / size:.1f} %)")
        assert served <= STREAM_BUDGET and served < 0.15 * size
    assert write_report(sorted(tmp_path.glob("*.json")), tmp_path / "report.csv")["fraction_of_file"].max() < 0.15


def test_streaming_survives_a_500_and_excludes_bad_cells(acquire_services, asset_table, tmp_path):
    svc = acquire_services
    sid = ids(svc, "seq")[0]
    for before in (0, 10):  # a 500 on the first range request, and one mid-read
        svc.server.reset_counters()
        svc.server.faults[svc.blob_path(sid)] = ["pass"] * before + ["500"]
        rep = acquire_cell(sid, "seq", tmp_path / "a.nwb", tmp_path / "a.json", sources(svc), FAST, asset_table,
                           SelectionParams())
        assert rep.status == "ok" and rep.bytes_fetched == svc.server.bytes_sent[svc.blob_path(sid)]
        assert svc.server.requests[svc.blob_path(sid)] > before + 1  # the read started over
    for defect, reason in (("no_plus40", "no sweep at rheobase+40 pA"), ("no_long_square", "no long-square sweeps")):
        bad = ids(svc, "seq", defect)[0]
        rep = acquire_cell(bad, "seq", tmp_path / f"{bad}.nwb", tmp_path / f"{bad}.json", sources(svc), FAST,
                           asset_table, SelectionParams())
        assert rep.status == "excluded" and reason in rep.reason
        assert reason in select_sweeps(tmp_path / f"{bad}.nwb").reason


def test_whole_dandi_file_is_sha256_checked(acquire_services, asset_table, tmp_path):
    svc = acquire_services
    sid = ids(svc, "seq")[1]
    rep = acquire_cell(sid, "seq", tmp_path / "w.nwb", tmp_path / "w.json", sources(svc, "whole"), FAST, asset_table)
    assert rep.status == "ok" and (tmp_path / "w.nwb").read_bytes() == svc.nwb[sid].read_bytes()
    path = svc.blob_path(sid)
    good = svc.server.files[path]
    svc.server.files[path] = good[:1000] + bytes([good[1000] ^ 0xFF]) + good[1001:]  # one flipped byte
    try:
        rep = acquire_cell(sid, "seq", tmp_path / "x.nwb", tmp_path / "x.json", sources(svc, "whole"), FAST,
                           asset_table)
    finally:
        svc.server.files[path] = good
    assert rep.status == "excluded" and "sha256 mismatch" in rep.reason


def test_cohort_tables_use_cached_listings(acquire_services, tmp_path):
    svc = acquire_services
    acquire = {"allen_api": svc.server.url, "dandi_api": f"{svc.server.url}/api", "metadata_dir": str(tmp_path),
               "patchseq_metadata": str(svc.patchseq_csv)}
    allen_table = cohort_table({"cohort": "allen", "acquire": acquire})
    allen_table = allen_table[allen_table["specimen_id"] != GHOST_ID]
    clamp = svc.cells[svc.cells["dataset"] == "clamp"]
    assert dict(zip(allen_table["specimen_id"], allen_table["label"])) == dict(zip(clamp["specimen_id"], clamp["label"]))
    dandi_table = cohort_table({"cohort": "dandi", "acquire": acquire})
    seq = svc.cells[svc.cells["dataset"] == "seq"]
    assert dict(zip(dandi_table["specimen_id"], dandi_table["label"])) == dict(zip(seq["specimen_id"], seq["label"]))
    svc.server.reset_counters()
    again = cohort_table({"cohort": "dandi", "acquire": {**acquire, "max_cells": 3}})
    assert sum(svc.server.requests.values()) == 0 and len(again) == 3  # read from the cache
    picked = list(seq["specimen_id"][:2])
    assert list(cohort_table({"cohort": "dandi", "acquire": {**acquire, "cells": picked}})["specimen_id"]) == sorted(picked)
    with pytest.raises(ValueError, match="not in the dandi cohort"):
        cohort_table({"cohort": "dandi", "acquire": {**acquire, "cells": ["1"]}})


def test_paper_cohort_is_exactly_the_split_files():
    split_dir = REPO / "resources" / "paper"
    config = {"cohort": "paper",
              "split": {"train_file": str(split_dir / "Train_split.csv"), "test_file": str(split_dir / "Test_split.csv")},
              "acquire": {"label_file": str(split_dir / "cell_types_GouwensAll_new.txt")}}
    table = cohort_table(config)
    expected = []
    for name in ("Train_split.csv", "Test_split.csv"):
        expected += [line.split(",")[0].strip() for line in (split_dir / name).read_text().splitlines() if line.strip()]
    assert len(table) == len(expected) == 5590 and set(table["specimen_id"]) == set(expected)
    assert set(table["dataset"]) == {"clamp", "seq"} and (table["label"] != "Unsure").all()
    test_ids = {line.split(",")[0].strip() for line in (split_dir / "Test_split.csv").read_text().splitlines()}
    counts = table[table["specimen_id"].isin(test_ids)]["label"].value_counts().to_dict()
    assert counts == {"Sst": 386, "Vip/Lamp5": 359, "Pvalb": 213, "Excitatory": 160}  # the reference README
    with pytest.raises(ValueError, match="label_file"):
        cohort_table({**config, "acquire": {}})
