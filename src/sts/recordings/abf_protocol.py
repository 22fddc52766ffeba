"""The command of an ABF file from the epoch table of the output (DAC) that carries it.

Clampex writes one waveform (epoch table) per analog output; a lab may drive its amplifier from
any of them: one lab's ladders sit on DAC1 (in nA) while only one input (mV) is recorded. pyabf's
``sweepC`` describes the DAC numbered like the input read, and for ABF1 it takes the holding level
from the first epoch's initial level, so both are read here:

* ABF2: the DAC section (one entry per DAC: ``nWaveformEnable``, ``nWaveformSource``,
  ``fDACHoldingLevel``, ``nInterEpisodeLevel``, ``lDACChannelUnitsIndex`` into the strings
  section) and the EpochPerDAC section (rows tagged with ``nDACNum``), as pyabf parses them.
* ABF1 (abfheadr.h, ABF 1.8 header, little-endian): pyabf parses ``nWaveformEnable`` and
  ``nWaveformSource`` (int16[2] at bytes 2296 and 2300), the epoch table (20 entries from byte
  2308: DAC0's ten epochs, then DAC1's), ``nInterEpisodeLevel`` and ``sDACChannelUnit``
  (char[8][4] at byte 1346); not ``fDACHoldingLevel`` (float32[4] at byte 1394, after
  ``fDACScaleFactor`` float32[4] at 1378), read here with ``struct``.

A sweep's command, as Clampex plays it: the first 1/64 of the sweep at the holding level (or the
previous sweep's last level where ``nInterEpisodeLevel`` says so), the epochs one after another
(duration and level grow by their increments each sweep), then holding to the sweep's end. Every
epoch is cut at the sweep's end, so a hostile duration allocates nothing (pyabf's ``sweepC``
allocates each epoch whole: 11.8 GiB for one crafted file).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

ABF1_DAC_HOLDING = 1394  # float32[4] fDACHoldingLevel
ABF1_DAC_COUNT = 2  # DACs with an epoch table in ABF1
STEP, RAMP, PULSE, TRIANGLE, COSINE, BIPHASIC = 1, 2, 3, 4, 5, 7
EPOCH_FILE, STIMULUS_FILE = 1, 2  # nWaveformSource
MAX_EPOCHS = 50  # per DAC in an ABF2 epoch table (Clampex: epochs A..AX); ABF1 has 10

TO_PA = {"pa": 1.0, "na": 1e3, "ua": 1e6, "µa": 1e6, "μa": 1e6, "a": 1e12, "fa": 1e-3}
VOLTS = {"mv", "v", "uv", "µv", "μv"}


def clean_unit(unit) -> str:
    if isinstance(unit, bytes):
        unit = unit.decode("latin-1")
    return str(unit or "").replace("\x00", "").strip()


@dataclass(frozen=True)
class Epoch:
    kind: int  # nEpochType (0 off)
    level: float  # first sweep's level, in the DAC's unit
    level_inc: float
    duration: int  # samples, first sweep
    duration_inc: int
    pulse_period: int = 0
    pulse_width: int = 0


@dataclass(frozen=True)
class DacWaveform:
    """What one analog output plays: its epoch table (or a stimulus file), unit and holding."""

    dac: int
    unit: str
    holding: float  # in ``unit``
    source: int  # EPOCH_FILE or STIMULUS_FILE
    last_level_between: bool  # nInterEpisodeLevel: keep the last epoch's level between sweeps
    epochs: tuple[Epoch, ...]

    @property
    def to_pa(self) -> float | None:
        """Scale of the unit to pA; None when it is not a current (voltage clamp, unknown)."""
        return TO_PA.get(self.unit.lower())

    def pieces(self, sweep: int, n_points: int, previous_last: float | None) -> list[tuple]:
        """(start, stop, kind, level, level before, epoch, uncut length) of the sweep's pieces,
        cut at ``n_points``."""
        pre = n_points // 64
        first = self.holding if previous_last is None else previous_last
        out = [(0, min(pre, n_points), STEP, first, first, None, pre)]
        position, level = pre, first
        for ep in self.epochs:
            duration = max(ep.duration + ep.duration_inc * sweep, 0)
            before, level = level, ep.level + ep.level_inc * sweep
            start, stop = min(position, n_points), min(position + duration, n_points)
            out.append((start, stop, ep.kind, level, before, ep, duration))
            position += duration
        end = level if self.last_level_between else self.holding
        out.append((min(position, n_points), n_points, STEP, end, level, None, 0))
        return [p for p in out if p[1] > p[0]]



def epoch_pieces(wave: DacWaveform, n_sweeps: int, n_points: int) -> list[list[tuple]]:
    """The pieces of every sweep (the previous sweep's last level carried where the file says so)."""
    out, previous = [], None
    for sweep in range(n_sweeps):
        out.append(wave.pieces(sweep, n_points, previous))
        if wave.last_level_between and wave.epochs:  # the next sweep starts at this one's last epoch level
            last = wave.epochs[-1]
            previous = last.level + last.level_inc * sweep
    return out


def synthesize(pieces: list[tuple], n_points: int) -> np.ndarray:
    """The command (in the DAC's unit) of one sweep from its pieces, vectorised per epoch."""
    out = np.empty(n_points, dtype=np.float64)
    for start, stop, kind, level, before, ep, full in pieces:
        size = stop - start
        if kind == STEP:
            out[start:stop] = level
        elif kind == RAMP:  # pyabf: linspace(before, level, full length)
            out[start:stop] = before + (level - before) * (np.arange(size) / max(full - 1, 1))
        elif kind in (PULSE, TRIANGLE, COSINE, BIPHASIC) and ep is not None and ep.pulse_period > 0:
            period, width = ep.pulse_period, max(min(ep.pulse_width, ep.pulse_period), 1)
            phase = np.arange(size) % period
            n_full = (full // period) * period  # pyabf: whole pulses only, then the level before
            seg = np.full(size, before, dtype=np.float64)
            train = np.arange(size) < n_full
            if kind == PULSE:
                seg[train & (phase < width)] = level
            elif kind == BIPHASIC:
                half = width // 2
                seg[train & (phase < half)] = level
                seg[train & (phase >= half) & (phase < width)] = 2 * before - level
            elif kind == TRIANGLE:
                up = phase < width
                rise = before + (level - before) * phase / width
                fall = level - (level - before) * (phase - width) / max(period - width, 1)
                seg[train] = np.where(up, rise, fall)[train]
            else:  # cosine train over the whole pulses
                x = 2 * np.pi * phase / period + np.pi
                seg[train] = (before + (np.cos(x) + 1) * (level - before) / 2)[train]
            out[start:stop] = seg
        else:  # a train without a period, or a type Clampex does not document: held at the level before
            out[start:stop] = before
    return out


def _abf1_waveforms(abf, raw: bytes) -> list[DacWaveform]:
    h = abf._headerV1
    if len(raw) < ABF1_DAC_HOLDING + 16:
        return []
    holding = struct.unpack_from("<4f", raw, ABF1_DAC_HOLDING)
    units = [clean_unit(u) for u in _as_list(h.sDACChannelUnit)]
    waves = []
    for dac in range(ABF1_DAC_COUNT):
        if not h.nWaveformEnable[dac]:
            continue
        rows = range(10 * dac, 10 * dac + 10)
        epochs = tuple(
            Epoch(int(h.nEpochType[i]), float(h.fEpochInitLevel[i]), float(h.fEpochLevelInc[i]),
                  int(h.lEpochInitDuration[i]), int(h.lEpochDurationInc[i]))
            for i in rows if h.nEpochType[i] != 0
        )  # fmt: skip
        waves.append(DacWaveform(dac, units[dac] if dac < len(units) else "", float(holding[dac]),
                                 int(h.nWaveformSource[dac]), bool(h.nInterEpisodeLevel[dac]), epochs))  # fmt: skip
    return waves


def _abf2_waveforms(abf) -> list[DacWaveform]:
    d, e = abf._dacSection, abf._epochPerDacSection
    strings = abf._stringsSection._indexedStrings
    waves = []
    for dac, enabled in enumerate(d.nWaveformEnable):
        if not enabled:
            continue
        index = d.lDACChannelUnitsIndex[dac]
        unit = clean_unit(strings[index]) if 0 <= index < len(strings) else ""
        rows = sorted((e.nEpochNum[i], i) for i, num in enumerate(e.nDACNum) if num == dac)
        if len(rows) > MAX_EPOCHS:  # each is built for every sweep
            raise ValueError(f"DAC{dac} declares {len(rows)} epochs (Clampex writes at most {MAX_EPOCHS})")
        epochs = tuple(
            Epoch(int(e.nEpochType[i]), float(e.fEpochInitLevel[i]), float(e.fEpochLevelInc[i]),
                  int(e.lEpochInitDuration[i]), int(e.lEpochDurationInc[i]),
                  int(e.lEpochPulsePeriod[i]), int(e.lEpochPulseWidth[i]))
            for _, i in rows if e.nEpochType[i] != 0
        )  # fmt: skip
        waves.append(DacWaveform(dac, unit, float(d.fDACHoldingLevel[dac]), int(d.nWaveformSource[dac]),
                                 bool(d.nInterEpisodeLevel[dac]), epochs))  # fmt: skip
    return waves


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def enabled_waveforms(abf, raw_header: bytes) -> list[DacWaveform]:
    """Every DAC whose waveform is enabled (epoch table or stimulus file), in DAC order."""
    if abf.abfVersion["major"] == 1:
        return _abf1_waveforms(abf, raw_header)
    return _abf2_waveforms(abf)


def choose_dac(waves: list[DacWaveform], paired: int) -> tuple[DacWaveform | None, str]:
    """The output that carries the current ladder, and '' — or None and why none does.

    Of the enabled waveforms in a current unit, the DAC numbered like the voltage input read
    (two-amplifier rigs pair them), else the first. An enabled waveform in volts and none in amperes
    is a voltage-clamp protocol.
    """
    usable = [w for w in waves if w.source in (EPOCH_FILE, STIMULUS_FILE)]
    current = [w for w in usable if w.to_pa is not None]
    if current:
        return next((w for w in current if w.dac == paired), current[0]), ""
    volts = [w for w in usable if w.unit.lower() in VOLTS]
    if volts:
        return None, f"voltage clamp: the command waveform (DAC{volts[0].dac}) is in {volts[0].unit}"
    if usable:
        units = ", ".join(f"DAC{w.dac} {w.unit!r}" for w in usable)
        return None, f"the command waveform's unit is not a current ({units})"
    return None, "the file has no command waveform"
