"""The split manifest: one row per cell with status, reason, split and fold.

Columns: specimen_id, dataset, label, status, reason, split, fold, then per-cell extras
(rheobase_pa, plus_pa_amplitude, sweep numbers, spike counts, source rate, source file).
Usable cells (status 'ok') are split into a stratified holdout ('test') and 'train' cells
carrying fold 0..n_folds-1 (stratified, seeded); or the split comes from the paper's files.

Cells excluded by an unexpected error (per-cell attribute ``unexpected_error``: an exception
other than the readers' NwbReadError, see ``sts.prep.sweeps``) are counted in the summary; when
they are more than ``MAX_UNEXPECTED_SHARE`` of the cells and at least ``MIN_UNEXPECTED_CELLS``,
the manifest stops (``UnexpectedErrors``) instead of training on what a bug left over.

Ids follow ``sts.cohort.ids`` in every cohort: a metadata row whose id is unsafe as a file name is an
excluded row with the reason (its cell never had a job). Reasons (from the metadata and the per-cell
files, i.e. from readers of outside files) are cleaned of control characters and cut
(``sts.io.text.clean_text``). The written CSV is ``spreadsheet_safe`` (users open it), except labels
that are configured class names (later rules match them exactly); usable cells' ids are valid ids,
which never change (see ``sts.io.text``). ``results/metadata.csv`` is written the same way.
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from sts.io.atomic import write_csv_atomic
from sts.io.hdf5 import read_attrs
from sts.cohort.ids import id_problem
from sts.settings import STUDY_CLASSES, SplitParams
from sts.io.text import clean_text, spreadsheet_safe

log = logging.getLogger(__name__)

COLUMNS = ["specimen_id", "dataset", "label", "status", "reason", "split", "fold"]
# A few odd files may raise what no reader foresaw; more than this share of the cells (and at
# least this many) means a bug of ours, not bad data.
MAX_UNEXPECTED_SHARE = 0.10
MIN_UNEXPECTED_CELLS = 5


class UnexpectedErrors(RuntimeError):
    """Too many cells were excluded by unexpected errors (see the per-cell logs' tracebacks)."""


def check_unexpected(errors: dict[str, str], n_cells: int, what: str = "cells",
                     max_share: float = MAX_UNEXPECTED_SHARE, min_cells: int = MIN_UNEXPECTED_CELLS) -> str:
    """Summary of ``errors`` (id -> exception type) among ``n_cells``; raises UnexpectedErrors
    when they are more than ``max_share`` of the cells and at least ``min_cells``."""
    if not errors:
        return "no unexpected errors"
    from collections import Counter

    types = ", ".join(f"{t} ×{k}" for t, k in Counter(errors.values()).most_common())
    examples = ", ".join(sorted(errors)[:5])
    summary = (f"{len(errors)} of {n_cells} {what} excluded by unexpected errors ({types}; e.g. {examples}: "
               "tracebacks in their per-cell logs)")  # fmt: skip
    if len(errors) >= min_cells and len(errors) > max_share * n_cells:
        raise UnexpectedErrors(f"{summary}: more than {max_share:.0%} of the {what}, a bug rather than bad "
                               "data; fix it (or the reader) and re-run those cells")  # fmt: skip
    return summary


def read_split_file(path: str | Path) -> list[str]:
    """Specimen ids of a paper-format split file (``id, Seq|Clamp`` per line, no header)."""
    table = pd.read_csv(path, header=None, names=["specimen_id", "dataset"], dtype=str, skipinitialspace=True)
    return table["specimen_id"].str.strip().tolist()


def cell_rows(metadata: pd.DataFrame, scalogram_attrs: dict[str, dict], classes) -> pd.DataFrame:
    """Status and reason per unique specimen_id, before splitting.

    Metadata problems (an unsafe id, ``sts.cohort.ids``; duplicate id, compared case-folded as in
    ``sts.cohort.local``; label outside the classes, e.g. Unsure) come first; then the per-cell
    file's own status (unreadable NWB, no spiking sweep, ...). Metadata with ``status``/``reason`` columns (the
    local cohort) excludes its 'excluded' rows with their reasons; those rows had no per-cell
    job, so no scalogram file is expected for them.
    """
    from sts.cohort.local import duplicate_ids, duplicate_reason

    meta = metadata.astype({"specimen_id": str})
    spellings = duplicate_ids(meta["specimen_id"])
    upstream = _metadata_reasons(meta)
    rows = []
    for sid, first in meta.drop_duplicates("specimen_id").set_index("specimen_id").iterrows():
        reasons = list(upstream.get(sid, []))
        unsafe = id_problem(sid)
        if unsafe and not any(r.startswith("unsafe specimen_id") for r in reasons):
            reasons.insert(0, unsafe)
        group = spellings.get(sid.casefold())
        if group and not any(r.startswith("duplicate specimen_id") for r in reasons):
            reasons.append(duplicate_reason(sid, group, "metadata rows"))
        label = str(first.get("label", ""))
        if label not in classes and not any(r.startswith("label ") for r in reasons):
            reasons.append(f"label {label!r} not in classes" if label != "Unsure" else "label Unsure")
        attrs = scalogram_attrs.get(sid)
        if attrs is None:
            if sid not in upstream and not unsafe:  # an unsafe id never had a per-cell job
                reasons.append("no scalogram file")
            attrs = {}
        elif attrs.get("status") != "ok":
            reasons.append(str(attrs.get("reason") or "excluded upstream"))
        amps = attrs.get("amplitudes_pa") or [np.nan, np.nan]
        sweeps = attrs.get("sweep_numbers") or [np.nan, np.nan]
        spikes = attrs.get("n_spikes") or [np.nan, np.nan]
        rows.append(
            {
                "specimen_id": sid,
                "dataset": first.get("dataset", ""),
                "label": label,
                "status": "excluded" if reasons else "ok",
                "reason": clean_text("; ".join(clean_text(r) for r in reasons)),
                "rheobase_pa": amps[0],
                "second_pa": amps[1],
                "sweep_rheobase": sweeps[0],
                "sweep_second": sweeps[1],
                "n_spikes_rheobase": spikes[0],
                "n_spikes_second": spikes[1],
                "fs_source_hz": (attrs.get("fs_source_hz") or [np.nan])[0],
                "source_file": attrs.get("source_file", ""),
            }
        )
    return pd.DataFrame(rows)


def _metadata_reasons(meta: pd.DataFrame) -> dict[str, list[str]]:
    """specimen_id -> reasons of its metadata rows with status 'excluded' (all rows, in order)."""
    if "status" not in meta.columns:
        return {}
    out: dict[str, list[str]] = {}
    bad = meta[meta["status"].astype(str) != "ok"]
    reasons = bad["reason"].fillna("").astype(str) if "reason" in bad else pd.Series("", index=bad.index)
    for sid, reason in zip(bad["specimen_id"], reasons):
        parts = [r for r in reason.split("; ") if r.strip()] or ["excluded in the metadata table"]
        known = out.setdefault(sid, [])
        known += [r for r in parts if r not in known]  # a repeated id's rows share reasons
    return out


def check_class_counts(table: pd.DataFrame, n_folds: int, test_fraction: float, classes=None) -> None:
    """Stop before any job runs when a class has too few usable ('ok') cells for the split.

    The rule is sts.cohort.manifest.assign_split's: each class needs one holdout cell and one cell per
    fold (n_folds + 1). With ``classes``, a configured class without any usable cell counts too.
    """
    need = n_folds + 1
    labels = table.loc[table["status"] == "ok", "label"]
    counts = labels.value_counts()
    if classes is not None:
        counts = counts.reindex(list(classes), fill_value=0)
    small = counts[counts < need]
    if len(small) or labels.empty:
        detail = ", ".join(f"{c}: {n}" for c, n in small.items()) or "no usable cells"
        raise ValueError(
            f"classes with too few usable cells for split.test_fraction = {test_fraction:g} and "
            f"split.n_folds = {n_folds} (need >= {need} each): {detail}"
        )


def assign_split(table: pd.DataFrame, split: SplitParams, classes=None) -> pd.DataFrame:
    """Add ``split`` ('train'/'test'/'') and ``fold`` (0..n_folds-1 for train cells, else -1).

    Without split files, stops (ValueError) when a class, or a configured class of ``classes``
    without any usable cell, has too few cells for the holdout and the folds.
    """
    from sklearn.model_selection import StratifiedKFold, train_test_split

    table = table.copy()
    table["split"] = ""
    table["fold"] = -1
    ok = table.index[table["status"] == "ok"]
    labels = table.loc[ok, "label"]
    if split.train_file or split.test_file:
        if not (split.train_file and split.test_file):
            raise ValueError("split files: give both train_file and test_file")
        train_ids, test_ids = set(read_split_file(split.train_file)), set(read_split_file(split.test_file))
        sid = table["specimen_id"]
        table.loc[ok, "split"] = np.where(sid[ok].isin(test_ids), "test", np.where(sid[ok].isin(train_ids), "train", ""))
        outside = ok[table.loc[ok, "split"] == ""]
        table.loc[outside, ["status", "reason"]] = ["excluded", "not in the split files"]
        ok = ok.difference(outside)
        labels = table.loc[ok, "label"]
    else:
        # Each class needs a holdout cell and one cell per fold: stop here, before training.
        check_class_counts(table, split.n_folds, split.test_fraction, classes)
        train_idx, test_idx = train_test_split(
            ok, test_size=split.test_fraction, stratify=labels, random_state=split.seed
        )
        table.loc[train_idx, "split"] = "train"
        table.loc[test_idx, "split"] = "test"
    train = table.index[(table["split"] == "train")]
    folds = StratifiedKFold(n_splits=split.n_folds, shuffle=True, random_state=split.seed)
    for k, (_, val) in enumerate(folds.split(np.zeros(len(train)), table.loc[train, "label"])):
        table.loc[train[val], "fold"] = k
    return table


def for_spreadsheets(table: pd.DataFrame, classes) -> pd.DataFrame:
    """A cell table (manifest or metadata) as written: text cells ``spreadsheet_safe`` except
    labels that are one of ``classes`` (configured names, matched exactly by later rules)."""
    out = spreadsheet_safe(table)
    if "label" in table:
        known = table["label"].isin(list(classes))
        out.loc[known, "label"] = table.loc[known, "label"]
    return out


def build_manifest(
    metadata_csv: str | Path, scalogram_files: list[str | Path], out_csv: str | Path,
    split: SplitParams | dict = SplitParams(), classes=STUDY_CLASSES,
) -> pd.DataFrame:
    """Read the metadata and per-cell files, split, write the manifest atomically."""
    # Ids, labels and reasons are text: '007' stays '007', a label 'NA' stays 'NA'.
    metadata = pd.read_csv(metadata_csv, dtype=str, keep_default_na=False)
    from tqdm import tqdm

    split = split if isinstance(split, SplitParams) else SplitParams(**split)  # a config block
    attrs = {}
    for path in tqdm(scalogram_files, desc="manifest: reading cells", unit="cell", mininterval=2):
        with h5py.File(path, "r") as f:
            a = read_attrs(f)
        attrs[str(a.get("specimen_id") or Path(path).stem)] = a
    unexpected = {sid: str(a["unexpected_error"]) for sid, a in attrs.items() if a.get("unexpected_error")}
    summary = check_unexpected(unexpected, len(attrs), "cells", MAX_UNEXPECTED_SHARE, MIN_UNEXPECTED_CELLS)
    if unexpected:
        log.warning("manifest: %s", summary)
    classes = tuple(classes or STUDY_CLASSES)
    table = assign_split(cell_rows(metadata, attrs, classes), split, classes)
    extras = [c for c in table.columns if c not in COLUMNS]
    table = table[COLUMNS + extras].sort_values("specimen_id", kind="stable")
    write_csv_atomic(out_csv, for_spreadsheets(table, classes))
    n_ok = int((table["status"] == "ok").sum())
    how = ("the split files" if split.train_file else
           f"a stratified split (test_fraction {split.test_fraction:g}, seed {split.seed})")  # fmt: skip
    log.info("manifest: %d cells, %d usable, %d excluded, split by %s; %s", len(table), n_ok, len(table) - n_ok,
             how, summary)  # fmt: skip
    return table


def write_local_table(labels_csv, classes, out_csv) -> pd.DataFrame:
    """Rule ``local_metadata``: the users' label CSV (``sts.cohort.local``) as results/metadata.csv; each
    excluded row logged with its file and reason."""
    from sts.cohort.local import read_local_labels
    from sts.io.atomic import write_csv_atomic

    table = read_local_labels(labels_csv, classes)
    write_csv_atomic(out_csv, for_spreadsheets(table, classes))
    ok = table["status"] == "ok"
    log.info("%d rows, %d usable: %s", len(table), ok.sum(), table[ok].groupby(["dataset", "label"]).size().to_dict())
    for row in table[~ok].itertuples():
        log.info("excluded %s (%s): %s", row.specimen_id, row.file, row.reason)
    return table
