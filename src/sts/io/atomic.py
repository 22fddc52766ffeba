"""Atomic file writes, for every output of the package.

Each file is written under a temporary name in its own folder and moved onto its real name
with ``os.replace`` only once complete: a killed job never leaves a half-written output, and a
reader never sees one. The temporary file is removed when the write fails; one left by a writer
killed outright (SIGKILL, out of memory) is removed by the next write of the same file, which
knows it from its name: ``.<name>.tmp-<host hash>-<pid>-...``, a process of this host that is gone
(never another host's: a shared file system may hold a live writer's file there).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
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
    _remove_orphans(path)
    fd, name = tempfile.mkstemp(prefix=f"{_temp_prefix(path)}{os.getpid()}-", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _temp_prefix(path: Path) -> str:
    """Of fixed length beside the name (the host hashed): a name of up to 200 characters, as ids
    allow (``sts.cohort.ids``), stays under the file systems' 255 bytes with any host name."""
    host = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
    return f".{path.name}.tmp-{host}-"


def _remove_orphans(path: Path) -> None:
    """Temporary files of ``path`` left by writers of this host that no longer run."""
    prefix = _temp_prefix(path)
    try:
        entries = [e.name for e in os.scandir(path.parent) if e.name.startswith(prefix)]
    except OSError:
        return
    for name in entries:
        pid = name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            (path.parent / name).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


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
