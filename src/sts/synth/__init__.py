"""Synthetic cohort generator: realistic fake cells as NWB files in the two real layouts.

Public API (others code against these names)::

    CLASSES = ("Pvalb", "Sst", "Vip/Lamp5", "Excitatory")
    DEFECTS = ("corrupt_file", "no_long_square", "no_spiking", "no_plus40", "nan_trace",
               "duplicate_id", "unsure_label")
    make_cohort(n_cells, seed, defect_fraction=0.05) -> pandas.DataFrame
    write_cell(row, path) -> None

``dataset`` "clamp" is written as Allen NWB v1 (h5py), "seq" as MIES NWB 2 (pynwb).
Everything is deterministic in ``row["cell_seed"]``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np

from sts.io.atomic import atomic_path
from sts.synth.cohort import DEFECTS, make_cohort, simulate_cell
from sts.synth.models import CLASSES

__all__ = ["CLASSES", "DEFECTS", "make_cohort", "write_cell", "simulate_cell"]

CORRUPT_KEEP = 0.4  # corrupt_file keeps this fraction of the valid file's bytes


def write_cell(row: Mapping, path: str | Path) -> None:
    """Simulate the cell of one cohort row and write it to ``path`` atomically.

    The layout follows row["dataset"]; row["defect"] shapes the protocol or, for
    ``corrupt_file``, truncates the finished file to 40 % of its bytes.
    """
    cell = simulate_cell(row)
    meta_rng = np.random.default_rng([int(row["cell_seed"]), 1])  # metadata apart from physiology
    with atomic_path(path, Path(path).suffix) as tmp:
        if row["dataset"] == "clamp":
            from sts.synth.write_allen_v1 import write_allen_v1

            write_allen_v1(cell, tmp, meta_rng)
        elif row["dataset"] == "seq":
            from sts.synth.write_mies_nwb2 import write_mies_nwb2  # pynwb import is slow: only when needed

            write_mies_nwb2(cell, tmp, meta_rng)
        else:
            raise ValueError(f"unknown dataset {row['dataset']!r} (expected 'clamp' or 'seq')")
        if str(row.get("defect", "") or "") == "corrupt_file":
            with open(tmp, "r+b") as fh:
                fh.truncate(int(os.path.getsize(tmp) * CORRUPT_KEEP))
