"""What the readers share: the error type, unit handling, the reader interface (NWB and ABF)."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

import h5py


class NwbReadError(Exception):
    """A file, or a sweep in it, that cannot be read; the message names both."""


def decode(value) -> str:
    """HDF5 strings arrive as str, bytes or 0-d/1-element arrays of either."""
    if isinstance(value, np.ndarray):
        value = value.item() if value.size == 1 else value.tolist()[0]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


# Scale to mV (response) or pA (stimulus), keyed by the unit string as written in files.
_TO_MV = {"volts": 1e3, "volt": 1e3, "v": 1e3, "mv": 1.0, "millivolts": 1.0}
_TO_PA = {"amperes": 1e12, "amps": 1e12, "ampere": 1e12, "a": 1e12, "pa": 1.0, "picoamperes": 1.0}


def series_values(ds: h5py.Dataset, target: str, default_unit: str) -> np.ndarray:
    """Dataset values in mV (target='mV') or pA (target='pA'), applying conversion and offset.

    NWB stores value_in_unit = data * conversion + offset; the unit says volts or amperes.
    """
    raw = ds[()].astype(np.float64)
    conversion = float(ds.attrs.get("conversion", 1.0))
    offset = float(ds.attrs.get("offset", 0.0))
    unit = decode(ds.attrs.get("unit", default_unit)).strip().lower()
    table = _TO_MV if target == "mV" else _TO_PA
    if unit not in table:
        raise NwbReadError(f"{ds.file.filename}: {ds.name} has unit {unit!r}, expected {target}-convertible")
    return (raw * conversion + offset) * table[unit]


class Recording(ABC):
    """Interface of a per-cell recording, whatever its file format."""

    layout = ""
    path = ""
    # Whether stimulus names identify long squares (Allen, MIES, NWB 2 descriptions); ABF protocol
    # file names are each lab's own, so any sweep with a detected step counts there.
    named_protocols = True

    def epochs(self, sweep_number: int):
        """The sweep's command as an ``sts.steps.Epochs`` table when the file has one, else None
        (the command trace is then segmented)."""
        return None

    @property
    @abstractmethod
    def sweep_numbers(self) -> list[int]: ...

    @abstractmethod
    def stimulus_name(self, sweep_number: int) -> str: ...

    @abstractmethod
    def fs_hz(self, sweep_number: int) -> float: ...

    @abstractmethod
    def stimulus_pa(self, sweep_number: int) -> np.ndarray:
        """Injected current (pA), float64."""

    @abstractmethod
    def response_mv(self, sweep_number: int) -> np.ndarray:
        """Membrane potential (mV), float64."""

    @abstractmethod
    def close(self) -> None: ...

    def load(self, sweep_number: int) -> tuple[np.ndarray, np.ndarray]:
        """(stimulus_pa, response_mv), float64 arrays cut to a common length (truncated sweeps)."""
        stimulus, response = self.stimulus_pa(sweep_number), self.response_mv(sweep_number)
        size = min(stimulus.size, response.size)
        return stimulus[:size], response[:size]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class NwbRecording(Recording):
    """An open NWB (HDF5) file; the layouts say where a sweep's stimulus and response series are."""

    def __init__(self, f: h5py.File):
        self.file = f
        self.path = f.filename

    @abstractmethod
    def _series(self, sweep_number: int, which: str) -> np.ndarray:
        """The sweep's 'stimulus' (pA) or 'response' (mV) series, float64."""

    def stimulus_pa(self, sweep_number: int) -> np.ndarray:
        return self._series(sweep_number, "stimulus")

    def response_mv(self, sweep_number: int) -> np.ndarray:
        return self._series(sweep_number, "response")

    def close(self) -> None:
        self.file.close()
