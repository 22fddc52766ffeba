"""Ids and text from outside (issue 27, 7): one id rule for every cohort, reasons cleaned and cut,
CSV cells that a spreadsheet would run as formulas neutralised. (``sts predict``'s file stems:
tests/test_predict.py.)"""

from __future__ import annotations

import re

import h5py
import pandas as pd
import pytest

from sts.io.hdf5 import write_attrs
from sts.cohort.ids import ID_PATTERN, MAX_ID_LENGTH, derived_id, id_problem
from sts.io.text import MAX_REASON_CHARS, clean_text, spreadsheet_safe

CLASSES = ("Pvalb", "Sst", "Vip/Lamp5", "Excitatory")
HOSTILE_IDS = {
    "traversal": "../../etc/passwd",
    "newline": "a\nb",
    "long": "7" * 5000,
    "formula": "=1+1",
    "dot": ".",
    "dotdot": "..",
    "option": "-rf",
    "at": "@SUM(A1)",
    "escape": "cell\x1b[31m",
}
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def test_one_rule_and_derived_ids():
    for name, sid in HOSTILE_IDS.items():
        assert id_problem(sid).startswith("unsafe specimen_id"), name
        assert len(id_problem(sid)) < 200 and "\n" not in id_problem(sid)
        safe = derived_id(sid)
        assert id_problem(safe) == "" and re.fullmatch(ID_PATTERN, safe) and len(safe) <= 60
    assert id_problem("1" * MAX_ID_LENGTH) == "" and id_problem("1" * (MAX_ID_LENGTH + 1))
    assert id_problem("Cell_1.2-a") == "" and derived_id("x y") != derived_id("x\ny")  # distinct names stay distinct


def write_cell_file(path, sid, label_pa=(50.0, 90.0)):
    with h5py.File(path, "w") as f:
        write_attrs(f, {"specimen_id": sid, "status": "ok", "reason": "", "amplitudes_pa": list(label_pa),
                        "sweep_numbers": [3, 4], "n_spikes": [1, 3], "fs_source_hz": [20000.0, 20000.0]})  # fmt: skip


@pytest.mark.parametrize("kind", sorted(HOSTILE_IDS))
def test_manifest_excludes_unsafe_ids_of_any_cohort(kind):
    """Allen, DANDI, synthetic or paper metadata (no status column): an unsafe id is an excluded row
    with the reason, even where a per-cell file claims it with status ok."""
    from sts.cohort.manifest import cell_rows

    sid = HOSTILE_IDS[kind]
    meta = pd.DataFrame({"specimen_id": ["1", sid], "dataset": "clamp", "label": "Sst"})
    attrs = {s: {"status": "ok", "amplitudes_pa": [50.0, 90.0]} for s in ("1", sid)}
    rows = cell_rows(meta, attrs, CLASSES).set_index("specimen_id")
    assert rows.loc["1", "status"] == "ok"
    assert rows.loc[sid, "status"] == "excluded" and rows.loc[sid, "reason"].startswith("unsafe specimen_id")
    assert len(rows.loc[sid, "reason"]) <= MAX_REASON_CHARS and not CONTROL.search(rows.loc[sid, "reason"])


def test_cohort_table_excludes_unsafe_ids_before_any_job(tmp_path):
    """An Allen listing with hostile ids: the cohort table marks them excluded (no job, no path)."""
    from sts.cohort.table import cohort_table

    ids = ["480051220", *HOSTILE_IDS.values()]
    pd.DataFrame({"specimen__id": ids, "line_name": "Pvalb-IRES-Cre", "tag__dendrite_type": "aspiny"}).to_csv(
        tmp_path / "allen_cells.csv", index=False)  # fmt: skip
    table = cohort_table({"cohort": "allen", "acquire": {"metadata_dir": str(tmp_path)}}).set_index("specimen_id")
    assert table.loc["480051220", "status"] == "ok" and table.loc["480051220", "reason"] == ""
    hostile = [s.strip() for s in HOSTILE_IDS.values()]  # the listing's ids are stripped
    assert (table.loc[hostile, "status"] == "excluded").all()
    assert table.loc[hostile, "reason"].str.startswith("unsafe specimen_id").all()


def test_manifest_csv_is_spreadsheet_safe_and_round_trips(tmp_path):
    """Hostile ids, labels and reasons get a leading ' in the written manifest; usable cells' ids and
    labels (Vip/Lamp5), and numbers (negative ones) read back unchanged."""
    from sts.cohort.manifest import SplitParams, build_manifest

    (tmp_path / "s").mkdir()
    rows, files = [], []
    for label in CLASSES:
        for k in range(4):
            sid = f"{label[:3]}{k}"
            rows.append({"specimen_id": sid, "dataset": "clamp", "label": label})
            write_cell_file(tmp_path / "s" / f"{sid}.h5", sid, (-20.0, 20.0) if k == 0 else (50.0, 90.0))
            files.append(tmp_path / "s" / f"{sid}.h5")
    rows += [{"specimen_id": "=1+1", "dataset": "clamp", "label": "Sst"},
             {"specimen_id": "ok1", "dataset": "clamp", "label": "=HYPERLINK(\"http://x\")"},
             {"specimen_id": "a\nb", "dataset": "clamp", "label": "Sst"}]  # fmt: skip
    write_cell_file(tmp_path / "s" / "ok1.h5", "ok1")
    files.append(tmp_path / "s" / "ok1.h5")
    pd.DataFrame(rows).to_csv(tmp_path / "meta.csv", index=False)
    build_manifest(tmp_path / "meta.csv", files, tmp_path / "manifest.csv", SplitParams(n_folds=3, test_fraction=0.25))
    m = pd.read_csv(tmp_path / "manifest.csv", dtype={"specimen_id": str, "label": str}, keep_default_na=False)
    for col in ("specimen_id", "dataset", "label", "status", "reason", "split", "source_file"):
        assert not m[col].astype(str).str.match(r"[=+\-@\t\r]").any(), col
    by_id = m.set_index("specimen_id")
    assert by_id.loc["'=1+1", "status"] == "excluded" and by_id.loc["'=1+1", "reason"].startswith("unsafe")
    assert by_id.loc["ok1", "label"] == "'=HYPERLINK(\"http://x\")" and by_id.loc["ok1", "status"] == "excluded"
    assert by_id.loc["a\nb", "status"] == "excluded"
    ok = m[m["status"] == "ok"]
    assert len(ok) == 16 and set(ok["label"]) == set(CLASSES)
    numbers = pd.read_csv(tmp_path / "manifest.csv")["rheobase_pa"]
    assert numbers.dtype == float and (numbers == -20.0).sum() == 4


def test_spreadsheet_safe_touches_only_text_that_is_a_formula():
    frame = pd.DataFrame({"id": ["=1+1", "+x", "-cmd", "@A1", "\tx", "\rx", "ok", "-70.5", None],
                          "x": [-1.0, 2, 3, 4, 5, 6, 7, 8, 9], "b": [True, None, False] * 3})  # fmt: skip
    out = spreadsheet_safe(frame)
    assert out["id"].tolist() == ["'=1+1", "'+x", "'-cmd", "'@A1", "'\tx", "'\rx", "ok", "-70.5", None]
    assert out["x"].tolist() == frame["x"].tolist() and out["b"].tolist() == frame["b"].tolist()
    assert spreadsheet_safe(out)["id"].tolist() == out["id"].tolist()  # idempotent: read back, written again


def test_clean_text_one_line_and_cut():
    text = "line one\nline two\r\n\x1b[31mred\x1b[0m\x00\u202egnp.exe\t" + "x" * 1_000_000
    out = clean_text(text)
    assert len(out) == MAX_REASON_CHARS and out.endswith("...") and not CONTROL.search(out)
    assert out.startswith("line one line two [31mred [0m gnp.exe x") and "\u202e" not in out
    assert clean_text("short reason") == "short reason"


def test_reader_reason_is_cleaned_and_cut(tmp_path):
    """A download marker (or any file) whose reason text has newlines, escape codes and 1 MB: the
    excluded cell's reason, in the per-cell file and so in the manifest, is one line of at most 500."""
    from sts.prep.sweeps import SelectionParams, select_sweeps_file

    path = tmp_path / "hostile.nwb"
    with h5py.File(path, "w", libver="latest") as f:  # dense attribute storage: no 64 kB limit
        f.attrs["sts_unavailable"] = "404\nFAKE: status ok\x1b]0;pwned\x07\x1b[2J" + "A" * 1_000_000
    sel = select_sweeps_file(path, tmp_path / "out.h5", SelectionParams(), {"specimen_id": "c1"})
    assert sel.status == "excluded" and len(sel.reason) <= MAX_REASON_CHARS and not CONTROL.search(sel.reason)
    assert sel.reason.startswith("404 FAKE: status ok")
    with h5py.File(tmp_path / "out.h5") as f:
        stored = f.attrs["reason"]
    assert (stored.decode() if isinstance(stored, bytes) else stored) == sel.reason


def test_local_dataset_names_are_one_line_and_spreadsheet_safe(tmp_path):
    from sts.cohort.local import read_local_labels

    (tmp_path / "a.nwb").write_bytes(b"")
    pd.DataFrame([{"file": "a.nwb", "label": "Sst", "dataset": "=cmd|'/c calc'!A0\nrig"}]).to_csv(
        tmp_path / "cells.csv", index=False)  # fmt: skip
    table = read_local_labels(tmp_path / "cells.csv", CLASSES)
    assert table["dataset"].tolist() == ["'=cmd|'/c calc'!A0 rig"] and table["status"].tolist() == ["ok"]


def test_model_card_reasons_are_clean(tmp_path):
    from sts.report.model_card import training_data

    pd.DataFrame([{"specimen_id": "1", "dataset": "clamp", "label": "Sst", "status": "ok", "reason": "",
                   "split": "train", "fold": 0},
                  {"specimen_id": "2", "dataset": "clamp", "label": "Sst", "status": "excluded",
                   "reason": "bad \x1b[31mfile\x1b[0m" + "x" * 5000, "split": "", "fold": -1}]).to_csv(
        tmp_path / "m.csv", index=False)  # fmt: skip
    reason = training_data(tmp_path / "m.csv", ["Sst"])["excluded"]["reason"].iloc[0]
    assert not CONTROL.search(reason) and len(reason) <= 200


def write_marker_file(path, text):
    with h5py.File(path, "w", libver="latest") as f:
        f.attrs["sts_unavailable"] = text


def test_feature_reasons_are_cleaned_and_cut(tmp_path):
    """The LightGBM baseline's per-cell features: the same reader text, the same one-line reason."""
    from sts.baseline.features import compute_features

    write_marker_file(tmp_path / "m.nwb", "gone\n\x1b[2J" + "B" * 100_000)
    result = compute_features(tmp_path / "m.nwb")
    assert result.status == "excluded" and len(result.reason) <= MAX_REASON_CHARS
    assert not CONTROL.search(result.reason) and result.reason.startswith("gone [2JBBB")


def test_acquire_report_is_spreadsheet_safe(tmp_path):
    import json

    from sts.acquire.cell import CellReport, write_report

    for sid, reason in (("1", "=cmd|' /C calc'!A0\n\x1b[31m"), ("2", "")):
        rep = CellReport(sid, "clamp", "excluded" if reason else "ok", reason, bytes_fetched=-1 if reason else 5)
        (tmp_path / f"{sid}.json").write_text(json.dumps(rep.__dict__))
    write_report(sorted(tmp_path.glob("*.json")), tmp_path / "report.csv")
    table = pd.read_csv(tmp_path / "report.csv", dtype={"specimen_id": str}, keep_default_na=False)
    assert table["reason"].tolist() == ["'=cmd|' /C calc'!A0 [31m", ""]
    assert pd.read_csv(tmp_path / "report.csv")["bytes_fetched"].tolist() == [-1, 5]  # numbers stay numbers


def test_hostile_ids_in_a_listing_never_reach_the_dag(tmp_path):
    """An Allen listing with hostile ids: the DAG is built (on main it stopped with a wildcard error)
    and plans jobs for the good cells only; results/metadata.csv will carry the others' reasons."""
    import yaml

    from conftest import REPO, smk

    cfg = yaml.safe_load((REPO / ".test" / "config.yaml").read_text())
    cfg.update(cohort="allen", acquire={"allen_api": "http://127.0.0.1:9"})  # a dry run fetches nothing
    run = tmp_path / "run"
    (run / "results" / "metadata").mkdir(parents=True)
    ids = ["480051220", "480051221", *HOSTILE_IDS.values()]
    pd.DataFrame({"specimen__id": ids, "line_name": "Pvalb-IRES-Cre", "tag__dendrite_type": "aspiny"}).to_csv(
        run / "results" / "metadata" / "allen_cells.csv", index=False)  # fmt: skip
    proc = smk(run, "--dry-run", "results/manifest.csv", config=cfg)
    planned = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout + proc.stderr, re.M))
    assert planned["download"] == planned["scalogram"] == "2" and planned["manifest"] == "1"


def test_predict_table_derives_ids_from_unsafe_stems(tmp_path):
    """sts predict --table: an id defaulted from a stem that is not an id is derived (as for files
    on the command line); the workflow's table still excludes it, and a given unsafe id stays refused."""
    from sts.cohort.local import read_local_labels

    (tmp_path / "=x y.nwb").write_bytes(b"")
    pd.DataFrame([{"file": "=x y.nwb", "label": "Sst"}, {"file": "=x y.nwb", "label": "Sst", "specimen_id": "../a"}]
                 ).to_csv(tmp_path / "cells.csv", index=False)  # fmt: skip
    served = read_local_labels(tmp_path / "cells.csv", None)
    assert served["status"].tolist() == ["ok", "excluded"] and id_problem(served["specimen_id"][0]) == ""
    assert served["reason"][1].startswith("unsafe specimen_id '../a'")
    trained = read_local_labels(tmp_path / "cells.csv", CLASSES)
    assert trained["status"].tolist() == ["excluded", "excluded"]
    assert trained["reason"][0].startswith("unsafe specimen_id '=x y'")
