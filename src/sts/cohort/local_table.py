"""Checks across the rows of the local cohort's label table (``local.labels``) that stop a
workflow run when its DAG is built, each problem named by its row.

Per row, ``sts.cohort.local.read_local_labels`` keeps every row and excludes the ones it cannot
use (with the reason in the manifest), so that ``sts predict --table`` can classify the rest. A
training run is stricter about two defects that are the table's, not the recording's: an id given
twice (which row is meant?) and a file that does not exist (a typo, or files not copied yet).
The messages are the exclusion reasons ``read_local_labels`` gives to the same rows.
The columns and their types are the schema's (workflow/schemas/local_cohort.schema.yaml).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sts.cohort.local import duplicate_ids, duplicate_reason

# The CSV's columns as read_local_labels reads them (the schema's properties; a test checks both agree).
from sts.settings import PROTOCOL_FIELDS

COLUMNS = ("file", "label", "specimen_id", "dataset", *PROTOCOL_FIELDS)


def row_name(index: int) -> str:
    """A data row as the schema's validation names it (``row i``, from 0) and as an editor shows
    it (the CSV's line, the header being line 1)."""
    return f"row {index} (line {index + 2})"


def table_problems(cells: pd.DataFrame) -> list[str]:
    """Duplicate ids and missing files of ``read_local_labels``' table (one row per CSV row, in order),
    one message per row; [] when there are none."""
    groups = duplicate_ids(cells["specimen_id"])
    problems = []
    for index, (sid, file) in enumerate(zip(cells["specimen_id"], cells["file"])):
        sid, file = str(sid), str(file)
        if sid and sid.casefold() in groups:
            problems.append(f"{row_name(index)}: {duplicate_reason(sid, groups[sid.casefold()], 'CSV rows')}")
        if file and not Path(file).is_file():
            problems.append(f"{row_name(index)}: file not found: {file}")
    return problems


def check_label_table(cells: pd.DataFrame, csv_path: str | Path) -> None:
    """Raise ValueError naming every row with a duplicate id or a missing file."""
    problems = table_problems(cells)
    if problems:
        raise ValueError(f"local.labels {csv_path}: fix these rows (or remove them):\n  " + "\n  ".join(problems))
