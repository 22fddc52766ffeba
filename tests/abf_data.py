"""Real ABF files for the ABF and local-cohort tests, with synthetic cells' responses.

``writeABF1`` (pyabf's only writer) makes ABF1 files without a command waveform. For the
command-waveform path, ``write_abf1_epochs`` re-writes such a file with the extended ABF1
header (6144 bytes, version 1.83) and an epoch table (holding, step with a level increment
per sweep, holding), at the byte offsets pyabf's ABF1 header reader uses; pyabf then builds
``sweepC`` from that table itself.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pyabf.abfWriter import writeABF1

from sts.synth import models
from sts.synth import protocol as pr
from sts.synth.cohort import _simulate

FS_HZ = 20000.0
SWEEP_S = 2.3
STEP_S = pr.STEP_DUR_S  # the models' long square lasts 1 s


@dataclass
class Ladder:
    """Responses (mV) of one model cell to long squares first + k * step, and its true rheobase."""

    amplitudes_pa: list[float]  # first + k * step
    responses_mv: np.ndarray  # (n_sweeps, n)
    rheobase_pa: float | None  # lowest amplitude with a model spike during the step
    onset_s: float


def simulate_ladder(cls: str, seed: int, n_sweeps: int = 10, onset_s: float = 0.5, step_pa: float = 20.0,
                    first_pa: float | None = None) -> Ladder:
    """Long squares from 3 steps below the model's estimated rheobase upwards; or, with
    ``first_pa`` (e.g. negative, for ipfx's subthreshold features), from there up to at least
    3 steps above the estimated rheobase (more sweeps than ``n_sweeps`` if needed)."""
    rng = np.random.default_rng(seed)
    p = models.draw_params(cls, rng)
    top = step_pa * round(p.rheobase_est_pa / step_pa)
    if first_pa is None:
        first = top - 3 * step_pa
    else:
        first, n_sweeps = first_pa, max(n_sweeps, int((top - first_pa) // step_pa) + 4)
    amps = [first + k * step_pa for k in range(n_sweeps)]
    sweeps = [pr.Sweep("long_square", a, dur_s=SWEEP_S) for a in amps]
    _, responses, times = _simulate(p, sweeps, FS_HZ, onset_s, 0.0, rng)
    spiking = [a for a, t in zip(amps, times) if a > 0 and np.any((t >= onset_s) & (t < onset_s + STEP_S))]
    return Ladder(amps, np.stack(responses), min(spiking) if spiking else None, onset_s)


def write_abf1(path: Path, data: np.ndarray, units: str = "mV") -> Path:
    writeABF1(np.asarray(data, dtype=float), str(path), FS_HZ, units=units)
    return path


# ABF1 header: byte offsets of the fields set below (as read by pyabf.abf1.headerV1).
EXTENDED_HEADER_BYTES = 6144
_OFFSETS = {
    "fFileVersionNumber": 4, "lDataSectionPtr": 40, "sDACChannelUnit": 1346, "nWaveformEnable": 2296,
    "nWaveformSource": 2300, "nEpochType": 2308, "fEpochInitLevel": 2348, "fEpochLevelInc": 2428,
    "lEpochInitDuration": 2508,
}


def write_abf1_epochs(path: Path, data_mv: np.ndarray, hold_points: int, step_points: int,
                      first_pa: float, step_pa: float, dac_unit: str = "pA") -> Path:
    """ABF1 with an epoch-table command on DAC 0: after pyabf's pre-sweep holding (1/64 of the
    sweep), holding 0 for ``hold_points``, then the step (first + k * step) for ``step_points``."""
    raw = Path(str(path) + ".raw")
    writeABF1(np.asarray(data_mv, dtype=float), str(raw), FS_HZ, units="mV")
    body = raw.read_bytes()
    raw.unlink()
    header = bytearray(body[:2048]) + bytearray(EXTENDED_HEADER_BYTES - 2048)
    o = _OFFSETS
    struct.pack_into("f", header, o["fFileVersionNumber"], 1.83)
    struct.pack_into("i", header, o["lDataSectionPtr"], EXTENDED_HEADER_BYTES // 512)
    struct.pack_into("8s", header, o["sDACChannelUnit"], dac_unit.ljust(8).encode())
    struct.pack_into("2h", header, o["nWaveformEnable"], 1, 0)
    struct.pack_into("2h", header, o["nWaveformSource"], 1, 0)  # 1 = epoch table
    struct.pack_into("3h", header, o["nEpochType"], 1, 1, 0)  # step, step, off
    struct.pack_into("2f", header, o["fEpochInitLevel"], 0.0, first_pa)
    struct.pack_into("2f", header, o["fEpochLevelInc"], 0.0, step_pa)
    struct.pack_into("2i", header, o["lEpochInitDuration"], hold_points, step_points)
    Path(path).write_bytes(bytes(header) + body[2048:])
    return Path(path)
