"""The study's four classes (Pvalb, Sst, Vip/Lamp5, Excitatory) from metadata or its label file
(other class schemes of patch-seq T-types: ``sts.acquire.schemes``).

All mapping rules live in this one table-like module, so a correction is one edit
(DATA_FORMATS.md §3):

* Allen Cell Types 2019 (NWB v1): spiny or sparsely spiny dendrites -> Excitatory; aspiny
  cells by Cre line prefix (Pvalb -> Pvalb, Sst -> Sst, Vip / Htr3a / Ndnf / Lamp5 -> Vip/Lamp5).
* Patch-seq 2020 (DANDI 000020), from the Gouwens 2020 metadata that ipfx ships
  (``ipfx/data_release/20200625_patchseq_metadata_mouse.csv``; T-type column
  ``corresponding_AIT2.3.1_alias``, dendrites ``dendrite_type``):
  - a cell with a T-type: its first word is the subclass; Pvalb -> Pvalb, Sst -> Sst;
    Vip, Lamp5, Sncg and Serpinf1 (the CGE-derived interneurons) -> Vip/Lamp5; excitatory
    subclasses (L2/3 IT, L4, L5 ET, ...) -> Excitatory. The T-type decides even when the
    dendrites are (sparsely) spiny (a few Sst and Vip cells are).
  - a cell without a T-type: spiny or sparsely spiny dendrites -> Excitatory.
  These rules reproduce the study's label file for 4,219 of its 4,220 seq cells (the one
  Meis2 cell, Vip/Lamp5 in the study, stays Unsure); tests/test_labels_patchseq.py measures it.
* Anything else -> Unsure (excluded downstream with that reason).
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sts.settings import AcquireSettings, default

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

UNSURE = "Unsure"
SPINY = {"spiny", "sparsely spiny"}
CRE_PREFIX = {"Pvalb": "Pvalb", "Sst": "Sst", "Vip": "Vip/Lamp5", "Htr3a": "Vip/Lamp5", "Ndnf": "Vip/Lamp5",
              "Lamp5": "Vip/Lamp5"}
TTYPE_SUBCLASS = {"Pvalb": "Pvalb", "Sst": "Sst", "Vip": "Vip/Lamp5", "Lamp5": "Vip/Lamp5",
                  "Sncg": "Vip/Lamp5", "Serpinf1": "Vip/Lamp5"}
EXCITATORY_TTYPE_PREFIX = ("L2/3", "L4", "L5", "L6", "L2", "IT", "ET", "NP", "CT")

# The Gouwens 2020 mouse patch-seq metadata as shipped inside the ipfx package (4,435 cells).
PATCHSEQ_PACKAGE = "ipfx"
PATCHSEQ_RESOURCE = ("data_release", "20200625_patchseq_metadata_mouse.csv")
MAX_METADATA_BYTES = 100 * 2**20  # the shipped file is ~1.5 MB


@dataclass(frozen=True)
class PatchseqColumns:
    """Column names of a patch-seq metadata table (defaults: the shipped ipfx file).
    ``dendrite`` None: no dendrite rule (cells without a T-type stay Unsure)."""

    specimen_id: str = default(AcquireSettings, "patchseq_id_column")
    ttype: str = default(AcquireSettings, "patchseq_ttype_column")
    dendrite: str | None = default(AcquireSettings, "patchseq_dendrite_column")


def label_from_allen(transgenic_line, dendrite_type) -> str:
    """Class of a 2019 cell from its Cre line and dendrite type (strings; NaN tolerated)."""
    dendrite = text_value(dendrite_type).lower()
    if dendrite in SPINY:
        return "Excitatory"
    line = text_value(transgenic_line)
    if dendrite == "aspiny":
        for prefix, label in CRE_PREFIX.items():
            if line.startswith(prefix):
                return label
    return UNSURE


def label_from_ttype(ttype, dendrite_type=None) -> str:
    """Class of a patch-seq cell from its T-type (e.g. 'Vip Crispld2 Kcne4' -> Vip/Lamp5) and,
    for a cell without one, its dendrite type (strings; NaN tolerated)."""
    text = text_value(ttype)
    if not text:
        return "Excitatory" if text_value(dendrite_type).lower() in SPINY else UNSURE
    first = text.split()[0]
    if first in TTYPE_SUBCLASS:
        return TTYPE_SUBCLASS[first]
    if text.startswith(EXCITATORY_TTYPE_PREFIX):
        return "Excitatory"
    return UNSURE


def text_value(value) -> str:
    """A metadata cell as stripped text ('' for None, NaN or 'nan')."""
    text = "" if value is None else str(value).strip()
    return "" if text.lower() == "nan" else text


def unsure_reason(ttype, dendrite_type, scheme: str) -> str:
    """Why a cell gets no class under ``scheme`` (its T-type, or its lack of one)."""
    text = text_value(ttype)
    if not text:
        return f"no T-type (dendrites {text_value(dendrite_type) or 'unknown'}): no class in scheme {scheme}"
    return f"T-type {text!r} is not a class of scheme {scheme}"


def study_label(ttype, dendrite_type=None) -> tuple[str, str]:
    """(class, '') of a patch-seq cell under the study's rules (``label_from_ttype``), or (Unsure, reason)."""
    label = label_from_ttype(ttype, dendrite_type)
    return label, "" if label != UNSURE else unsure_reason(ttype, dendrite_type, "study")


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


def shipped_patchseq_metadata() -> Path:
    """Path of the patch-seq metadata CSV inside the installed ipfx (found without importing it)."""
    spec = importlib.util.find_spec(PATCHSEQ_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{PATCHSEQ_PACKAGE} is not installed: give the patch-seq metadata CSV explicitly")
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*PATCHSEQ_RESOURCE)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not in this {PATCHSEQ_PACKAGE} installation; give the CSV explicitly")
    return path


def patchseq_labels(path: str | Path | None = None, columns: PatchseqColumns = PatchseqColumns(),
                    scheme=None) -> pd.DataFrame:  # fmt: skip
    """specimen_id, ttype, dendrite_type, label and reason (why a cell is Unsure; '' when it has a
    class) for every cell of a patch-seq metadata CSV (None: the shipped ipfx file), under ``scheme``
    (a ``sts.acquire.schemes.Scheme``; None: the study's rules). A repeated specimen_id keeps its
    first row."""
    import pandas as pd  # here, so that `sts`'s parser (which reads PatchseqColumns) stays light

    label = scheme.label if scheme is not None else study_label

    path = Path(path) if path else shipped_patchseq_metadata()
    size = path.stat().st_size
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"{path}: {size} bytes, more than the {MAX_METADATA_BYTES} accepted for a metadata table")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    wanted = [c for c in (columns.specimen_id, columns.ttype, columns.dendrite) if c]
    missing = [c for c in wanted if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: no column(s) {missing}; columns are {list(table.columns)[:25]}")
    out = pd.DataFrame({
        "specimen_id": table[columns.specimen_id].str.strip(),
        "ttype": table[columns.ttype].str.strip(),
        "dendrite_type": table[columns.dendrite].str.strip() if columns.dendrite else "",
    })
    out = out[out["specimen_id"] != ""]
    repeated = int(out["specimen_id"].duplicated().sum())
    if repeated:
        log.warning("%s: %d repeated specimen ids, first row kept", path, repeated)
        out = out.drop_duplicates("specimen_id")
    labelled = [label(t, d) for t, d in zip(out["ttype"], out["dendrite_type"])]
    out["label"] = [label for label, _ in labelled]
    out["reason"] = [reason for _, reason in labelled]
    return out.reset_index(drop=True)


def write_patchseq_labels(metadata_csv: str | Path | None, out_csv: str | Path,
                          columns: PatchseqColumns = PatchseqColumns(), scheme=None) -> pd.DataFrame:
    """``sts labels patchseq``: ``specimen_id,label,reason`` for every cell of the metadata under
    ``scheme`` (reason: why an Unsure cell has no class), written atomically."""
    from sts.io.atomic import write_csv_atomic

    table = patchseq_labels(metadata_csv, columns, scheme)[["specimen_id", "label", "reason"]]
    write_csv_atomic(out_csv, table)
    log.info("%d cells: %s", len(table), table["label"].value_counts().to_dict())
    for reason, n in table.loc[table["reason"] != "", "reason"].value_counts().items():
        log.info("excluded %d: %s", n, reason)
    return table
