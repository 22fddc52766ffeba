"""Small HDF5 helpers for per-cell files: atomic writes and attribute round-trips."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np


@contextmanager
def atomic_h5(path: str | Path):
    """Yield an h5py.File written to a temporary name, renamed onto ``path`` only on success.

    A job killed mid-write leaves no half-written output under the real name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            yield f
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_attrs(obj, attrs: dict) -> None:
    """Store a flat dict as HDF5 attributes (None becomes '', lists become arrays)."""
    for key, value in attrs.items():
        if value is None:
            value = ""
        elif isinstance(value, (list, tuple)):
            value = np.asarray(value)
        obj.attrs[key] = value


def read_attrs(obj) -> dict:
    """HDF5 attributes as plain Python values (bytes decoded, 0-d arrays unpacked)."""
    out = {}
    for key, value in obj.attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out
