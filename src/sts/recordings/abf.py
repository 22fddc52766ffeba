"""Axon Binary Format (ABF1 and ABF2, read with pyabf) behind the same interface as the NWB readers.

Sweeps are numbered 0..n-1 as in pyabf. The response is the first ADC channel in volts
(mV, V or µV, converted to mV); the injected current comes from the protocol's command
waveform of the paired DAC (pyabf's ``sweepC``: epoch table or stimulus file, converted to
pA). A file without a usable command waveform (e.g. ABF1 files written by
``pyabf.abfWriter.writeABF1``) needs a ``Protocol`` from its CSV row: sweep k steps to
``first_amplitude_pa + k * step_pa`` for ``duration_s`` from ``onset_s``, holding 0 pA elsewhere.
Sweeps whose command's longest deviation from holding is a square step of 0.5–2 s (test
pulses aside) are named "Long Square", so
``sts.sweeps.is_long_square`` accepts them as it does Allen's.

Hostile input: the header's sampling rate and sizes are checked before pyabf loads the data
(``sts.recordings.common``: rate range, ``MAX_SWEEP_S`` at that rate, ``MAX_SWEEP_SAMPLES``, no
more data than the file holds), and a command waveform from a stimulus file is used only when
that file lies in the ABF's own folder.
"""

from __future__ import annotations

import logging
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sts.recordings.common import MAX_FILE_SAMPLES, NwbReadError, Recording, max_samples, sampling_rate
from sts.settings import PROTOCOL_FIELDS

log = logging.getLogger(__name__)

LONG_SQUARE = "Long Square"  # Allen's name, one of sts.settings.ALLEN_LONG_SQUARE
LONG_SQUARE_S = (0.5, 2.0)  # step durations named LONG_SQUARE
SQUARE_TOLERANCE_PA = 0.5  # a step is square when its current varies less than this
# pyabf reads the ABF1 epoch table from the extended header (bytes 2296-2668); shorter headers
# (ABF < 1.6, writeABF1) have data there, not a waveform.
ABF1_EPOCH_TABLE_END = 2668

_TO_MV = {"mv": 1.0, "v": 1e3, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3}
_TO_PA = {"pa": 1.0, "na": 1e3, "ua": 1e6, "µa": 1e6, "μa": 1e6, "a": 1e12, "fa": 1e-3}
# Raw header fields checked before pyabf parses the header (it allocates lists of the declared counts).
ABF2_SECTIONS = 18  # section map: 16-byte entries (block, entry bytes, count) from byte 76
ABF1_TAGS = (44, 48, 64)  # lTagSectionPtr, lNumTagEntries offsets; bytes per tag
MAX_SWEEPS = 10_000  # a cell's protocol has tens of sweeps
NO_PROTOCOL = f"no command waveform and no protocol in the CSV row ({', '.join(PROTOCOL_FIELDS)})"


@dataclass(frozen=True)
class Protocol:
    """A long-square ladder given by the user for files without a command waveform."""

    first_amplitude_pa: float
    step_pa: float
    onset_s: float
    duration_s: float

    def __post_init__(self):
        values = [getattr(self, k) for k in PROTOCOL_FIELDS]
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"protocol values must be finite numbers: {dict(zip(PROTOCOL_FIELDS, values))}")
        if self.onset_s < 0 or self.duration_s <= 0:
            raise ValueError(f"protocol needs onset_s >= 0 and duration_s > 0 (got {self.onset_s}, {self.duration_s})")

    def amplitude_pa(self, k: int) -> float:
        return self.first_amplitude_pa + k * self.step_pa


def _unit_scale(unit: str, table: dict, path, what: str, where: str) -> float:
    key = unit.replace("\x00", "").strip().lower()
    if key not in table:
        raise NwbReadError(f"{path}: {where}: {what} has unit {unit.strip(chr(0))!r}, expected one of {sorted(table)}")
    return table[key]


def square_step(command_pa: np.ndarray) -> tuple[int, int, float] | None:
    """(onset index, length, amplitude pA) of the longest deviation from the holding level
    (the command's first value), if that deviation is a constant (square) step; else None."""
    holding = float(command_pa[0])
    dev = np.abs(command_pa - holding) > SQUARE_TOLERANCE_PA
    if not dev.any():
        return None
    edges = np.flatnonzero(np.diff(np.r_[0, dev.astype(np.int8), 0]))
    starts, stops = edges[::2], edges[1::2]
    k = int(np.argmax(stops - starts))
    seg = command_pa[starts[k] : stops[k]]
    if np.ptp(seg) > SQUARE_TOLERANCE_PA:
        return None
    return int(starts[k]), int(stops[k] - starts[k]), float(np.median(seg) - holding)


class AbfRecording(Recording):
    """One ABF file (a loaded ``pyabf.ABF``) with the NWB readers' interface."""

    layout = "abf"
    named_protocols = False  # protocol names are each lab's own: the detected step decides

    def __init__(self, abf, path: str | Path, protocol: Protocol | None = None):
        self.abf = abf
        self.path = str(path)
        self.protocol = protocol
        self.channel = self._voltage_channel()
        self._command: dict[int, np.ndarray] = {}
        unusable = self._read_command_waveform()
        self.command_source = "protocol" if unusable else "waveform"
        if protocol is not None and not unusable:
            log.info("%s: the file's command waveform is used; the CSV row's protocol is ignored", self.path)
        if self.command_source == "protocol":
            if protocol is None:
                raise NwbReadError(f"{self.path}: {NO_PROTOCOL} ({unusable})")
            end = protocol.onset_s + protocol.duration_s
            if end > abf.sweepLengthSec:
                raise NwbReadError(
                    f"{self.path}: the protocol's step ends at {end:g} s, after the sweep's end "
                    f"({abf.sweepLengthSec:g} s)"
                )

    def _voltage_channel(self) -> int:
        """The first ADC channel in volts; channel 0 (and an error on reading) if there is none."""
        for ch, unit in enumerate(self.abf.adcUnits):
            if unit.replace("\x00", "").strip().lower() in _TO_MV:
                return ch
        return 0

    def _dac_settings(self) -> tuple[int, int]:
        """(nWaveformEnable, nWaveformSource) of the DAC paired with the response channel."""
        dac = self.channel if self.abf.abfVersion["major"] == 2 or self.channel <= 1 else 0
        if self.abf.abfVersion["major"] == 1:
            header = self.abf._headerV1
            if header.lDataSectionPtr * 512 < ABF1_EPOCH_TABLE_END:
                return 0, 0
            return header.nWaveformEnable[dac], header.nWaveformSource[dac]
        section = self.abf._dacSection
        if dac >= len(section.nWaveformEnable):
            return 0, 0
        return section.nWaveformEnable[dac], section.nWaveformSource[dac]

    def _read_command_waveform(self) -> str:
        """Read the command of every sweep (pA) into self._command; '' if it is usable, else why not.

        Usable: a waveform is enabled (epoch table or stimulus file), pyabf can build it, it is
        finite (pyabf gives NaN when a stimulus file is missing) and it varies somewhere.
        """
        enabled, source = self._dac_settings()
        if not enabled or source not in (1, 2):
            return "the file has no command waveform"
        if source == 2:
            outside = self._stimulus_file_outside()
            if outside:
                return outside
        varying = False
        for n in self.sweep_numbers:
            try:
                self.abf.setSweep(n, channel=self.channel)
                command = np.asarray(self.abf.sweepC, dtype=np.float64)
            except Exception as err:  # pyabf fails in many ways on odd epoch tables or stimulus files
                self._command.clear()
                return f"pyabf cannot build the command of sweep {n}: {type(err).__name__}: {err}"
            if command.size == 0 or not np.isfinite(command).all():
                self._command.clear()
                return f"the command of sweep {n} is not finite (stimulus file missing?)"
            scale = _unit_scale(self.abf.sweepUnitsC or "", _TO_PA, self.path, "the command", f"sweep {n}")
            self._command[n] = command * scale
            varying = varying or np.ptp(command) > 0
        return "" if varying else "the command waveform is constant"

    def _stimulus_file_outside(self) -> str:
        """Why the stimulus file pyabf would read (a header path, the working directory, ...) is
        not used: it lies outside the ABF's folder (another local file pulled in); '' if inside."""
        import pyabf.stimulus

        try:
            found = pyabf.stimulus.findStimulusWaveformFile(self.abf, self.channel)
        except Exception as err:  # odd string tables
            return f"its stimulus file cannot be located ({type(err).__name__}: {err})"
        if found and Path(found).resolve().parent != Path(self.path).resolve().parent:
            return f"its stimulus file {found} lies outside the ABF's folder: refused"
        return ""

    @property
    def sweep_numbers(self) -> list[int]:
        return list(self.abf.sweepList)

    def fs_hz(self, sweep_number: int) -> float:
        return sampling_rate(self.abf.dataRate, f"{self.path}: sweep {sweep_number}")

    def _check(self, n: int) -> None:
        if n not in self.abf.sweepList:
            raise NwbReadError(f"{self.path}: no sweep {n} (sweeps 0-{self.abf.sweepCount - 1})")

    def stimulus_pa(self, sweep_number: int) -> np.ndarray:
        """Command current (pA), float64: the file's waveform or the CSV protocol's step."""
        n = sweep_number
        self._check(n)
        if self.command_source == "waveform":
            return self._command[n].copy()
        self.abf.setSweep(n, channel=self.channel)
        size, fs, p = self.abf.sweepY.size, self.fs_hz(n), self.protocol
        t = np.arange(size) / fs
        return np.where((t >= p.onset_s) & (t < p.onset_s + p.duration_s), p.amplitude_pa(n), 0.0)

    def response_mv(self, sweep_number: int) -> np.ndarray:
        """Membrane potential (mV), float64, from the voltage ADC channel."""
        n = sweep_number
        self._check(n)
        try:
            self.abf.setSweep(n, channel=self.channel)
            unit = self.abf.adcUnits[self.channel]
            values = np.array(self.abf.sweepY, dtype=np.float64)
        except Exception as err:
            raise NwbReadError(f"{self.path}: cannot read the response of sweep {n}: {err}") from err
        where = f"sweep {n} (channel {self.channel})"
        return values * _unit_scale(unit, _TO_MV, self.path, "the response (current clamp needs a voltage)", where)

    def epochs(self, sweep_number: int):
        """The epoch table's pieces of the sweep (``sts.steps.Epochs``): boundaries from pyabf's
        ``sweepEpochs``, levels read off the command (NaN for ramps and pulse trains); None when
        the command comes from the CSV protocol or pyabf gives no table."""
        from sts.steps import TOLERANCE_PA, Epochs

        if self.command_source != "waveform":
            return None
        command = self._command[sweep_number]
        try:
            self.abf.setSweep(sweep_number, channel=self.channel)
            table = self.abf.sweepEpochs
            bounds = [(int(a), int(b), str(kind)) for a, b, kind in zip(table.p1s, table.p2s, table.types)]
        except Exception:  # no or odd epoch table: the command trace is segmented instead
            return None
        bounds = [(a, min(b, command.size), kind) for a, b, kind in bounds if 0 <= a < min(b, command.size)]
        if not bounds or bounds[0][0] != 0:
            return None
        if bounds[-1][1] < command.size:  # holding after the last epoch
            bounds.append((bounds[-1][1], command.size, "Step"))
        levels = []
        for a, b, kind in bounds:
            seg = command[a:b]
            levels.append(float(np.median(seg)) if kind == "Step" and np.ptp(seg) <= TOLERANCE_PA else np.nan)
        starts, stops = (np.array([x[i] for x in bounds], dtype=np.int64) for i in (0, 1))
        if np.any(starts[1:] != stops[:-1]):  # gaps or overlaps: not a table we understand
            return None
        return Epochs(starts, stops, np.array(levels))

    def stimulus_name(self, sweep_number: int) -> str:
        """'Long Square' when the longest deviation from holding is a square step of 0.5-2 s."""
        n = sweep_number
        fs = self.fs_hz(n)
        step = square_step(self.stimulus_pa(n))
        if step is None:
            return "ABF sweep without a square step"
        duration_s = step[1] / fs
        if LONG_SQUARE_S[0] <= duration_s <= LONG_SQUARE_S[1]:
            return LONG_SQUARE
        return f"ABF square step of {duration_s:g} s"

    def close(self) -> None:
        """pyabf reads the whole file at open and keeps no handle; drop the data."""
        self.abf = None
        self._command.clear()


def open_abf(path: str | Path, protocol: Protocol | None = None) -> AbfRecording:
    """Open an ABF file; raises NwbReadError (with the path) if it is unreadable, has no voltage
    channel data, or has neither a command waveform nor ``protocol``."""
    import pyabf  # imported here: only ABF cohorts pay for it

    _check_raw_header(path)
    try:
        header = pyabf.ABF(str(path), loadData=False)
    except Exception as err:  # pyabf raises struct, index, value, unicode... errors on bad files
        raise NwbReadError(f"unreadable ABF file {path}: {type(err).__name__}: {err}") from err
    _check_sizes(header, path)
    try:
        abf = pyabf.ABF(str(path))
    except Exception as err:
        raise NwbReadError(f"unreadable ABF file {path}: {type(err).__name__}: {err}") from err
    return AbfRecording(abf, path, protocol)


def _check_raw_header(path) -> None:
    """The header's section map (ABF2) or tag table (ABF1) must lie inside the file: pyabf makes
    lists of the declared entry counts before reading them."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(76 + 16 * ABF2_SECTIONS)
    except OSError as err:
        raise NwbReadError(f"unreadable ABF file {path}: {err}") from err
    if head[:4] == b"ABF2" and len(head) == 76 + 16 * ABF2_SECTIONS:
        entries = [struct.unpack_from("<IIi", head, 76 + 16 * k) for k in range(ABF2_SECTIONS)]
    elif head[:4] == b"ABF " and len(head) >= 52:
        pointer, count = struct.unpack_from("<ii", head, ABF1_TAGS[0])
        entries = [(max(pointer, 0), ABF1_TAGS[2], count)]
    else:
        return  # pyabf says what is wrong
    for block, entry_bytes, count in entries:
        if count > 0 and block * 512 + entry_bytes * count > size:
            raise NwbReadError(f"unreadable ABF file {path}: the header declares {count} entries of {entry_bytes} "
                               f"bytes at byte {block * 512}, beyond the file's end ({size} bytes)")  # fmt: skip


def _check_sizes(header, path) -> None:
    """What the header declares, before pyabf allocates it: a plausible rate, sweeps within
    ``max_samples`` at that rate, and no more data than the file holds."""
    where = f"unreadable ABF file {path}: the header"
    rate = sampling_rate(header.dataRate, where)
    declared, per_sweep = int(header.dataPointCount), int(header.sweepPointCount)
    if not 1 <= header.sweepCount <= MAX_SWEEPS or per_sweep < 2:
        raise NwbReadError(f"{where} declares {header.sweepCount} sweeps of {per_sweep} samples "
                           f"(at most {MAX_SWEEPS} sweeps of at least 2 samples)")  # fmt: skip
    itemsize = 2 if header._nDataFormat == 0 else 4
    held = (int(header._fileSize) - int(header.dataByteStart)) // itemsize
    if declared < 1 or declared > min(held, MAX_FILE_SAMPLES):
        raise NwbReadError(f"{where} declares {declared} samples; the file holds {max(held, 0)} "
                           f"(at most {MAX_FILE_SAMPLES} are read from one file)")  # fmt: skip
    if per_sweep > max_samples(rate):
        raise NwbReadError(f"{where} declares sweeps of {per_sweep} samples, more than the "
                           f"{max_samples(rate)} allowed at {rate:g} Hz")  # fmt: skip
