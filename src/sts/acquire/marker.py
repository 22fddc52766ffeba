"""The placeholder written where a cell's NWB file should be when it cannot be had.

A 404, a file that fails verification or a cell excluded before download still gets
``{nwb_dir}/{specimen_id}.nwb``: a tiny HDF5 file whose root attribute ``sts_unavailable``
holds the reason. ``sts.recordings.open_recording`` raises NwbReadError with that reason, so the
cell flows through sweep selection and ends as an excluded manifest row instead of
failing the DAG.
"""

from __future__ import annotations

from pathlib import Path

from sts.io.atomic import atomic_h5

ATTR = "sts_unavailable"


def write_marker(path: str | Path, specimen_id: str, reason: str) -> None:
    with atomic_h5(path) as f:
        f.attrs[ATTR] = f"cell {specimen_id}: {reason}"
        f.attrs["specimen_id"] = str(specimen_id)


def read_marker(f) -> str | None:
    """The reason stored in an open h5py.File, or None for a real NWB file."""
    value = f.attrs.get(ATTR)
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
