"""Atomic file writes, for every output of the package.

Each file is written under a temporary name in its own folder and moved onto its real name
with ``os.replace`` only once complete: a killed job never leaves a half-written output, and a
reader never sees one. The temporary file is removed when the write fails.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a fresh temporary path next to ``path`` (parents created); when the block ends
    without an exception it replaces ``path``, with the usual permissions (umask), else it is
    removed. ``suffix`` keeps the extension for writers that look at it (``savefig``, h5py)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int = 2, allow_nan: bool = True) -> None:
    """``obj`` as JSON (numpy scalars and arrays, paths converted)."""
    write_text_atomic(path, json.dumps(obj, indent=indent, default=_json_default, allow_nan=allow_nan) + "\n")


def write_csv_atomic(path: str | os.PathLike, frame) -> None:
    """A pandas DataFrame as CSV, without its index."""
    with atomic_path(path, ".csv") as tmp:
        frame.to_csv(tmp, index=False)


def save_figure_atomic(fig, path: str | os.PathLike, dpi: int = 120, **savefig) -> None:
    """A matplotlib figure as PNG (``bbox_inches="tight"`` unless given)."""
    savefig.setdefault("bbox_inches", "tight")
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", **savefig)


def save_torch_atomic(obj, path: str | os.PathLike) -> None:
    """``torch.save`` of plain containers of tensors (loadable with ``weights_only=True``)."""
    import torch

    with atomic_path(path, ".pt") as tmp:
        torch.save(obj, tmp)


@contextmanager
def atomic_h5(path: str | os.PathLike):
    """Yield an ``h5py.File`` open for writing; it replaces ``path`` when the block succeeds."""
    import h5py

    with atomic_path(path, ".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            yield f
