"""Per-cell scalogram step: sweeps file in, ``scalogram`` dataset (2, n_freqs, n_times) out.

Storage: float16 (the CNN's packed input is float16 already, so the network never sees more
precision; half the bytes of float32: 3.5 MB instead of 6.9 MB per cell at 180 x 4,800), one
HDF5 chunk per sweep, optionally compressed (gzip or lzf, each after HDF5's byte shuffle).
Files written before float16 (float32) are read the same way by every reader.
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np

from sts.io.atomic import atomic_h5
from sts.io.hdf5 import read_attrs, write_attrs
from sts.prep.scalogram import cwt
from sts.settings import ScalogramParams

log = logging.getLogger(__name__)

STORAGE_DTYPE = "float16"
def scalogram_of(traces_mv: np.ndarray, fs_hz: float, params: ScalogramParams) -> np.ndarray:
    """(2, n_freqs, n_times) float32 CWT of a cell's two sweeps (``as_stored`` rounds it for the file)."""
    coefs = cwt(np.asarray(traces_mv).astype(np.float64), fs_hz, params.freqs_hz, wavelet=params.wavelet)
    return coefs.astype(np.float32)


def as_stored(scalogram: np.ndarray, dtype=STORAGE_DTYPE) -> tuple[np.ndarray | None, str]:
    """The scalogram rounded to the file's storage type, or (None, reason) when a value would not
    survive it: beyond float16's range (|x| > 65504) it would become inf, so the cell is excluded
    rather than scaled (a scale would differ from cell to cell and change what the network sees).

    Within the QC range (|v| <= 150 mV) no coefficient of the default grid can pass 150 x the
    largest kernel's L1 norm (14.9 at 20 Hz): 2,232 (the synthetic cells peak near 280); only a
    trace far outside it (wrong units, QC off) reaches the limit.
    """
    with np.errstate(over="ignore"):  # an overflow is reported below, as the cell's reason
        stored = np.asarray(scalogram).astype(dtype)
    if np.isfinite(stored).all():
        return stored, ""
    if not np.isfinite(scalogram).all():
        return None, "non-finite scalogram values"
    peak = float(np.abs(scalogram).max())
    return None, (f"scalogram values beyond {np.dtype(dtype).name} range: max |coefficient| {peak:.4g} > "
                  f"{float(np.finfo(dtype).max):.6g} (is the trace in mV?)")  # fmt: skip


def dataset_options(shape: tuple[int, ...], compression: str) -> dict:
    """h5py ``create_dataset`` options: one chunk per sweep (a reader of one channel decompresses
    only it), byte shuffle before compression (the float16 exponent bytes compress well apart)."""
    options = {"chunks": (1, *shape[1:])}
    if compression != "none":
        options.update(compression=compression, shuffle=True)
    return options


def scalogram_file(sweeps_path: str | Path, out_path: str | Path, params: ScalogramParams) -> str:
    """Write the cell's scalogram (float16; channel 0 rheobase, 1 rheobase + 40 pA).

    An excluded cell passes through: its output carries the status and reason, no data; a cell
    whose scalogram does not fit float16 is excluded here, with the reason. Returns the status.
    """
    with h5py.File(sweeps_path, "r") as f:
        attrs = read_attrs(f)
        traces = f["traces_mv"][()] if "traces_mv" in f else None
    status = attrs.get("status", "excluded")
    if status == "ok" and traces is None:
        raise ValueError(f"{sweeps_path}: status ok but no traces_mv dataset")
    freqs = params.freqs_hz
    fs_hz = float(attrs["fs_hz"])
    stored = None
    if status != "ok":
        log.info("%s: excluded upstream (%s)", attrs.get("specimen_id"), attrs.get("reason"))
    else:
        stored, reason = as_stored(scalogram_of(traces, fs_hz, params))
        if stored is None:
            status = "excluded"
            attrs.update(status=status, reason=reason)
            log.warning("%s: excluded (%s)", attrs.get("specimen_id"), reason)
    with atomic_h5(out_path) as out:
        if stored is not None:
            out.create_dataset("scalogram", data=stored, **dataset_options(stored.shape, params.compression))
        write_attrs(out, attrs)
        write_attrs(
            out,
            {"freqs_hz": freqs, "fs_hz": fs_hz, "wavelet": params.wavelet, "sweeps_file": str(sweeps_path)},
        )
    return status
