"""Axon Binary Format (ABF1 and ABF2, read with pyabf) behind the same interface as the NWB readers.

Sweeps are numbered 0..n-1 as in pyabf. The response is the first ADC channel in volts
(mV, V or µV, converted to mV); the injected current comes from the analog output (DAC) whose
waveform is enabled, whichever it is (``sts.recordings.abf_protocol``: its epoch table, holding
level and unit; a stimulus file through pyabf), converted to pA. A waveform in volts is voltage
clamp: the file is refused. A file without a usable command waveform (e.g. ABF1 files written by
``pyabf.abfWriter.writeABF1``) needs a ``Protocol`` from its CSV row: sweep k steps to
``first_amplitude_pa + k * step_pa`` for ``duration_s`` from ``onset_s``, holding 0 pA elsewhere.
Sweeps whose command's longest deviation from holding is a square step of 0.5–2 s (test
pulses aside) are named "Long Square", so
``sts.prep.sweeps.is_long_square`` accepts them as it does Allen's.

Hostile input: before pyabf parses anything, the raw header's counts are bounded (sweeps,
section entries, tags, input channels; every block inside the file), then pyabf's reading of
the header is checked (``sts.recordings.common``: rate range, ``MAX_SWEEP_S`` at that rate,
``MAX_SWEEP_SAMPLES``, no more data than the file holds); epochs are cut at the sweep's end;
a command waveform from a stimulus file is used only when that file lies in the ABF's own
folder and passes the same header checks.
"""

from __future__ import annotations

import logging
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sts.recordings.abf_protocol import (EPOCH_FILE, STEP, DacWaveform, choose_dac, clean_unit, enabled_waveforms,
                                        epoch_pieces, synthesize)  # fmt: skip
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
# Raw header fields checked before pyabf parses the header (it allocates lists of the declared counts).
ABF_HEADER_BYTES = 6144  # ABF1's whole header; ABF2's fixed part and section map are shorter
ABF2_SECTIONS = 18  # section map: 16-byte entries (block, entry bytes, count) from byte 76
ABF2_DATA_SECTION = 10  # the section map's data entry: one entry a sample
ABF2_EPISODES = 12  # uint32 lActualEpisodes
ABF1_EPISODES = 16  # int32 lActualEpisodes
ABF1_CHANNELS = 120  # int16 nADCNumChannels
ABF1_TAGS = (44, 48, 64)  # lTagSectionPtr, lNumTagEntries offsets; bytes per tag
MAX_SWEEPS = 10_000  # a cell's protocol has tens of sweeps
MAX_SECTION_ENTRIES = 100_000  # tags, epochs, strings, synch entries (one per sweep)...
MAX_ADC_CHANNELS = 16  # Digidata inputs
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

    def __init__(self, abf, path: str | Path, protocol: Protocol | None = None, raw_header: bytes = b""):
        self.abf = abf
        self.path = str(path)
        self.protocol = protocol
        self.channel = self._voltage_channel()
        self.wave: DacWaveform | None = None
        self._command: dict[int, np.ndarray] = {}
        self._pieces: dict[int, list] = {}
        unusable = self._read_command_waveform(raw_header)
        if unusable.startswith("voltage clamp"):
            raise NwbReadError(f"{self.path}: {unusable}: current clamp is needed")
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
            if clean_unit(unit).lower() in _TO_MV:
                return ch
        return 0

    def command_info(self) -> dict:
        """Which output the command came from, for the sweeps file."""
        if self.command_source != "waveform" or self.wave is None:
            return {"command_source": self.command_source}
        return {"command_source": "epoch table" if self.wave.source == EPOCH_FILE else "stimulus file",
                "command_dac": self.wave.dac, "command_unit": self.wave.unit,
                "holding_pa": self.wave.holding * self.wave.to_pa}  # fmt: skip

    def _read_command_waveform(self, raw_header: bytes) -> str:
        """Read the command of every sweep (pA) into self._command; '' if it is usable, else why not.

        Usable: a waveform in a current unit is enabled on some DAC (``abf_protocol.choose_dac``),
        it can be built (epoch table, or a stimulus file in the ABF's folder), it is finite and it
        varies somewhere.
        """
        abf = self.abf
        if abf.abfVersion["major"] == 1 and abf._headerV1.lDataSectionPtr * 512 < ABF1_EPOCH_TABLE_END:
            return "the file has no command waveform"
        try:
            wave, why = choose_dac(enabled_waveforms(abf, raw_header), self.channel)
        except (IndexError, KeyError, TypeError, ValueError, struct.error) as err:  # damaged DAC tables
            return f"the DAC settings cannot be read ({type(err).__name__}: {err})"
        if wave is None:
            return why
        self.wave = wave
        n_points, scale = self._sweep_points(), wave.to_pa
        if wave.source == EPOCH_FILE:
            for n, pieces in zip(self.sweep_numbers, epoch_pieces(wave, len(self.sweep_numbers), n_points)):
                self._pieces[n] = pieces
                self._command[n] = synthesize(pieces, n_points) * scale
        else:
            why = self._stimulus_file_problem(wave.dac)
            if why:
                return why
            for n in self.sweep_numbers:
                try:
                    command = np.asarray(abf.stimulusByChannel[wave.dac].stimulusWaveform(n), dtype=np.float64)
                except Exception as err:  # pyabf fails in many ways on odd stimulus files
                    self._command.clear()
                    return f"pyabf cannot read the stimulus file of sweep {n}: {type(err).__name__}: {err}"
                self._command[n] = command * scale
        bad = next((n for n, c in self._command.items() if c.size == 0 or not np.isfinite(c).all()), None)
        if bad is not None:
            self._command.clear()
            return f"the command of sweep {bad} is not finite (stimulus file missing?)"
        varying = any(np.ptp(c) > 0 for c in self._command.values())
        return "" if varying else "the command waveform is constant"

    def _stimulus_file_problem(self, dac: int) -> str:
        """Why the stimulus file pyabf would read for ``dac`` is not used ('' if it can be): pyabf
        reads it for the DAC numbered like an input only; it must lie in the ABF's folder (not
        another local file pulled in) and pass the header checks of any ABF file."""
        import pyabf.stimulus

        if dac >= len(self.abf.stimulusByChannel):
            return f"the waveform of DAC{dac} comes from a stimulus file, which is read only for DAC0-{len(self.abf.stimulusByChannel) - 1}"
        try:
            found = pyabf.stimulus.findStimulusWaveformFile(self.abf, dac)
        except Exception as err:  # odd string tables
            return f"its stimulus file cannot be located ({type(err).__name__}: {err})"
        if not found:
            return ""
        if Path(found).resolve().parent != Path(self.path).resolve().parent:
            return f"its stimulus file {found} lies outside the ABF's folder: refused"
        try:
            check_header(found)
        except NwbReadError as err:
            return f"its stimulus file is refused: {err}"
        return ""

    @property
    def sweep_numbers(self) -> list[int]:
        return list(self.abf.sweepList)

    def _sweep_points(self) -> int:
        return int(self.abf.sweepPointCount)

    def _sweep_span(self, n: int) -> tuple[int, int]:
        """First sample and sample count of sweep ``n`` in each row of ``abf.data`` (as pyabf's
        setSweep, without rebuilding the epoch table of every sweep on each call)."""
        abf = self.abf
        synch = getattr(abf, "_synchArraySection", None)
        lengths = list(getattr(synch, "lLength", []) or []) if abf.sweepCount > 1 else []
        if len(set(lengths)) > 1:
            per = [int(x) // abf.channelCount for x in lengths]
            return sum(per[:n]), per[n]
        return abf.sweepPointCount * n, abf.sweepPointCount

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
        size, fs, p = self._sweep_span(n)[1], self.fs_hz(n), self.protocol
        t = np.arange(size) / fs
        return np.where((t >= p.onset_s) & (t < p.onset_s + p.duration_s), p.amplitude_pa(n), 0.0)

    def response_mv(self, sweep_number: int) -> np.ndarray:
        """Membrane potential (mV), float64, from the voltage ADC channel."""
        n = sweep_number
        self._check(n)
        where = f"sweep {n} (channel {self.channel})"
        unit = self.abf.adcUnits[self.channel]
        scale = _unit_scale(unit, _TO_MV, self.path, "the response (current clamp needs a voltage)", where)
        try:
            start, count = self._sweep_span(n)
            values = np.array(self.abf.data[self.channel, start : start + count], dtype=np.float64)
        except Exception as err:
            raise NwbReadError(f"{self.path}: cannot read the response of sweep {n}: {err}") from err
        if values.size < 2:
            raise NwbReadError(f"{self.path}: the response of sweep {n} has no samples")
        return values * scale

    def epochs(self, sweep_number: int):
        """The epoch table's pieces of the sweep (``sts.recordings.steps.Epochs``): levels of step epochs in pA,
        NaN for ramps and pulse trains; None when the command comes from the CSV protocol or a
        stimulus file."""
        from sts.recordings.steps import Epochs

        pieces = self._pieces.get(sweep_number)
        if self.command_source != "waveform" or not pieces:
            return None
        starts = np.array([p[0] for p in pieces], dtype=np.int64)
        stops = np.array([p[1] for p in pieces], dtype=np.int64)
        levels = np.array([p[3] * self.wave.to_pa if p[2] == STEP else np.nan for p in pieces])
        return Epochs(starts, stops, levels)

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
        self._pieces.clear()


def open_abf(path: str | Path, protocol: Protocol | None = None) -> AbfRecording:
    """Open an ABF file; raises NwbReadError (with the path) if it is unreadable, declares sizes
    beyond the readers' bounds, records in voltage clamp, has no voltage channel data, or has
    neither a command waveform nor ``protocol``."""
    import pyabf  # imported here: only ABF cohorts pay for it

    raw = check_header(path)
    try:
        abf = pyabf.ABF(str(path))
    except Exception as err:
        raise NwbReadError(f"unreadable ABF file {path}: {type(err).__name__}: {err}") from err
    return AbfRecording(abf, path, protocol, raw)


def check_header(path) -> bytes:
    """The file's raw header (first 6144 bytes) once what it declares fits the readers' bounds:
    first the words pyabf sizes its lists by (``_check_raw_header``), then pyabf's reading of
    the header without the data (``_check_sizes``)."""
    import pyabf

    raw = _check_raw_header(path)
    try:
        header = pyabf.ABF(str(path), loadData=False)
    except Exception as err:  # pyabf raises struct, index, value, unicode... errors on bad files
        raise NwbReadError(f"unreadable ABF file {path}: {type(err).__name__}: {err}") from err
    _check_sizes(header, path)
    return raw


def _check_raw_header(path) -> bytes:
    """Refuse a header whose counts would make pyabf allocate before any other check: episodes
    (``list(range(sweeps))``), section entries (ABF2 section map) and tags (ABF1) within bounds,
    every declared block inside the file. Returns the header's bytes."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(ABF_HEADER_BYTES)
    except OSError as err:
        raise NwbReadError(f"unreadable ABF file {path}: {err}") from err
    where = f"unreadable ABF file {path}: the header"
    if head[:4] == b"ABF2" and len(head) >= 76 + 16 * ABF2_SECTIONS:
        episodes = struct.unpack_from("<I", head, ABF2_EPISODES)[0]
        entries = [(k, *struct.unpack_from("<IIi", head, 76 + 16 * k)) for k in range(ABF2_SECTIONS)]
    elif head[:4] == b"ABF " and len(head) >= ABF1_CHANNELS + 2:
        episodes = struct.unpack_from("<i", head, ABF1_EPISODES)[0]
        channels = struct.unpack_from("<h", head, ABF1_CHANNELS)[0]
        if not 1 <= channels <= MAX_ADC_CHANNELS:
            raise NwbReadError(f"{where} declares {channels} input channels (1-{MAX_ADC_CHANNELS} allowed)")
        pointer, count = struct.unpack_from("<ii", head, ABF1_TAGS[0])
        entries = [(-1, max(pointer, 0), ABF1_TAGS[2], count)]
    else:
        return head  # pyabf says what is wrong
    if not 0 <= episodes <= MAX_SWEEPS:
        raise NwbReadError(f"{where} declares {episodes} sweeps (at most {MAX_SWEEPS})")
    for k, block, entry_bytes, count in entries:
        if count <= 0:
            continue
        most = MAX_FILE_SAMPLES if k == ABF2_DATA_SECTION else MAX_SECTION_ENTRIES
        declares = f"{where} declares {count} entries of {entry_bytes} bytes at byte {block * 512}"
        if block * 512 + entry_bytes * count > size:
            raise NwbReadError(f"{declares}, beyond the file's end ({size} bytes)")
        if entry_bytes <= 0 or count > most:
            raise NwbReadError(f"{declares} (at most {most} entries of at least 1 byte)")
    return head


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
