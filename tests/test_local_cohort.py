"""cohort: local — the users' CSV of files (NWB v1, MIES NWB 2, ABF) and its exclusion rules."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from abf_data import STEP_S, simulate_ladder, write_abf1
from sts.cohort.local import id_problem, protocol_options, read_local_labels, row_protocol
from sts.recordings.abf import NO_PROTOCOL
from sts.prep.sweeps import SelectionParams, select_sweeps

CLASSES = ("Pvalb", "Sst", "Excitatory")


def write_csv(path, rows: list[dict]) -> str:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_rows_and_reasons(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.nwb", "c.NWB", "d.nwb", "e.nwb", "bad name.nwb", "notes.txt", "h.nwb", "x.nwb"):
        (tmp_path / name).write_bytes(b"")
    for name in ("sub/b.abf", "f.abf", "g.abf"):
        (tmp_path / name).write_bytes(b"")
    ladder = dict(first_amplitude_pa="-40", step_pa="20", onset_s="0.5", duration_s="1")
    rows = [
        dict(file="a.nwb", label="Pvalb"),
        dict(file="sub/b.abf", label="Sst", specimen_id="cell_B-1.2", dataset="rig 2", **ladder),
        dict(file=str(tmp_path / "c.NWB"), label="Excitatory"),
        dict(file="missing.nwb", label="Pvalb", specimen_id="m1"),
        dict(file="d.nwb", label="Unsure"),
        dict(file="e.nwb", label="Sst", specimen_id="a"),
        dict(file="bad name.nwb", label="Sst"),
        dict(file="x.nwb", label="Sst", specimen_id="../x"),
        dict(file="x.nwb", label="Sst", specimen_id=".hidden"),
        dict(file="x.nwb", label="Sst", specimen_id="-rf"),
        dict(file="notes.txt", label="Sst"),
        dict(file="f.abf", label="Sst", first_amplitude_pa="10", step_pa="20"),
        dict(file="g.abf", label="Sst", **{**ladder, "step_pa": "twenty"}),
        dict(file="h.nwb", label="Pvalb", onset_s="0.5"),  # protocol columns are only for ABF files
        dict(file="a.nwb", label="Vip/Lamp5", specimen_id="a"),  # second repeat of 'a'
    ]
    table = read_local_labels(write_csv(tmp_path / "cells.csv", rows), CLASSES)

    assert list(table.columns) == [
        "specimen_id", "dataset", "label", "file", "layout",
        "first_amplitude_pa", "step_pa", "onset_s", "duration_s", "status", "reason",
    ]
    assert len(table) == len(rows)
    by_row = table.to_dict("records")
    ok = table[table["status"] == "ok"]
    assert ok["specimen_id"].tolist() == ["cell_B-1.2", "c", "h"]
    assert ok["layout"].tolist() == ["abf", "nwb", "nwb"]
    assert ok["file"].tolist() == [str(tmp_path / n) for n in ("sub/b.abf", "c.NWB", "h.nwb")]
    assert ok["dataset"].tolist() == ["rig 2", "local", "local"]
    assert by_row[0]["file"] == str(tmp_path / "a.nwb") and by_row[0]["specimen_id"] == "a"
    b = by_row[1]
    assert (b["first_amplitude_pa"], b["step_pa"], b["onset_s"], b["duration_s"]) == (-40.0, 20.0, 0.5, 1.0)
    assert math.isnan(by_row[0]["step_pa"]) and math.isnan(by_row[13]["onset_s"])
    assert (table["reason"] == "").tolist() == (table["status"] == "ok").tolist()

    reasons = [r["reason"] for r in by_row]
    assert reasons[3] == f"file not found: {tmp_path / 'missing.nwb'}"
    assert reasons[4].startswith("label 'Unsure' not in classes")
    # Every row of a repeated id is excluded (which one is meant is unknown), the first one too.
    assert reasons[0] == reasons[5] == "duplicate specimen_id 'a' (3 CSV rows)"
    assert by_row[6]["specimen_id"] == "bad name" and reasons[6].startswith("unsafe specimen_id 'bad name'")
    for k in (7, 8, 9):
        assert reasons[k].startswith(f"unsafe specimen_id {by_row[k]['specimen_id']!r}")
    assert reasons[10].startswith("unsupported file type '.txt'")
    assert reasons[11].startswith("incomplete protocol: onset_s, duration_s missing")
    assert reasons[12].startswith("bad protocol")
    # Several problems: all reasons are kept.
    assert reasons[14].startswith("duplicate specimen_id 'a'") and "label 'Vip/Lamp5' not in classes" in reasons[14]


def test_ids_match_whole_and_case_folded_duplicates_are_excluded(tmp_path):
    """Issue 15, 8: a trailing newline is not a safe id ('$' matched before it), and ids equal
    but for case collide on case-insensitive file systems: every row of such a group is excluded."""
    assert id_problem("cell1") == "" and id_problem("cell1\n").startswith("unsafe specimen_id 'cell1\\n'")
    for name in ("Cell1.nwb", "cell1.nwb", "b.nwb", "ok.nwb", "nl\n.nwb"):
        (tmp_path / name).write_bytes(b"")
    rows = [
        dict(file="Cell1.nwb", label="Sst"),
        dict(file="cell1.nwb", label="Sst"),  # 'cell1' vs 'Cell1': same file on macOS / Windows
        dict(file="b.nwb", label="Sst", specimen_id="B"),
        dict(file="b.nwb", label="Sst", specimen_id="b"),
        dict(file="b.nwb", label="Sst", specimen_id="b"),
        dict(file="ok.nwb", label="Sst"),
        dict(file="nl\n.nwb", label="Sst"),  # the id is the file name's stem, newline included
    ]
    table = read_local_labels(write_csv(tmp_path / "cells.csv", rows), CLASSES)
    reasons = table["reason"].tolist()
    assert table["status"].tolist() == ["excluded"] * 5 + ["ok", "excluded"]
    both = "'Cell1', 'cell1' differ only in case"
    assert reasons[0] == (f"duplicate specimen_id 'Cell1' (2 CSV rows: {both} and would share a file on "
                          "case-insensitive file systems)")
    assert reasons[1].startswith("duplicate specimen_id 'cell1' (2 CSV rows: ") and both in reasons[1]
    assert all(r.startswith("duplicate specimen_id") and "3 CSV rows: 'B', 'b' differ only in case" in r
               for r in reasons[2:5])
    assert table["specimen_id"][6] == "nl\n" and reasons[6].startswith("unsafe specimen_id 'nl\\n'")


def test_protocol_options_reach_the_command_line():
    """The row's ladder becomes select-sweeps/ep-features options that parse back to the same Protocol."""
    from sts.cli import build_parser

    row = {"first_amplitude_pa": -40.0, "step_pa": 20.0, "onset_s": 0.5, "duration_s": 1.0}
    options = protocol_options(row)
    assert options.startswith("--first-amplitude-pa=-40.0 ")
    assert protocol_options({**row, "step_pa": math.nan}) == "" and protocol_options({}) == ""
    for command in ("select-sweeps", "ep-features"):
        args = build_parser().parse_args([command, "in.abf", "out", "--specimen-id", "x", *options.split()])
        assert {k: getattr(args, k) for k in row} == row


def test_csv_without_label_column(tmp_path):
    with pytest.raises(ValueError, match=r"missing column\(s\) \['label'\]"):
        read_local_labels(write_csv(tmp_path / "cells.csv", [dict(file="a.nwb")]), CLASSES)



def test_mixed_layouts(tmp_path):
    """NWB v1, MIES NWB 2 and ABF files of one CSV go through sweep selection; bad ones exclude."""
    from sts.synth import make_cohort, simulate_cell, write_cell

    cohort = make_cohort(12, 1, 0.0)
    truth = {}
    for dataset in ("clamp", "seq"):
        row = {**cohort[cohort["dataset"] == dataset].iloc[0].to_dict(), "fs_hz": 20000.0}
        write_cell(row, tmp_path / "nwb" / f"{dataset}.nwb")
        truth[dataset] = simulate_cell(row).rheobase_pa
    lad = simulate_ladder("Sst", seed=5, n_sweeps=9)
    assert lad.rheobase_pa is not None and lad.rheobase_pa + 40 <= lad.amplitudes_pa[-1]
    (tmp_path / "abf").mkdir()
    write_abf1(tmp_path / "abf" / "rig.abf", lad.responses_mv)
    (tmp_path / "abf" / "broken.abf").write_bytes(b"ABF \x00\x01" * 100)
    protocol = dict(first_amplitude_pa=lad.amplitudes_pa[0], step_pa=20.0, onset_s=lad.onset_s, duration_s=STEP_S)
    csv = write_csv(tmp_path / "labels.csv", [
        dict(file="nwb/clamp.nwb", label="Pvalb", dataset="allen-like"),
        dict(file="nwb/seq.nwb", label="Sst", specimen_id="seq_1"),
        dict(file="abf/rig.abf", label="Excitatory", specimen_id="abf_1", **protocol),
        dict(file="abf/rig.abf", label="Excitatory", specimen_id="abf_noprotocol"),
        dict(file="abf/broken.abf", label="Sst"),
    ])
    table = read_local_labels(csv, CLASSES)
    assert (table["status"] == "ok").all()
    results = {
        row["specimen_id"]: select_sweeps(row["file"], SelectionParams(), row_protocol(row))
        for row in table.to_dict("records")
    }

    assert results["clamp"].status == "ok" and results["clamp"].attrs["layout"] == "allen_v1"
    assert results["clamp"].attrs["rheobase_pa"] == truth["clamp"]
    assert results["seq_1"].status == "ok" and results["seq_1"].attrs["layout"] == "mies_nwb2"
    assert results["seq_1"].attrs["rheobase_pa"] == truth["seq"]
    abf = results["abf_1"]
    assert abf.status == "ok" and abf.attrs["amplitudes_pa"] == [lad.rheobase_pa, lad.rheobase_pa + 40]
    assert results["abf_noprotocol"].status == "excluded" and NO_PROTOCOL in results["abf_noprotocol"].reason
    assert results["broken"].status == "excluded" and "unreadable ABF file" in results["broken"].reason
