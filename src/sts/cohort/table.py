"""The cell table of a run, per ``cohort``: synthetic, allen, dandi, paper or local.

Columns: specimen_id, dataset ('clamp' = Allen Cell Types NWB v1, 'seq' = DANDI 000020 patch-seq),
label (the study's classes or Unsure), label_source; the synthetic cohort adds its generator
columns. Snakemake calls ``cohort_table`` at parse time, so it stays cheap: the paper cohort
reads only the split and label files; the allen and dandi cohorts read their cached listing
(``{metadata_dir}/allen_cells.csv``, ``dandi_assets.csv``) and fetch it once when it is missing.
The local cohort is the users' CSV (``local.labels``, see ``sts.cohort.local``): one row per CSV
row with file, layout, ABF protocol columns, status and reason (rows unusable at reading time
are kept, excluded with their reason; they never become jobs).
Every cohort's ids follow one rule (``sts.cohort.ids``): the other cohorts' tables carry ``status`` and
``reason`` too, a row whose id would be unsafe as a file name (``../../etc/passwd``, a newline,
5,000 characters, ``=1+1``) is 'excluded' with the reason, never a job or a path.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import pandas as pd

from sts.acquire import labels as lab
from sts.acquire.listings import listing_path, write_allen_listing, write_dandi_listing
from sts.settings import acquire_settings

log = logging.getLogger(__name__)

COLUMNS = ["specimen_id", "dataset", "label", "label_source", "status", "reason"]
DATASET_OF_SPLIT = {"clamp": "clamp", "seq": "seq"}  # paper split files say Clamp / Seq


def read_listing(acq: Mapping, dataset: str) -> pd.DataFrame:
    """The cached API listing of one dataset, fetched and cached on first use."""
    path = listing_path(acq, dataset)
    if not path.exists():
        log.warning("no cached %s listing at %s: fetching it now", dataset, path)
        (write_allen_listing if dataset == "clamp" else write_dandi_listing)(acq, path)
    return pd.read_csv(path, dtype=str)


def _labels_from_file(table: pd.DataFrame, label_file: str) -> pd.DataFrame:
    known = lab.read_label_file(label_file)
    table["label"] = table["specimen_id"].map(known).fillna(lab.UNSURE)
    table["label_source"] = f"label file {Path(label_file).name}"
    missing = int((~table["specimen_id"].isin(known)).sum())
    if missing:
        log.warning("%d cells are not in %s: labelled Unsure", missing, label_file)
    return table


def allen_cells(acq: Mapping) -> pd.DataFrame:
    raw = read_listing(acq, "clamp")
    table = pd.DataFrame({"specimen_id": raw["specimen__id"].str.strip(), "dataset": "clamp"})
    table["label"] = [lab.label_from_allen(line, dend)
                      for line, dend in zip(raw["line_name"].fillna(""), raw["tag__dendrite_type"].fillna(""))]
    table["label_source"] = "Cre line / dendrite type"
    return table


def scheme_name(config: Mapping) -> str:
    """Config ``labels.scheme`` (absent: the default, study)."""
    from sts.settings import LabelSettings

    return str((config.get("labels") or {}).get("scheme") or LabelSettings().scheme)


def run_scheme(config: Mapping):
    """The run's class scheme (``sts.acquire.schemes.Scheme``) and classes: config ``classes``, or
    null for the scheme's. With the study scheme ``classes`` may name any labels (a local cohort's
    own); with another, a subset of the scheme's. Another scheme than study labels patch-seq cells
    from their T-types: cohort dandi only, without acquire.label_file (it holds the study's classes)
    and with computed baseline features. Stops (ValueError naming the keys) otherwise."""
    from sts.acquire.schemes import STUDY, SchemeError, get_scheme, run_classes

    try:
        scheme = get_scheme(scheme_name(config))
        if scheme.name == STUDY:
            return scheme, tuple(config.get("classes") or scheme.classes)
        classes = run_classes(scheme, config.get("classes"))
    except SchemeError as err:
        raise ValueError(f"labels.scheme: {err}") from None
    if config["cohort"] != "dandi":
        raise ValueError(f"labels.scheme {scheme.name} labels patch-seq cells from their T-types: cohort dandi "
                         f"only (cohort {config['cohort']} has the study's classes or its own; use scheme study)")  # fmt: skip
    if acquire_settings(config)["label_file"]:
        raise ValueError(f"labels.scheme {scheme.name}: acquire.label_file holds the study's classes; leave it "
                         "out (labels come from the patch-seq metadata) or use scheme study")  # fmt: skip
    if (config.get("baseline") or {}).get("features") == "published":
        raise ValueError(f"labels.scheme {scheme.name}: baseline.features published fits the study's labels; use "
                         f"computed, or sts baseline-published --scheme {scheme.name}")  # fmt: skip
    return scheme, classes


def dandi_cells(acq: Mapping, scheme=None) -> pd.DataFrame:
    raw = read_listing(acq, "seq").drop_duplicates("specimen_id")  # several assets per cell: the first
    table = pd.DataFrame({"specimen_id": raw["specimen_id"].str.strip(), "dataset": "seq"})
    if acq["label_file"]:  # it decides every label (cohort_table): the metadata is not read
        table["label"], table["label_source"] = lab.UNSURE, ""
        return table
    path = patchseq_metadata_path(acq)
    labelled = lab.patchseq_labels(path, patchseq_columns(acq), scheme)
    _log_reasons(labelled, table["specimen_id"])
    known = labelled.set_index("specimen_id")["label"]
    table["label"] = table["specimen_id"].map(known).fillna(lab.UNSURE)
    name = getattr(scheme, "name", "study")
    if name != "study":  # a cell the scheme cannot place is excluded here with its reason (no download)
        reasons = labelled.set_index("specimen_id")["reason"]
        table["reason"] = [reasons.get(sid) or f"not in {Path(path).name}" if label == lab.UNSURE else ""
                           for sid, label in zip(table["specimen_id"], table["label"])]  # fmt: skip
    table["label_source"] = f"T-type / dendrite type ({Path(path).name})" + (
        "" if name == "study" else f", scheme {name}")
    missing = int((~table["specimen_id"].isin(known.index)).sum())
    if missing:
        log.warning("%d cells are not in %s: labelled Unsure", missing, path)
    return table


def _log_reasons(labelled: pd.DataFrame, ids) -> None:
    """Why the listed cells a scheme cannot place are Unsure (counts per reason)."""
    reasons = labelled.loc[labelled["specimen_id"].isin(set(ids)) & (labelled["reason"] != ""), "reason"]
    for reason, n in reasons.value_counts().items():
        log.info("Unsure (excluded): %d cells: %s", n, reason)


def patchseq_metadata_path(acq: Mapping) -> Path:
    """The user's patch-seq metadata CSV, or by default the one shipped with ipfx (no download)."""
    return Path(acq["patchseq_metadata"]) if acq["patchseq_metadata"] else lab.shipped_patchseq_metadata()


def patchseq_columns(acq: Mapping) -> lab.PatchseqColumns:
    return lab.PatchseqColumns(acq["patchseq_id_column"], acq["patchseq_ttype_column"],
                               acq["patchseq_dendrite_column"])


def paper_cells(config: Mapping) -> pd.DataFrame:
    """Exactly the cells of the paper's split files (train then test), dataset from their Seq|Clamp tag."""
    split = config.get("split") or {}
    if not (split.get("train_file") and split.get("test_file")):
        raise ValueError("cohort 'paper' needs split.train_file and split.test_file (the study's split files)")
    parts = []
    for path in (split["train_file"], split["test_file"]):
        part = pd.read_csv(path, header=None, names=["specimen_id", "dataset"], dtype=str, skipinitialspace=True)
        parts.append(part)
    table = pd.concat(parts, ignore_index=True)
    table["specimen_id"] = table["specimen_id"].str.strip()
    table["dataset"] = table["dataset"].str.strip().str.lower()
    bad = table[~table["dataset"].isin(DATASET_OF_SPLIT)]
    if len(bad):
        raise ValueError(f"split files: unknown dataset tags {sorted(bad['dataset'].unique())} (expected Seq|Clamp)")
    table["label"], table["label_source"] = lab.UNSURE, ""
    return table


def with_id_status(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with ``status`` ('ok' / 'excluded') and ``reason``: unsafe ids excluded (``sts.cohort.ids``),
    as are rows that come with a reason already (a cell the class scheme cannot place)."""
    from sts.cohort.ids import id_problem

    table = table.copy()
    earlier = table["reason"].fillna("").astype(str) if "reason" in table else [""] * len(table)
    table["reason"] = [id_problem(s) or r for s, r in zip(table["specimen_id"].astype(str), earlier)]
    table["status"] = ["excluded" if r else "ok" for r in table["reason"]]
    bad = table[table["status"] != "ok"]
    if len(bad):
        log.warning("%d cells excluded before any download, e.g. %s", len(bad), bad["reason"].iloc[0])
    return table


def cohort_table(config: Mapping) -> pd.DataFrame:
    """One row per cell of the configured cohort (see module docstring)."""
    cohort = config["cohort"]
    if cohort == "local":
        from sts.cohort.local import read_local_labels
        from sts.cohort.manifest import STUDY_CLASSES

        return read_local_labels(config["local"]["labels"], config.get("classes") or STUDY_CLASSES)
    if cohort == "synthetic":
        from sts.synth import make_cohort

        s = config["synthetic"]
        return with_id_status(make_cohort(s["n_cells"], s["seed"], s["defect_fraction"]))
    acq = acquire_settings(config)
    if cohort == "paper":
        table = paper_cells(config)
    elif cohort == "allen":
        table = allen_cells(acq)
    elif cohort == "dandi":
        table = dandi_cells(acq, run_scheme(config)[0])
    else:
        raise ValueError(f"unknown cohort {cohort!r} (synthetic, allen, dandi, paper or local)")
    if acq["label_file"]:
        table = _labels_from_file(table, acq["label_file"])
    elif cohort == "paper":
        raise ValueError("cohort 'paper' needs acquire.label_file (the study's label file)")
    if acq["cells"]:
        wanted = [str(c) for c in acq["cells"]]
        unknown = sorted(set(wanted) - set(table["specimen_id"]))
        if unknown:
            raise ValueError(f"acquire.cells: {len(unknown)} ids are not in the {cohort} cohort: {unknown[:10]}")
        table = table[table["specimen_id"].isin(wanted)]
    if acq["max_cells"] and len(table) > acq["max_cells"]:
        # A seeded sample keeps the class mix of the whole cohort, unlike the first ids.
        table = table.sample(n=int(acq["max_cells"]), random_state=0)
    table = with_id_status(table)
    return table[COLUMNS].sort_values("specimen_id", kind="stable").reset_index(drop=True)


def write_cohort_table(config: Mapping, classes, out_csv) -> pd.DataFrame:
    """Rule ``cohort_metadata``: ``cohort_table(config)`` as results/metadata.csv (spreadsheet-safe)."""
    from sts.cohort.manifest import for_spreadsheets
    from sts.io.atomic import write_csv_atomic

    table = cohort_table(config)
    write_csv_atomic(out_csv, for_spreadsheets(table, classes))
    log.info("%d cells: %s", len(table), table.groupby(["dataset", "label"]).size().to_dict())
    return table

