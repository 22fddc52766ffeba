"""The paper's baseline inputs: published EP feature tables, labels and exact train/test split.

A REFERENCE_DIR laid out like ``../shared/reference`` holds (names fixed, see FILES):

* ``Train_split.csv`` / ``Test_split.csv`` — ``specimen_id, Seq|Clamp``, no header;
* ``cell_types_GouwensAll_new.txt`` — ``Label specimen_id``, space separated, no header;
* ``PatchClamp_EP_features.csv`` (Allen Cell Types, key ``specimen_id``) and
  ``PatchSeq_EP_features.csv`` (patch-seq, key ``cell_specimen_id``).

Features are the columns common to both tables whose names contain one of FEATURE_STEMS
(the paper's selection); boolean columns (strings True/False) become 0/1, NaN is kept
(LightGBM handles it). Split cells that cannot be used — absent from their dataset's
feature table, without a label, labelled Unsure (or any class not kept), duplicated, or in
both splits — are returned in ``excluded`` with a reason, never dropped silently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sts.baseline.flow import FeatureCells, Split
from sts.settings import STUDY_CLASSES

FILES = {
    "train": "Train_split.csv",
    "test": "Test_split.csv",
    "labels": "cell_types_GouwensAll_new.txt",
    "Clamp": "PatchClamp_EP_features.csv",
    "Seq": "PatchSeq_EP_features.csv",
}
ID_COLUMNS = {"Clamp": "specimen_id", "Seq": "cell_specimen_id"}
FEATURE_STEMS = (
    "f_i_curve_slope", "avg_isi", "adaptation", "latency",
    "has_burst", "has_pause", "has_delay", "long_square",
)  # fmt: skip
CLASSES = STUDY_CLASSES  # only which labels are kept: the fit orders its classes itself


def read_split(path: str | Path) -> pd.DataFrame:
    """A paper split file as ``specimen_id`` (int), ``dataset`` (Seq|Clamp)."""
    frame = pd.read_csv(path, header=None, names=["specimen_id", "dataset"], skipinitialspace=True)
    frame["dataset"] = frame["dataset"].astype(str).str.strip()
    bad = sorted(set(frame["dataset"]) - set(ID_COLUMNS))
    if bad:
        raise ValueError(f"{path}: unknown dataset tags {bad} (expected Seq or Clamp)")
    return frame


def read_labels(path: str | Path) -> pd.Series:
    """The label file as a Series indexed by specimen_id."""
    frame = pd.read_csv(path, sep=r"\s+", header=None, names=["label", "specimen_id"])
    dup = frame["specimen_id"].duplicated(keep=False)
    if frame.loc[dup].groupby("specimen_id")["label"].nunique().gt(1).any():
        raise ValueError(f"{path}: specimen ids with conflicting labels")
    return frame.drop_duplicates("specimen_id").set_index("specimen_id")["label"]


def to_numeric(column: pd.Series) -> pd.Series:
    """Booleans (bool dtype or strings True/False, any case) to 0/1; others to float; NaN kept."""
    if column.dtype == bool:
        return column.astype(float)
    if column.dtype == object:
        text = column.astype("string").str.strip().str.lower()
        if text.dropna().isin(["true", "false"]).all():
            return text.map({"true": 1.0, "false": 0.0}).astype(float)
    return pd.to_numeric(column, errors="raise").astype(float)


def select_features(columns_a, columns_b, stems=FEATURE_STEMS) -> list[str]:
    """Columns present in both tables whose names contain any stem, in the first table's order."""
    common = set(columns_b)
    return [c for c in columns_a if c in common and any(s in c for s in stems)]


def load_published(reference_dir: str | Path, classes=CLASSES, stems=FEATURE_STEMS) -> FeatureCells:
    """Load features, labels and the paper's split from ``reference_dir`` (``excluded``: specimen_id,
    dataset, split, label, reason)."""
    ref = Path(reference_dir)
    missing = [name for name in FILES.values() if not (ref / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{ref}: missing {missing}")
    tables = {}
    for tag, key in ID_COLUMNS.items():
        table = pd.read_csv(ref / FILES[tag], low_memory=False)
        if table[key].duplicated().any():
            raise ValueError(f"{FILES[tag]}: duplicated {key}")
        tables[tag] = table.set_index(key)
    features = select_features(tables["Clamp"].columns, tables["Seq"].columns, stems)
    if not features:
        raise ValueError("no common feature columns match the stems")
    values = pd.concat({tag: t[features].apply(to_numeric) for tag, t in tables.items()})
    labels = read_labels(ref / FILES["labels"])

    splits, excluded = {}, []
    test_ids = set(read_split(ref / FILES["test"])["specimen_id"])
    for name in ("train", "test"):
        cells = read_split(ref / FILES[name])
        cells["split"] = name
        cells["label"] = cells["specimen_id"].map(labels)
        has = [sid in tables[ds].index for sid, ds in zip(cells["specimen_id"], cells["dataset"])]
        reason = pd.Series("", index=cells.index, dtype=object)
        reason[~np.asarray(has)] = [f"not in {FILES[ds]}" for ds in cells.loc[~np.asarray(has), "dataset"]]
        reason[cells["label"].isna() & (reason == "")] = "no label"
        other = cells["label"].notna() & ~cells["label"].isin(classes) & (reason == "")
        reason[other] = "label " + cells.loc[other, "label"].astype(str)
        reason[cells["specimen_id"].duplicated() & (reason == "")] = "duplicate in split file"
        if name == "train":
            reason[cells["specimen_id"].isin(test_ids) & (reason == "")] = "also in test split"
        excluded.append(cells[reason != ""].assign(reason=reason[reason != ""]))
        kept = cells[reason == ""].reset_index(drop=True)
        x = values.loc[list(zip(kept["dataset"], kept["specimen_id"]))].reset_index(drop=True)
        splits[name] = Split(x, kept["label"].rename("label"), kept["specimen_id"], kept["dataset"])
    excl = pd.concat(excluded, ignore_index=True)[["specimen_id", "dataset", "split", "label", "reason"]]
    return FeatureCells(splits["train"], splits["test"], features, excl, "published EP features")
