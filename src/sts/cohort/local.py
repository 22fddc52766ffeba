"""``cohort: local``: the user's own recordings, listed in a CSV (``local.labels``).

CSV columns: ``file`` (relative to the CSV's folder unless absolute) and ``label``; optional
``specimen_id`` (default: the file name's stem; the rule of ``sts.cohort.ids``), ``dataset`` (free text,
default ``local``; one line, at most 100 characters, a leading ``=+-@`` neutralised) and,
for ABF files without a command waveform, the long-square ladder ``first_amplitude_pa``,
``step_pa``, ``onset_s``, ``duration_s`` (sweep k steps to first + k * step).
``read_local_labels`` keeps every CSV row: a row that cannot be used gets ``status`` 'excluded'
and its reasons (all of them, joined by '; '). A specimen id given by several rows excludes all of
them (as ``sts.cohort.manifest.cell_rows`` does for other cohorts): which row is meant is not ours to guess.
Ids are compared case-folded: ``Cell1`` and ``cell1`` name the same file on a case-insensitive file
system (macOS, Windows), so they are duplicates too.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from sts.cohort.ids import id_problem  # the rule of every cohort
from sts.recordings.abf import PROTOCOL_FIELDS, Protocol

LAYOUTS = {".nwb": "nwb", ".abf": "abf"}
DEFAULT_DATASET = "local"
COLUMNS = ["specimen_id", "dataset", "label", "file", "layout", "status", "reason"]


def duplicate_ids(ids) -> dict[str, list[str]]:
    """Case-folded id -> the ids of its rows (one entry per row), for ids given by several rows."""
    groups: dict[str, list[str]] = {}
    for sid in ids:
        groups.setdefault(str(sid).casefold(), []).append(str(sid))
    return {key: group for key, group in groups.items() if len(group) > 1}


def duplicate_reason(specimen_id: str, group: list[str], rows: str) -> str:
    """The exclusion reason of each row of a duplicated id (``group``: the ids of all its rows)."""
    spelled = sorted(set(group))
    if len(spelled) == 1:
        return f"duplicate specimen_id {specimen_id!r} ({len(group)} {rows})"
    return (f"duplicate specimen_id {specimen_id!r} ({len(group)} {rows}: {', '.join(map(repr, spelled))} "
            "differ only in case and would share a file on case-insensitive file systems)")


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value).strip()


def _dataset(value) -> str:
    """The free-text dataset name as every later table shows it: one line, cut, and neutralised
    for spreadsheets here, once, so that the per-cell files and every CSV agree (``sts.io.text``)."""
    from sts.io.text import clean_text, neutralise

    return neutralise(clean_text(_text(value), 100)) or DEFAULT_DATASET


def _protocol(row: pd.Series, given: list[str]) -> tuple[dict, str]:
    """The row's protocol values ({} if none given) and what is wrong with them ('' if nothing)."""
    values = {k: _text(row.get(k)) for k in given}
    filled = {k: v for k, v in values.items() if v}
    if not filled:
        return {}, ""
    missing = [k for k in PROTOCOL_FIELDS if not values.get(k)]
    if missing:
        return {}, f"incomplete protocol: {', '.join(missing)} missing (give all of {', '.join(PROTOCOL_FIELDS)})"
    try:
        numbers = {k: float(v) for k, v in filled.items()}
        Protocol(**numbers)
    except ValueError as err:
        return {}, f"bad protocol: {err}"
    return numbers, ""


def read_table(csv_path: str | Path) -> pd.DataFrame:
    """The CSV as text, one row per line, column names stripped (what every reader of it sees;
    the workflow validates it against workflow/schemas/local_cohort.schema.yaml).

    Raises FileNotFoundError if there is no CSV."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"local.labels: no CSV at {csv_path.absolute()} (the table of your recordings)")
    raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False, skipinitialspace=True)
    raw.columns = [c.strip() for c in raw.columns]
    return raw


def read_local_labels(csv_path: str | Path, classes) -> pd.DataFrame:
    """One row per CSV row: specimen_id, dataset, label, file (absolute), layout (nwb/abf), the
    protocol columns present in the CSV (float, NaN where not given), status (ok/excluded), reason.

    Raises FileNotFoundError if there is no CSV, ValueError if it lacks a ``file`` or ``label`` column.
    With ``classes`` None (files to classify, ``sts predict --table``) the label is optional and unchecked,
    and an id defaulted from a file stem that is not a valid id is derived from it (``sts.cohort.ids.safe_id``,
    as for files given on the command line); an id the table gives must be valid.
    """
    from sts.cohort.ids import safe_id

    csv_path = Path(csv_path)
    raw = read_table(csv_path)
    if classes is None and "label" not in raw.columns:
        raw["label"] = ""
    missing = [c for c in ("file", "label") if c not in raw.columns]
    if missing:
        raise ValueError(f"{csv_path}: missing column(s) {missing}; columns are {list(raw.columns)}")
    given = [k for k in PROTOCOL_FIELDS if k in raw.columns]
    folder = csv_path.absolute().parent
    classes = tuple(classes) if classes is not None else None
    files = [Path(os.path.normpath(folder / n)) if n else None for n in map(_text, raw["file"])]  # absolute stay
    stem_id = safe_id if classes is None else str
    ids = [_text(row.get("specimen_id")) or (stem_id(f.stem) if f else "")
           for (_, row), f in zip(raw.iterrows(), files)]
    spellings = duplicate_ids(ids)
    rows = []
    for (_, row), file, sid in zip(raw.iterrows(), files, ids):
        reasons = []
        label = _text(row["label"])
        layout = LAYOUTS.get(file.suffix.lower(), "") if file else ""
        problem = id_problem(sid) if sid else "no specimen_id and no file to name it after"
        if problem:
            reasons.append(problem)
        elif sid.casefold() in spellings:
            reasons.append(duplicate_reason(sid, spellings[sid.casefold()], "CSV rows"))
        if classes is not None and label not in classes:
            reasons.append(f"label {label!r} not in classes {list(classes)}")
        if file is None:
            reasons.append("no file given")
        elif not file.is_file():
            reasons.append(f"file not found: {file}")
        if file is not None and not layout:
            reasons.append(f"unsupported file type {file.suffix or '(none)'!r} of {file.name} (expected .nwb or .abf)")
        protocol, problem = _protocol(row, given) if layout == "abf" else ({}, "")  # only ABF uses one
        if problem:
            reasons.append(problem)
        rows.append({
            "specimen_id": sid, "dataset": _dataset(row.get("dataset")), "label": label,
            "file": str(file) if file else "", "layout": layout,
            **{k: protocol.get(k, math.nan) for k in given},
            "status": "excluded" if reasons else "ok", "reason": "; ".join(reasons),
        })
    columns = COLUMNS[:5] + given + COLUMNS[5:]
    return pd.DataFrame(rows, columns=columns)


def protocol_options(row) -> str:
    """``sts select-sweeps`` / ``sts ep-features`` options of a row's protocol; '' where it has none."""
    protocol = row_protocol(row)
    if protocol is None:
        return ""
    return " ".join(f"--{k.replace('_', '-')}={getattr(protocol, k)!r}" for k in PROTOCOL_FIELDS)  # '=': negatives


def row_protocol(row) -> Protocol | None:
    """The Protocol of a table row, or None where the row gives none (NWB files, ABF with sweepC)."""
    values = {k: row.get(k, math.nan) for k in PROTOCOL_FIELDS}
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values.values()):
        return None
    return Protocol(**{k: float(v) for k, v in values.items()})
