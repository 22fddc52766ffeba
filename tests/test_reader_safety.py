"""Hostile recordings (issue 15, item 6): each case of the security review, and the manifest's
count of unexpected errors.

Every case must end as that cell's excluded row (file, sweep and cause in the reason), never as
an exception that stops the per-cell job and, with it, the manifest and everything after it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import struct
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

import fuzz_data as fd
from sts.io.hdf5 import read_attrs, write_attrs
from sts.prep.sweeps import select_sweeps, select_sweeps_file


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """Small usable cells: {'allen_v1': path, 'mies_nwb2': path} (four sweeps each)."""
    return fd.small_nwb_cells(tmp_path_factory.mktemp("bases"))


@pytest.fixture
def cell(bases, tmp_path):
    """A writable copy of a base cell and the sweep numbers sweep selection picks in it."""

    def make(layout: str):
        path = tmp_path / f"{layout}.nwb"
        shutil.copyfile(bases[layout], path)
        sel = select_sweeps(path)
        assert sel.status == "ok", sel.reason
        return path, sel.attrs["sweep_numbers"]

    return make


def series(f: h5py.File, layout: str, n: int, which: str) -> str:
    """Path of sweep n's 'response' or 'stimulus' series group."""
    if layout == "allen_v1":
        return f"{'acquisition/timeseries' if which == 'response' else 'stimulus/presentation'}/Sweep_{n}"
    group, suffix = ("acquisition", "AD0") if which == "response" else ("stimulus/presentation", "DA0")
    return f"{group}/data_{n:05d}_{suffix}"


def assert_read_error(sel, path, sweep, *words):
    """Excluded by the readers (not an unexpected error), the reason naming file, sweep and cause."""
    assert sel.status == "excluded", sel
    assert str(path) in sel.reason and f"sweep {sweep}" in sel.reason, sel.reason
    for word in words:
        assert word in sel.reason, sel.reason
    assert not sel.unexpected_error, sel.reason


# -- sweep names ----------------------------------------------------------------------------------


def test_sweep_x_is_skipped_and_logged(cell, caplog):
    """Allen v1: a series named Sweep_x is no sweep (it was int('x')); the cell stays usable."""
    path, picked = cell("allen_v1")
    with h5py.File(path, "r+") as f:
        f.copy(f[f"acquisition/timeseries/Sweep_{picked[0]}"], f["acquisition/timeseries"], name="Sweep_x")
        f.copy(f[f"stimulus/presentation/Sweep_{picked[0]}"], f["stimulus/presentation"], name="Sweep_x")
    with caplog.at_level(logging.WARNING):
        sel = select_sweeps(path)
    assert sel.status == "ok" and sel.attrs["sweep_numbers"] == picked
    assert any("Sweep_x" in r.getMessage() and "skipped" in r.getMessage() for r in caplog.records)


def test_mies_non_numeric_sweep_number_falls_back_on_the_name(cell):
    path, picked = cell("mies_nwb2")
    with h5py.File(path, "r+") as f:
        for which in ("response", "stimulus"):
            f[series(f, "mies_nwb2", picked[0], which)].attrs["sweep_number"] = "x"
    sel = select_sweeps(path)
    assert sel.status == "ok" and sel.attrs["sweep_numbers"] == picked


# -- rates and conversions --------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["allen_v1", "mies_nwb2"])
@pytest.mark.parametrize("rate", [0.0, np.nan, -50000.0, np.inf, "fast"], ids=["0", "nan", "negative", "inf", "text"])
def test_bad_rate_excludes_the_cell_naming_file_and_sweep(cell, layout, rate):
    path, picked = cell(layout)
    with h5py.File(path, "r+") as f:
        f[f"{series(f, layout, picked[0], 'response')}/starting_time"].attrs["rate"] = rate
    assert_read_error(select_sweeps(path), path, picked[0], "sampling rate")


@pytest.mark.parametrize("layout", ["allen_v1", "mies_nwb2"])
@pytest.mark.parametrize("key,value", [("conversion", "abc"), ("conversion", np.nan), ("offset", b"x"),
                                       ("conversion", np.array([1.0, 2.0]))],
                         ids=["text", "nan", "offset", "array"])  # fmt: skip
def test_non_numeric_conversion_or_offset(cell, layout, key, value):
    path, picked = cell(layout)
    with h5py.File(path, "r+") as f:
        f[f"{series(f, layout, picked[0], 'response')}/data"].attrs[key] = value
    assert_read_error(select_sweeps(path), path, picked[0], key)


# -- declared sizes -----------------------------------------------------------------------------------

HUGE_CHECK = textwrap.dedent("""
    import json, resource, sys
    limit = 3 << 30  # address space: a 16 GiB allocation fails here instead of filling the machine
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from sts.prep.sweeps import select_sweeps
    sel = select_sweeps(sys.argv[1])
    # VmHWM: this process's own peak (ru_maxrss would include the forking parent's, kept across exec)
    hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(json.dumps({"status": sel.status, "reason": sel.reason, "unexpected": getattr(sel, "unexpected_error", ""),
                      "peak_mb": int(hwm.split()[1]) / 1024}))
""")


@pytest.mark.parametrize("layout", ["allen_v1", "mies_nwb2"])
def test_huge_declared_dataset_is_refused_before_reading(cell, layout):
    """A ~0.5 MB file declaring a 2^31-element float64 series (16 GiB, nothing written: HDF5
    returns the fill value) is excluded without the memory ever being asked for."""
    path, picked = cell(layout)
    with h5py.File(path, "r+") as f:
        name = f"{series(f, layout, picked[0], 'stimulus')}/data"
        attrs = dict(f[name].attrs.items())
        del f[name]
        ds = f.create_dataset(name, shape=(fd.HUGE,), dtype=np.float64, chunks=(1 << 16,))
        for key, value in attrs.items():
            ds.attrs[key] = value
    assert path.stat().st_size < 2_000_000
    out = _select_in_subprocess(path)
    assert out["status"] == "excluded" and not out["unexpected"], out
    assert str(path) in out["reason"] and f"sweep {picked[0]}" in out["reason"] and "2147483648" in out["reason"]
    assert out["peak_mb"] < 600, out  # measured ~180 MB (Python, numpy, h5py, scipy)


def _select_in_subprocess(path, timeout=120) -> dict:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", HUGE_CHECK, str(path)], capture_output=True, text=True, env=env,
                          timeout=timeout)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("field,offset,value,words", [
    ("tag entries", 48, 2**27, "beyond the file's end"),  # pyabf: three lists of 2^27 entries (3 GB)
    ("sweeps", 16, 100_000, "100000 sweeps"),  # 2-sample sweeps: pyabf builds each sweep's command
])  # fmt: skip
def test_abf_header_counts_are_checked_before_pyabf(tmp_path, field, offset, value, words):
    """Found by the fuzz test: one word of an ABF header makes pyabf allocate or loop on what it declares."""
    path = fd.small_abf(tmp_path)
    data = bytearray(path.read_bytes())
    data[offset : offset + 4] = value.to_bytes(4, "little")
    if field == "tag entries":
        data[44:48] = (1).to_bytes(4, "little")  # lTagSectionPtr: block 1
    path.write_bytes(bytes(data))
    out = _select_in_subprocess(path, timeout=60)
    assert out["status"] == "excluded" and str(path) in out["reason"] and words in out["reason"], out
    assert out["peak_mb"] < 600, out


REAL = Path(__file__).resolve().parents[2] / "shared"
ABF2_REAL = REAL / "realdata2" / "scarpa_2025_05_06_0008_Steps_300.abf"  # epoch table on DAC0, 21 sweeps
ABF1_DAC1_REAL = REAL / "realdata2" / "minegishi_shr_2021_07_21_05_0006.abf"  # epoch table on DAC1, 25 sweeps


def _abf2_section(data: bytes, k: int) -> tuple[int, int, int]:
    return struct.unpack_from("<IIi", data, 76 + 16 * k)  # block, bytes per entry, entries


def _edit_abf2_episodes(data: bytearray) -> str:
    data[12:16] = (2**31 - 1).to_bytes(4, "little")  # lActualEpisodes
    return "2147483647 sweeps"


def _edit_abf2_empty_entries(data: bytearray) -> str:
    block, _, _ = _abf2_section(data, 11)  # the tag section: 0 bytes a tag, 2^31-1 tags
    struct.pack_into("<IIi", data, 76 + 16 * 11, max(block, 1), 0, 2**31 - 1)
    return "entries of 0 bytes"


def _edit_abf2_epoch_durations(data: bytearray) -> str:
    block, size, count = _abf2_section(data, 5)  # EpochPerDAC: lEpochInitDuration at +14, increment at +18
    for row in range(count):
        struct.pack_into("<ii", data, block * 512 + row * size + 14, 2**31 - 1, 2**30)
    return ""


def _edit_abf1_dac1_durations(data: bytearray) -> str:
    for k in range(10, 20):  # DAC1's epochs: lEpochInitDuration (2508) and lEpochDurationInc (2588)
        struct.pack_into("<i", data, 2508 + 4 * k, 2**31 - 1)
        struct.pack_into("<i", data, 2588 + 4 * k, 2**30)
    return ""


@pytest.mark.skipif(not ABF2_REAL.is_file() or not ABF1_DAC1_REAL.is_file(), reason="no real ABF files in ../shared")
@pytest.mark.parametrize("source, edit", [
    (ABF2_REAL, _edit_abf2_episodes), (ABF2_REAL, _edit_abf2_empty_entries),
    (ABF2_REAL, _edit_abf2_epoch_durations), (ABF1_DAC1_REAL, _edit_abf1_dac1_durations),
], ids=["abf2-episodes", "abf2-empty-entries", "abf2-epoch-durations", "abf1-dac1-epoch-durations"])  # fmt: skip
def test_real_abf_header_edits_stay_bounded(tmp_path, source, edit):
    """Issue 27: header words that drove pyabf past 4 GB on main 579f930 (sweep count, a section of
    0-byte entries, epoch durations that pyabf's sweepC allocates whole: 11.8 GiB) end as an
    excluded row under a 3 GiB address-space limit; epochs are cut at the sweep's end."""
    data = bytearray(source.read_bytes())
    words = edit(data)
    path = tmp_path / source.name
    path.write_bytes(bytes(data))
    out = _select_in_subprocess(path, timeout=60)
    assert out["status"] == "excluded" and not out["unexpected"] and "MemoryError" not in out["reason"], out
    assert words in out["reason"] and out["peak_mb"] < 1000, out


# -- data from other files --------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["allen_v1", "mies_nwb2"])
@pytest.mark.parametrize("how", ["external_storage", "virtual", "external_link"])
def test_data_from_outside_files_is_refused(cell, layout, how, tmp_path):
    """HDF5 can keep a dataset's bytes in any local file (external storage: /etc/passwd works as
    well as another user's recording), map it from other HDF5 files (virtual datasets) or link
    a group to another file: the sweep's data would come from outside the recording."""
    path, picked = cell(layout)
    outside = fd.outside_file(tmp_path) if how == "external_storage" else fd.outside_h5(tmp_path)
    with h5py.File(path, "r+") as f:
        group = series(f, layout, picked[0], "stimulus")
        name = f"{group}/data"
        attrs = dict(f[name].attrs.items())
        if how == "external_link":
            del f[group]
            f[group] = h5py.ExternalLink(str(outside), "/group")
        else:
            del f[name]
            if how == "external_storage":
                size = outside.stat().st_size
                ds = f.create_dataset(name, shape=(size // 4,), dtype=np.float32, external=[(str(outside), 0, size)])
            else:
                layout_ = h5py.VirtualLayout(shape=(115_000,), dtype=np.float32)
                layout_[:] = h5py.VirtualSource(str(outside), "data", shape=(115_000,))
                ds = f.create_virtual_dataset(name, layout_)
            for key, value in attrs.items():
                ds.attrs[key] = value
    sel = select_sweeps(path)
    assert sel.status == "excluded", sel
    assert str(path) in sel.reason and str(outside) in sel.reason and "refused" in sel.reason, sel.reason
    assert not sel.unexpected_error
    if how != "external_link":  # refused at open for links, before any sweep is read
        assert f"sweep {picked[0]}" in sel.reason


# -- unexpected errors: excluded, marked, counted -----------------------------------------------------


def test_unexpected_error_excludes_only_that_cell_and_is_marked(cell, tmp_path, monkeypatch, caplog):
    """A reader bug (here an IndexError on one sweep) excludes the cell with file, sweep and
    cause, logs the traceback, and marks the per-cell file for the manifest's count."""
    from sts.recordings.allen_v1 import AllenV1Recording
    from sts.prep.scalogram_file import ScalogramParams, scalogram_file
    from sts.prep.sweeps import SelectionParams

    path, picked = cell("allen_v1")
    original = AllenV1Recording.response_mv

    def buggy(self, n):
        if n == picked[1]:
            raise IndexError("index 7 is out of bounds")
        return original(self, n)

    monkeypatch.setattr(AllenV1Recording, "response_mv", buggy)
    out = tmp_path / "sweeps.h5"
    with caplog.at_level(logging.WARNING):
        sel = select_sweeps_file(path, out, SelectionParams(), {"specimen_id": "c1"})
    assert sel.status == "excluded" and sel.unexpected_error == "IndexError"
    assert str(path) in sel.reason and f"sweep {picked[1]}" in sel.reason and "IndexError" in sel.reason
    assert any(r.exc_info and r.exc_info[0] is IndexError for r in caplog.records)  # the traceback, in the job's log
    scalogram_file(out, tmp_path / "scalogram.h5", ScalogramParams())  # excluded cells pass through
    with h5py.File(tmp_path / "scalogram.h5", "r") as f:
        attrs = read_attrs(f)
    assert attrs["status"] == "excluded" and attrs["unexpected_error"] == "IndexError"


def test_unexpected_error_opening_a_file(tmp_path, monkeypatch):
    """Even the layout detection failing in an unforeseen way excludes just that file."""
    import sts.recordings as recordings

    def broken(f):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(recordings, "detect_layout", broken)
    path = tmp_path / "x.nwb"
    with h5py.File(path, "w") as f:
        f.attrs["nwb_version"] = "2.5.0"
    sel = select_sweeps(path)
    assert sel.status == "excluded" and sel.unexpected_error == "ZeroDivisionError" and str(path) in sel.reason


def _cohort(folder, n_cells: int, n_unexpected: int):
    """Metadata CSV and per-cell scalogram files: n_cells usable cells (4 classes) and
    n_unexpected cells excluded by unexpected errors."""
    classes = ["Pvalb", "Sst", "Vip/Lamp5", "Excitatory"]
    folder.mkdir()
    rows, files = [], []
    for k in range(n_cells + n_unexpected):
        sid = f"c{k:03d}"
        rows.append({"specimen_id": sid, "dataset": "seq", "label": classes[k % 4]})
        attrs = {"specimen_id": sid, "status": "ok", "reason": "", "unexpected_error": "",
                 "amplitudes_pa": [50.0, 90.0], "sweep_numbers": [3, 5], "n_spikes": [1, 4]}
        if k >= n_cells:
            attrs.update(status="excluded", reason=f"{sid}.nwb: sweep 3: unexpected TypeError: ...",
                         unexpected_error="TypeError")  # fmt: skip
        files.append(folder / f"{sid}.h5")
        with h5py.File(files[-1], "w") as f:
            write_attrs(f, attrs)
    meta = folder / "metadata.csv"
    pd.DataFrame(rows).to_csv(meta, index=False)
    return meta, files


@pytest.mark.parametrize("n_cells,n_unexpected", [(60, 4), (40, 4), (200, 19)])
def test_manifest_counts_unexpected_errors(tmp_path, caplog, n_cells, n_unexpected):
    """Below the share (10 %) or the count (5 cells): the manifest is written, the summary says
    how many cells unexpected errors excluded and of which types."""
    from sts.cohort.manifest import build_manifest

    meta, files = _cohort(tmp_path / "cells", n_cells, n_unexpected)
    with caplog.at_level(logging.INFO, logger="sts.cohort.manifest"):
        table = build_manifest(meta, files, tmp_path / "manifest.csv")
    assert (table["status"] == "excluded").sum() == n_unexpected
    n = n_cells + n_unexpected
    summary = f"{n_unexpected} of {n} cells excluded by unexpected errors (TypeError ×{n_unexpected}"
    assert any(summary in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("n_cells,n_unexpected", [(40, 5), (60, 30)])
def test_manifest_fails_above_the_share_of_unexpected_errors(tmp_path, n_cells, n_unexpected):
    from sts.cohort.manifest import MAX_UNEXPECTED_SHARE, MIN_UNEXPECTED_CELLS, UnexpectedErrors, build_manifest

    assert n_unexpected >= MIN_UNEXPECTED_CELLS and n_unexpected > MAX_UNEXPECTED_SHARE * (n_cells + n_unexpected)
    meta, files = _cohort(tmp_path / "cells", n_cells, n_unexpected)
    out = tmp_path / "manifest.csv"
    with pytest.raises(UnexpectedErrors, match=rf"{n_unexpected} of {n_cells + n_unexpected} cells .*TypeError"):
        build_manifest(meta, files, out)
    assert not out.exists()  # nothing downstream runs on what a bug left over


# -- the EP-features step: the same per-cell rule ---------------------------------------------------


def test_ep_features_exclude_hostile_cells(cell, monkeypatch, tmp_path):
    """sts ep-features: a read error and an unexpected error each give the cell's excluded
    record (file, sweep, cause; the unexpected one marked), never an exception."""
    from sts.baseline.feature_files import features_file
    from sts.recordings.allen_v1 import AllenV1Recording

    path, picked = cell("allen_v1")
    with h5py.File(path, "r+") as f:
        f[f"acquisition/timeseries/Sweep_{picked[0]}/starting_time"].attrs["rate"] = 0.0
    record = features_file(path, tmp_path / "a.json", "a")
    assert record["status"] == "excluded" and not record["unexpected_error"]
    for part in (str(path), f"sweep {picked[0]}", "sampling rate"):
        assert part in record["reason"], record["reason"]

    def buggy(self, n):
        raise TypeError("unsupported operand")

    monkeypatch.setattr(AllenV1Recording, "response_mv", buggy)
    with h5py.File(path, "r+") as f:
        f[f"acquisition/timeseries/Sweep_{picked[0]}/starting_time"].attrs["rate"] = 50000.0
    record = features_file(path, tmp_path / "b.json", "b")
    assert record["status"] == "excluded" and record["unexpected_error"] == "TypeError"
    assert str(path) in record["reason"] and "sweep " in record["reason"] and "TypeError" in record["reason"]
    assert json.loads((tmp_path / "b.json").read_text())["unexpected_error"] == "TypeError"


def test_ep_features_table_stops_above_the_share(tmp_path):
    from sts.baseline.feature_files import aggregate
    from sts.cohort.manifest import UnexpectedErrors

    paths = []
    for k in range(20):
        record = {"specimen_id": f"c{k}", "dataset": "seq", "label": "Sst", "status": "ok", "reason": "",
                  "features": {}, "info": {}, "unexpected_error": "TypeError" if k < 5 else ""}  # fmt: skip
        paths.append(tmp_path / f"c{k}.json")
        paths[-1].write_text(json.dumps(record))
    with pytest.raises(UnexpectedErrors, match="5 of 20 cells"):
        aggregate(paths, tmp_path / "features.csv")
    assert aggregate(paths[4:], tmp_path / "features.csv") == 16  # 1 of 16: counted, not stopped
