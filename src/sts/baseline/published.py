"""The paper's baseline inputs: published EP feature tables, labels and exact train/test split.

A REFERENCE_DIR laid out like ``../shared/reference`` holds (names fixed, see FILES):

* ``Train_split.csv`` / ``Test_split.csv`` — ``specimen_id, Seq|Clamp``, no header;
* ``cell_types_GouwensAll_new.txt`` — ``Label specimen_id``, space separated, no header;
* ``PatchClamp_EP_features.csv`` (Allen Cell Types, key ``specimen_id``) and
  ``PatchSeq_EP_features.csv`` (patch-seq, key ``cell_specimen_id``).

Features are the columns common to both tables whose names contain one of FEATURE_STEMS
(the paper's selection, 16 columns; ``FEATURE_SETS['all']``: every common column, 45); boolean
columns (strings True/False) become 0/1, NaN is kept (LightGBM handles it). Split cells that
cannot be used — absent from their dataset's feature table, without a label, labelled Unsure
(or any class not kept), duplicated, or in both splits — are returned in ``excluded`` with a
reason, never dropped silently.

Other class schemes than the study's (``sts.acquire.schemes``; ``load_scheme``) label the
patch-seq cells of ``PatchSeq_EP_features.csv`` from their T-types in the Gouwens 2020 metadata
that ipfx ships (joined by specimen id). The paper's split and label file hold the study's
classes, so these runs split the cells afresh: a stratified holdout (``sts.settings.SplitParams``:
20 %, seed 42). Allen Cell Types cells (no T-type), cells the scheme cannot place and cells of a
class too small for the holdout and the folds (``schemes.too_small``) are excluded with their reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sts.baseline.flow import FeatureCells, Split
from sts.settings import STUDY_CLASSES, SplitParams

FILES = {
    "train": "Train_split.csv",
    "test": "Test_split.csv",
    "labels": "cell_types_GouwensAll_new.txt",
    "Clamp": "PatchClamp_EP_features.csv",
    "Seq": "PatchSeq_EP_features.csv",
}
ID_COLUMNS = {"Clamp": "specimen_id", "Seq": "cell_specimen_id"}
EXCLUDED_COLUMNS = ["specimen_id", "dataset", "split", "label", "reason"]
FEATURE_STEMS = (
    "f_i_curve_slope", "avg_isi", "adaptation", "latency",
    "has_burst", "has_pause", "has_delay", "long_square",
)  # fmt: skip
CLASSES = STUDY_CLASSES  # only which labels are kept: the fit orders its classes itself
# --features: the study's 16 columns, or every column common to both tables (each name contains "").
FEATURE_SETS = {"study": FEATURE_STEMS, "all": ("",)}


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


def read_tables(reference_dir: str | Path, stems=FEATURE_STEMS) -> tuple[dict, list[str], pd.DataFrame]:
    """The two feature tables (indexed by specimen id), the selected features and their values
    (indexed by (dataset tag, specimen id)); stops when a file of FILES is missing."""
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
    return tables, features, values


def load_published(reference_dir: str | Path, classes=CLASSES, stems=FEATURE_STEMS) -> FeatureCells:
    """Load features, labels and the paper's split from ``reference_dir`` (``excluded``: specimen_id,
    dataset, split, label, reason)."""
    ref = Path(reference_dir)
    tables, features, values = read_tables(ref, stems)
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
    excl = pd.concat(excluded, ignore_index=True)[EXCLUDED_COLUMNS]
    return FeatureCells(splits["train"], splits["test"], features, excl, "published EP features")


def load_scheme(reference_dir: str | Path, scheme, stems=FEATURE_STEMS, min_cells: int = 4,
                split: SplitParams = SplitParams(), metadata: str | Path | None = None) -> FeatureCells:  # fmt: skip
    """The patch-seq cells of the published table labelled by ``scheme`` (a ``sts.acquire.schemes.Scheme``)
    from the T-types of ``metadata`` (None: the one ipfx ships), split into a stratified holdout
    (``split.test_fraction``, ``split.seed``); a class with fewer than ``min_cells`` cells is excluded."""
    from sklearn.model_selection import train_test_split

    from sts.acquire.labels import UNSURE, patchseq_labels
    from sts.acquire.schemes import too_small

    tables, features, values = read_tables(reference_dir, stems)
    meta = patchseq_labels(metadata, scheme=scheme).set_index("specimen_id")
    cells = pd.DataFrame({"specimen_id": tables["Seq"].index, "dataset": "Seq", "split": ""})
    ids = cells["specimen_id"].astype(str)
    cells["label"] = ids.map(meta["label"]).fillna(UNSURE).to_numpy()
    cells["reason"] = ids.map(meta["reason"]).fillna("not in the patch-seq metadata").to_numpy()
    small = too_small(cells.loc[cells["reason"] == "", "label"], min_cells)
    cells.loc[cells["label"].isin(list(small)), "reason"] = cells["label"].map(small)
    clamp = pd.DataFrame({"specimen_id": tables["Clamp"].index, "dataset": "Clamp", "split": "", "label": UNSURE,
                          "reason": f"Allen Cell Types cell: no T-type for scheme {scheme.name}"})  # fmt: skip
    kept = cells[cells["reason"] == ""].reset_index(drop=True)
    if kept["label"].nunique() < 2:
        raise ValueError(f"scheme {scheme.name}: fewer than two classes with {min_cells} cells or more")
    train_idx, test_idx = train_test_split(kept.index, test_size=split.test_fraction, stratify=kept["label"],
                                           random_state=split.seed)  # fmt: skip
    parts = {}
    for name, idx in (("train", train_idx), ("test", test_idx)):
        part = kept.loc[sorted(idx)].reset_index(drop=True)
        x = values.loc[list(zip(part["dataset"], part["specimen_id"]))].reset_index(drop=True)
        parts[name] = Split(x, part["label"].rename("label"), part["specimen_id"], part["dataset"])
    excluded = pd.concat([cells[cells["reason"] != ""], clamp], ignore_index=True)
    name = (f"published EP features, patch-seq cells, scheme {scheme.name}, stratified "
            f"{split.test_fraction:.0%} holdout (seed {split.seed})")  # fmt: skip
    return FeatureCells(parts["train"], parts["test"], features, excluded[EXCLUDED_COLUMNS], name)
