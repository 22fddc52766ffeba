"""Small HDF5 helpers for per-cell files: attribute round-trips (atomic writes: ``sts.io.atomic``)."""

from __future__ import annotations

import numpy as np


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
