"""The study's four classes (Pvalb, Sst, Vip/Lamp5, Excitatory) from metadata or its label file.

All mapping rules live in this one table-like module, so a correction is one edit
(DATA_FORMATS.md §3 marks the exact metadata names as unconfirmed):

* Allen Cell Types 2019 (NWB v1): spiny or sparsely spiny dendrites -> Excitatory; aspiny
  cells by Cre line prefix (Pvalb -> Pvalb, Sst -> Sst, Vip / Htr3a / Ndnf / Lamp5 -> Vip/Lamp5).
* Patch-seq 2020 (DANDI 000020): the first word of the transcriptomic type (T-type) is the
  subclass; Vip and Lamp5 merge; excitatory subclasses (L2/3 IT, L4, L5 ET, ...) -> Excitatory.
* Anything else -> Unsure (excluded downstream with that reason).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

UNSURE = "Unsure"
SPINY = {"spiny", "sparsely spiny"}
CRE_PREFIX = {"Pvalb": "Pvalb", "Sst": "Sst", "Vip": "Vip/Lamp5", "Htr3a": "Vip/Lamp5", "Ndnf": "Vip/Lamp5",
              "Lamp5": "Vip/Lamp5"}
TTYPE_SUBCLASS = {"Pvalb": "Pvalb", "Sst": "Sst", "Vip": "Vip/Lamp5", "Lamp5": "Vip/Lamp5"}
EXCITATORY_TTYPE_PREFIX = ("L2/3", "L4", "L5", "L6", "L2", "IT", "ET", "NP", "CT")


def label_from_allen(transgenic_line, dendrite_type) -> str:
    """Class of a 2019 cell from its Cre line and dendrite type (strings; NaN tolerated)."""
    dendrite = str(dendrite_type or "").strip().lower()
    if dendrite in SPINY:
        return "Excitatory"
    line = str(transgenic_line or "").strip()
    if dendrite == "aspiny":
        for prefix, label in CRE_PREFIX.items():
            if line.startswith(prefix):
                return label
    return UNSURE


def label_from_ttype(ttype) -> str:
    """Class of a patch-seq cell from its T-type (e.g. 'Vip Crispld2 Kcne4' -> Vip/Lamp5)."""
    text = str(ttype or "").strip()
    if not text or text.lower() == "nan":
        return UNSURE
    first = text.split()[0]
    if first in TTYPE_SUBCLASS:
        return TTYPE_SUBCLASS[first]
    if text.startswith(EXCITATORY_TTYPE_PREFIX):
        return "Excitatory"
    return UNSURE


def read_label_file(path: str | Path) -> dict[str, str]:
    """The study's label file (``Label specimen_id`` per line, space separated, no header)."""
    labels = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}:{number}: expected 'Label specimen_id', got {line!r}")
        labels[parts[1]] = parts[0]
    return labels


def read_ttypes(path: str | Path, id_column: str, ttype_column: str) -> dict[str, str]:
    """specimen_id -> T-type from a patch-seq metadata table (CSV)."""
    table = pd.read_csv(path, dtype=str)
    missing = [c for c in (id_column, ttype_column) if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: no column(s) {missing}; columns are {list(table.columns)[:20]}")
    return dict(zip(table[id_column].str.strip(), table[ttype_column].fillna("")))
