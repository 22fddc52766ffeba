"""What the readers share: the error type, unit handling, the reader interface (NWB and ABF),
and the checks that keep a hostile file from crashing a job or exhausting its memory.

Files from outside are hostile input: everything a reader takes from a file is checked before
use. Sampling rates are finite numbers in ``RATE_RANGE_HZ``; ``conversion`` and ``offset`` are
finite numbers; a series is a 1-D numeric dataset stored in the file itself (no HDF5 external
raw-data files, no virtual datasets: they would pull other local files into a sweep) whose
declared size fits ``MAX_SWEEP_S`` at the sweep's rate and ``MAX_SWEEP_SAMPLES``, checked
before it is read; one recording reads at most ``MAX_FILE_SAMPLES`` samples in all. Any
violation is an ``NwbReadError`` naming the file, the sweep and the cause.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np

import h5py

MAX_SWEEP_S = 200.0  # no current-clamp sweep is longer (Allen's noise sweeps: ~30 s)
MAX_SWEEP_SAMPLES = 20_000_000  # 100 s at 200 kHz; 160 MB as float64
MAX_FILE_SAMPLES = 100_000_000  # all series read from one file (a cell's long squares: ~3e7 at 200 kHz)
RATE_RANGE_HZ = (100.0, 10_000_000.0)  # plausible digitiser rates
MAX_METADATA_ELEMENTS = 4096  # names, timestamps heads, table columns: small datasets only


class NwbReadError(Exception):
    """A file, or a sweep in it, that cannot be read; the message names both."""


def decode(value) -> str:
    """HDF5 strings arrive as str, bytes or 0-d/1-element arrays of either ('' for an empty array)."""
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return ""
        value = value.reshape(-1)[0].item() if value.dtype.kind != "O" else value.reshape(-1)[0]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def shown(value, limit: int = 60) -> str:
    """A file's value for a message, cut short (attributes can hold kilobytes)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def finite_number(value) -> float | None:
    """The value of a numeric scalar (or 1-element numeric array) attribute when finite, else None
    (text, NaN, inf, booleans, references, arrays)."""
    try:
        arr = np.asarray(value)
    except Exception:  # objects numpy cannot wrap
        return None
    if arr.size != 1 or arr.dtype.kind not in "iuf":
        return None
    number = float(arr.reshape(-1)[0])
    return number if math.isfinite(number) else None


def int_attr(value) -> int | None:
    """A sweep number from an attribute: an integer (or integral float) scalar, else None."""
    number = finite_number(value)
    return int(number) if number is not None and number == int(number) else None


def sampling_rate(value, where: str) -> float:
    """A sweep's sampling rate (Hz) from the file, checked: a finite number in RATE_RANGE_HZ."""
    rate = finite_number(value)
    lo, hi = RATE_RANGE_HZ
    if rate is None or not lo <= rate <= hi:
        raise NwbReadError(f"{where}: sampling rate {shown(value)} is not a number of {lo:g}-{hi:g} Hz")
    return rate


def max_samples(fs_hz: float) -> int:
    """The most samples a sweep at ``fs_hz`` may declare: MAX_SWEEP_S at that rate, at most MAX_SWEEP_SAMPLES."""
    return min(int(math.ceil(MAX_SWEEP_S * fs_hz)), MAX_SWEEP_SAMPLES)


def check_dataset(ds, where: str, limit: int, numeric: bool = True) -> h5py.Dataset:
    """``ds`` if it is safe to read: an HDF5 dataset whose data lie in its own file (no external
    raw-data files, no virtual dataset), of at most ``limit`` elements (chunks: MAX_SWEEP_SAMPLES) and, when
    ``numeric``, of an integer or float type; else NwbReadError."""
    if not isinstance(ds, h5py.Dataset):
        raise NwbReadError(f"{where}: {getattr(ds, 'name', ds)} is not an HDF5 dataset")
    if ds.external:
        files = ", ".join(sorted({decode(e[0]) for e in ds.external}))
        raise NwbReadError(f"{where}: {ds.name} keeps its data in other files ({shown(files, 120)}): "
                           "HDF5 external storage is refused")  # fmt: skip
    if ds.shape is None:  # null dataspace: h5py returns h5py.Empty, not an array
        raise NwbReadError(f"{where}: {ds.name} holds no data (empty dataspace)")
    if ds.is_virtual:
        try:
            files = ", ".join(sorted({str(m.file_name) for m in ds.virtual_sources()}))
        except Exception:  # the mapping itself may be damaged
            files = "unreadable mapping"
        raise NwbReadError(f"{where}: {ds.name} is a virtual dataset (data from {shown(files, 120)}): refused")
    if ds.size > limit or (ds.chunks and math.prod(ds.chunks) > MAX_SWEEP_SAMPLES):  # a chunk is read whole
        raise NwbReadError(f"{where}: {ds.name} declares shape {ds.shape} (chunks {ds.chunks}), "
                           f"more than the {limit} values allowed here")  # fmt: skip
    if numeric and ds.dtype.kind not in "iuf":
        raise NwbReadError(f"{where}: {ds.name} holds {ds.dtype} values, not numbers")
    return ds


def read_small(ds, where: str, limit: int = MAX_METADATA_ELEMENTS, numeric: bool = False) -> np.ndarray:
    """The values of a small metadata dataset (names, table columns), checked first."""
    return np.asarray(check_dataset(ds, where, limit, numeric)[()])


def from_hdf5(err: BaseException) -> bool:
    """Whether ``err`` was raised in h5py's compiled layer: the HDF5 library failing on the file's
    content (damaged structure, addresses past the end...), whatever Python type h5py gave it
    (RuntimeError, ValueError, KeyError...); not an error of our Python code."""
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    name = tb.tb_frame.f_code.co_filename.replace("\\", "/")
    return name.startswith("h5py/") and name.endswith(".pyx")


def external_link(f: h5py.File) -> str | None:
    """The first HDF5 external link of the file ('name -> file:path'), or None.

    Following one opens another local file (a FIFO would hang the job): a recording must be
    self-contained. The links are listed without being followed."""

    def visit(name, info):  # low-level visit: ~4 us a link (h5py's visititems_links: ~300 us)
        return name if info.type == h5py.h5l.TYPE_EXTERNAL else None

    name = f.id.links.visit(visit, info=True)
    if name is None:
        return None
    name = name.decode("utf-8", "replace")
    link = f.get(name, getlink=True)
    return f"/{name} -> {shown(link.filename, 200)}:{shown(link.path, 200)}"


# Scale to mV (response) or pA (stimulus), keyed by the unit string as written in files.
_TO_MV = {"volts": 1e3, "volt": 1e3, "v": 1e3, "mv": 1.0, "millivolts": 1.0}
_TO_PA = {"amperes": 1e12, "amps": 1e12, "ampere": 1e12, "a": 1e12, "pa": 1.0, "picoamperes": 1.0}


def series_values(ds: h5py.Dataset, target: str, default_unit: str, where: str, limit: int,
                  start: int = 0, count: int | None = None, why: str = "") -> np.ndarray:
    """Values [start, start + count) of a 1-D series dataset in mV (target='mV') or pA
    (target='pA'), applying conversion and offset; ``limit``: the most samples it may hold
    (``max_samples`` of the sweep's rate; ``why`` says so in the error), checked before reading.
    ``where`` names the file and sweep in errors.

    NWB stores value_in_unit = data * conversion + offset; the unit says volts or amperes.
    """
    check_dataset(ds, where, MAX_FILE_SAMPLES)
    if ds.ndim != 1:
        raise NwbReadError(f"{where}: {ds.name} has shape {ds.shape}, not a 1-D series")
    count = ds.shape[0] - start if count is None else count
    if count > limit:
        why = why or f"{MAX_SWEEP_S:g} s at the sweep's rate, at most {MAX_SWEEP_SAMPLES}"
        raise NwbReadError(f"{where}: {ds.name} declares {count} samples, more than the {limit} allowed ({why})")
    if count < 2:
        raise NwbReadError(f"{where}: {ds.name} has no samples")
    values = {}
    for key, default in (("conversion", 1.0), ("offset", 0.0)):
        raw_attr = ds.attrs.get(key, default)
        values[key] = finite_number(raw_attr)
        if values[key] is None or (key == "conversion" and values[key] == 0):
            raise NwbReadError(f"{where}: {ds.name} has {key} {shown(raw_attr)}, not a finite (non-zero) number")
    unit = decode(ds.attrs.get("unit", default_unit)).strip().lower()
    table = _TO_MV if target == "mV" else _TO_PA
    if unit not in table:
        raise NwbReadError(f"{where}: {ds.name} has unit {shown(unit)}, expected {target}-convertible")
    raw = ds[start : start + count].astype(np.float64)
    return (raw * values["conversion"] + values["offset"]) * table[unit]


class Recording(ABC):
    """Interface of a per-cell recording, whatever its file format."""

    layout = ""
    path = ""
    # Whether stimulus names identify long squares (Allen, MIES, NWB 2 descriptions); ABF protocol
    # file names are each lab's own, so any sweep with a detected step counts there.
    named_protocols = True

    def epochs(self, sweep_number: int):
        """The sweep's command as an ``sts.recordings.steps.Epochs`` table when the file has one, else None
        (the command trace is then segmented)."""
        return None

    def command_info(self) -> dict:
        """Where the command came from (ABF: the DAC, its unit, the holding level), for the sweeps file."""
        return {}

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
        self._samples_left = MAX_FILE_SAMPLES  # what this file may still make us read

    @abstractmethod
    def _series(self, sweep_number: int, which: str) -> np.ndarray:
        """The sweep's 'stimulus' (pA) or 'response' (mV) series, float64."""

    def _values(self, ds, sweep_number: int, which: str, start: int = 0, count: int | None = None) -> np.ndarray:
        """``series_values`` of the sweep's 'stimulus' or 'response' dataset, within the sweep's
        bound (its rate) and what is left of the file's."""
        where = f"{self.path}: the {which} of sweep {sweep_number}"
        fs_hz = self.fs_hz(sweep_number)
        limit, why = max_samples(fs_hz), f"{MAX_SWEEP_S:g} s at {fs_hz:g} Hz, at most {MAX_SWEEP_SAMPLES}"
        if self._samples_left < limit:
            limit, why = self._samples_left, f"what is left of the {MAX_FILE_SAMPLES} samples read from one file"
        target, unit = ("pA", "amperes") if which == "stimulus" else ("mV", "volts")
        values = series_values(ds, target, unit, where, limit, start, count, why)
        self._samples_left -= values.size
        # A command current must be finite everywhere; a response may carry NaN gaps (sweep
        # selection names them) but not infinities (overflowing conversion or offset).
        bad = ~np.isfinite(values) if which == "stimulus" else np.isinf(values)
        if bad.any():
            kind = "non-finite" if which == "stimulus" else "infinite"
            raise NwbReadError(f"{where}: {ds.name} has {int(bad.sum())} {kind} values")
        return values

    def stimulus_pa(self, sweep_number: int) -> np.ndarray:
        return self._series(sweep_number, "stimulus")

    def response_mv(self, sweep_number: int) -> np.ndarray:
        return self._series(sweep_number, "response")

    def close(self) -> None:
        self.file.close()


class GroupPerSeries(NwbRecording):
    """Layouts with one TimeSeries group per sweep and kind (Allen NWB v1, MIES NWB 2)."""

    @abstractmethod
    def _group(self, sweep_number: int, which: str) -> str:
        """HDF5 path of the sweep's 'stimulus' or 'response' TimeSeries (KeyError: none)."""

    def fs_hz(self, n: int) -> float:
        try:
            rate = self.file[f"{self._group(n, 'response')}/starting_time"].attrs["rate"]
        except (KeyError, OSError) as err:
            raise NwbReadError(f"{self.path}: sweep {n} has no sampling rate") from err
        return sampling_rate(rate, f"{self.path}: sweep {n}")

    def _series(self, n: int, which: str) -> np.ndarray:
        try:
            return self._values(self.file[f"{self._group(n, which)}/data"], n, which)
        except (KeyError, OSError) as err:
            raise NwbReadError(f"{self.path}: cannot read the {which} of sweep {n}: {err}") from err
