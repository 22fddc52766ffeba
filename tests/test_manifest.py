import numpy as np
import pandas as pd
import pytest

from sts.cohort.manifest import SplitParams, assign_split, cell_rows, read_split_file

CLASSES = ("Pvalb", "Sst", "Vip/Lamp5", "Excitatory")


def table(n_per_class):
    rows = []
    for label, n in n_per_class.items():
        rows += [{"specimen_id": f"{label[:3]}{k}", "label": label, "status": "ok", "reason": ""} for k in range(n)]
    return pd.DataFrame(rows)


def test_stratified_holdout_and_folds():
    t = assign_split(table({"Pvalb": 40, "Sst": 70, "Vip/Lamp5": 60, "Excitatory": 30}), SplitParams(seed=3))
    test = t[t["split"] == "test"]
    assert len(test) == 40
    for label, n in {"Pvalb": 40, "Sst": 70, "Vip/Lamp5": 60, "Excitatory": 30}.items():
        assert (test["label"] == label).sum() == pytest.approx(0.2 * n, abs=1)
    train = t[t["split"] == "train"]
    assert set(train["fold"]) == {0, 1, 2} and (test["fold"] == -1).all()
    per_fold = train.groupby(["fold", "label"]).size().unstack()
    assert (per_fold.max() - per_fold.min()).max() <= 1  # each class spread evenly over folds


def test_split_is_seeded():
    base = table({"Pvalb": 20, "Sst": 20, "Vip/Lamp5": 20, "Excitatory": 20})
    a, b = assign_split(base, SplitParams(seed=1)), assign_split(base, SplitParams(seed=1))
    c = assign_split(base, SplitParams(seed=2))
    assert a.equals(b) and not a["split"].equals(c["split"])


def test_too_few_cells_stops_with_clear_message():
    with pytest.raises(ValueError, match="Excitatory"):
        assign_split(table({"Pvalb": 20, "Sst": 20, "Vip/Lamp5": 20, "Excitatory": 2}), SplitParams())


def test_metadata_exclusions():
    meta = pd.DataFrame(
        {"specimen_id": ["1", "2", "2", "3", "4"], "dataset": "seq", "label": ["Sst", "Sst", "Sst", "Unsure", "Pvalb"]}
    )
    attrs = {s: {"status": "ok", "amplitudes_pa": [50.0, 90.0]} for s in "123"}
    rows = cell_rows(meta, attrs, CLASSES).set_index("specimen_id")
    assert rows.loc["1", "status"] == "ok" and rows.loc["1", "rheobase_pa"] == 50.0
    assert "duplicate specimen_id" in rows.loc["2", "reason"]
    assert rows.loc["3", "reason"] == "label Unsure"
    assert rows.loc["4", "reason"] == "no scalogram file"
    assert (rows.loc[["2", "3", "4"], "status"] == "excluded").all()


def test_ids_equal_but_for_case_are_duplicates():
    """'Cell1' and 'cell1' would share {id}.h5 on a case-insensitive file system: both excluded."""
    meta = pd.DataFrame({"specimen_id": ["Cell1", "cell1", "c2"], "dataset": "local", "label": "Sst"})
    attrs = {s: {"status": "ok", "amplitudes_pa": [50.0, 90.0]} for s in ("Cell1", "cell1", "c2")}
    rows = cell_rows(meta, attrs, CLASSES).set_index("specimen_id")
    assert rows["status"].to_dict() == {"Cell1": "excluded", "cell1": "excluded", "c2": "ok"}
    assert rows.loc["Cell1", "reason"].startswith("duplicate specimen_id 'Cell1' (2 metadata rows: 'Cell1', 'cell1'")


def test_metadata_status_and_reason_are_kept():
    """A metadata table that excludes rows itself (cohort local) passes its reasons on, once each,
    and expects no scalogram for them; ids stay text ('007' is not 7)."""
    meta = pd.DataFrame({
        "specimen_id": ["007", "a", "a", "b", "c"], "dataset": "local", "label": ["Sst", "Sst", "Sst", "Unsure", "Sst"],
        "status": ["ok", "excluded", "excluded", "excluded", "excluded"],
        "reason": ["", "duplicate specimen_id 'a' (2 CSV rows)", "duplicate specimen_id 'a' (2 CSV rows)",
                   "label 'Unsure' not in classes [...]; file not found: /x/b.nwb", "file not found: /x/c.nwb"],
    })
    rows = cell_rows(meta, {"007": {"status": "ok", "amplitudes_pa": [50.0, 90.0]}}, CLASSES).set_index("specimen_id")
    assert rows.loc["007", "status"] == "ok" and rows.loc["007", "reason"] == ""
    assert rows.loc["a", "reason"] == "duplicate specimen_id 'a' (2 CSV rows)"
    assert rows.loc["b", "reason"] == "label 'Unsure' not in classes [...]; file not found: /x/b.nwb"
    assert rows.loc["c", "reason"] == "file not found: /x/c.nwb"
    assert (rows.loc[["a", "b", "c"], "status"] == "excluded").all()


def test_configured_class_without_cells_stops_the_split():
    with pytest.raises(ValueError, match="Excitatory: 0"):
        assign_split(table({"Pvalb": 10, "Sst": 10}), SplitParams(), classes=("Pvalb", "Sst", "Excitatory"))
    assert set(assign_split(table({"Pvalb": 10, "Sst": 10}), SplitParams(), classes=("Pvalb", "Sst"))["split"]) == {
        "train", "test"}


def test_paper_split_files(tmp_path):
    ref = pd.DataFrame({"specimen_id": [f"{i}" for i in range(40)], "label": np.repeat(CLASSES, 10),
                        "status": "ok", "reason": ""})
    (tmp_path / "train.csv").write_text("".join(f"{i}, Seq\n" for i in range(8, 40)))
    (tmp_path / "test.csv").write_text("".join(f"{i}, Clamp\n" for i in range(0, 6)))
    assert read_split_file(tmp_path / "test.csv") == [str(i) for i in range(6)]
    t = assign_split(ref, SplitParams(train_file=str(tmp_path / "train.csv"), test_file=str(tmp_path / "test.csv")))
    assert (t.loc[t["specimen_id"].isin([str(i) for i in range(6)]), "split"] == "test").all()
    outside = t[t["specimen_id"].isin(["6", "7"])]
    assert (outside["status"] == "excluded").all() and (outside["reason"] == "not in the split files").all()


def test_reference_split_files_read():
    from conftest import REPO

    train = REPO / "resources" / "paper" / "Train_split.csv"
    ids = read_split_file(train)
    assert len(ids) == 4472 and len(set(ids)) == 4472
