"""Per-cell scalogram step: sweeps file in, ``scalogram`` dataset (2, n_freqs, n_times) out."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from sts.h5io import atomic_h5, read_attrs, write_attrs
from sts.scalogram import cwt, default_freqs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScalogramParams:
    wavelet: str = "mexh"
    fmin_hz: float = 20.0
    fmax_hz: float = 200.0
    n_freqs: int = 180

    @property
    def freqs_hz(self) -> np.ndarray:
        return default_freqs(self.fmin_hz, self.fmax_hz, self.n_freqs)


def scalogram_of(traces_mv: np.ndarray, fs_hz: float, params: ScalogramParams) -> np.ndarray:
    """(2, n_freqs, n_times) float32 CWT of a cell's two sweeps (what ``scalogram_file`` stores)."""
    coefs = cwt(np.asarray(traces_mv).astype(np.float64), fs_hz, params.freqs_hz, wavelet=params.wavelet)
    return coefs.astype(np.float32)


def scalogram_file(sweeps_path: str | Path, out_path: str | Path, params: ScalogramParams) -> str:
    """Write the cell's scalogram (float32; channel 0 rheobase, 1 rheobase + 40 pA).

    An excluded cell passes through: its output carries the status and reason, no data.
    Returns the status.
    """
    with h5py.File(sweeps_path, "r") as f:
        attrs = read_attrs(f)
        traces = f["traces_mv"][()] if "traces_mv" in f else None
    status = attrs.get("status", "excluded")
    if status == "ok" and traces is None:
        raise ValueError(f"{sweeps_path}: status ok but no traces_mv dataset")
    freqs = params.freqs_hz
    fs_hz = float(attrs["fs_hz"])
    with atomic_h5(out_path) as out:
        if status == "ok":
            out.create_dataset("scalogram", data=scalogram_of(traces, fs_hz, params))
        write_attrs(out, attrs)
        write_attrs(
            out,
            {"freqs_hz": freqs, "fs_hz": fs_hz, "wavelet": params.wavelet, "sweeps_file": str(sweeps_path)},
        )
    if status != "ok":
        log.info("%s: excluded upstream (%s)", attrs.get("specimen_id"), attrs.get("reason"))
    return status
