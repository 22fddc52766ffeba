"""The ladder's current step in each sweep, from the protocol: one code path for every layout.

A sweep's command (the injected current, pA) is cut into constant-level epochs: from the
file's epoch table where it has one (ABF), else from the command trace itself (NWB stimulus,
ABF waveform), split wherever the current jumps by more than ``TOLERANCE_PA``. Real protocols
put a test pulse, a pre-pulse, a holding change or a second test step ("dual" protocols) next
to the step, so the ladder's step is the epoch whose level changes from sweep to sweep: of the
constant epochs at least ``min_step_s`` long that differ from holding, the first whose span
carries different levels in different sweeps. A ladder without such an epoch (one sweep, or
all at one amplitude) falls back on each sweep's longest such epoch, as for a single long
square. The amplitude is the step's median current minus the holding level.

Each step also carries the room after its onset: up to the sweep's next non-holding epoch
after the step (or the sweep's end), so a window can be checked against what follows it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOLERANCE_PA = 1.0  # currents closer than this are one level


@dataclass
class Step:
    """The ladder's step in one sweep (sample indices of that sweep)."""

    onset_idx: int
    duration_idx: int
    amplitude_pa: float  # step level minus holding, rounded to 0.1 pA
    room_idx: int = 0  # samples from the onset to the next non-holding epoch or the sweep's end
    room_end: str = "the sweep's end"  # what ends the room, for reasons


@dataclass
class Epochs:
    """Constant-level pieces of one sweep's command: ``starts``/``stops`` (samples, stop exclusive)
    and ``levels_pa`` (NaN where the current is not constant: ramps, noise, pulse trains)."""

    starts: np.ndarray
    stops: np.ndarray
    levels_pa: np.ndarray

    def __len__(self) -> int:
        return self.starts.size


def holding_level(command_pa: np.ndarray, fs_hz: float) -> float:
    """The holding current: the level at the sweep's start when it matches the level at its end
    (2 ms each), else the median current."""
    edge = max(int(0.002 * fs_hz), 1)
    head, tail = float(np.median(command_pa[:edge])), float(np.median(command_pa[-edge:]))
    return (head + tail) / 2 if abs(head - tail) <= TOLERANCE_PA else float(np.median(command_pa))


def segment(command_pa: np.ndarray) -> Epochs:
    """Epochs of a command trace: runs between jumps of more than TOLERANCE_PA."""
    cuts = np.flatnonzero(np.abs(np.diff(command_pa)) > TOLERANCE_PA) + 1
    starts = np.r_[0, cuts].astype(np.int64)
    stops = np.r_[cuts, command_pa.size].astype(np.int64)
    levels = np.full(starts.size, np.nan)
    for k in np.flatnonzero(stops - starts > 1):  # one-sample pieces (ramps) stay NaN
        seg = command_pa[starts[k] : stops[k]]
        if np.ptp(seg) <= TOLERANCE_PA:
            levels[k] = np.median(seg)
    single = stops - starts == 1
    levels[single] = np.nan
    return Epochs(starts, stops, levels)


def _non_holding(epochs: Epochs, holding: float) -> np.ndarray:
    return ~(np.abs(epochs.levels_pa - holding) <= TOLERANCE_PA)  # NaN (not constant) counts as non-holding


def _room(epochs: Epochs, holding: float, onset: int, stop: int, size: int, fs_hz: float) -> tuple[int, str]:
    after = np.flatnonzero((epochs.starts >= stop) & _non_holding(epochs, holding))
    if after.size:
        start = int(epochs.starts[after[0]])
        return start - onset, f"the next non-holding epoch at {start / fs_hz:.4g} s"
    return size - onset, "the sweep's end"


def _level_in(command_pa: np.ndarray, start: int, stop: int) -> float | None:
    """Median current over [start, stop) when constant there, else None."""
    if stop > command_pa.size:
        return None
    seg = command_pa[start:stop]
    if np.ptp(seg) > TOLERANCE_PA:
        return None
    return float(np.median(seg))


def ladder_steps(sweeps: dict, min_step_s: float) -> dict[int, Step | None]:
    """The ladder's step of every sweep.

    ``sweeps``: sweep number -> (command_pa, fs_hz, epochs or None); epochs come from the
    file's epoch table when it has one, else the command is segmented here.
    """
    info = {}
    unusable = [n for n, (command, _, _) in sweeps.items() if command.size == 0 or not np.isfinite(command).all()]
    for n, (command, fs, epochs) in sweeps.items():
        if n in unusable:  # no level to read (readers reject these; the ladder goes on without them)
            continue
        epochs = epochs if epochs is not None else segment(command)
        holding = holding_level(command, fs)
        long_enough = (epochs.stops - epochs.starts) >= min_step_s * fs
        candidate = long_enough & np.isfinite(epochs.levels_pa) & (np.abs(epochs.levels_pa - holding) > TOLERANCE_PA)
        info[n] = (command, fs, epochs, holding, np.flatnonzero(candidate))

    def span_in(start_s: float, stop_s: float, fs: float) -> tuple[int, int]:
        return int(round(start_s * fs)), int(round(stop_s * fs))

    seen: dict[tuple, set] = {}

    def levels_across(start_s: float, stop_s: float) -> set[float]:
        """Levels (minus holding, in TOLERANCE_PA units) of every sweep constant over the span."""
        if (start_s, stop_s) not in seen:
            found = seen[start_s, stop_s] = set()
            for command, fs_m, _, holding_m, _ in info.values():
                level = _level_in(command, *span_in(start_s, stop_s, fs_m))
                if level is not None:
                    found.add(round((level - holding_m) / TOLERANCE_PA))
        return seen[start_s, stop_s]

    # The ladder's span (s): the first candidate epoch (any sweep) whose level varies across sweeps.
    span = None
    for n, (command, fs, epochs, holding, cands) in info.items():
        for k in cands:
            start_s, stop_s = epochs.starts[k] / fs, epochs.stops[k] / fs
            if span is not None and (start_s, start_s - stop_s) >= (span[0], span[0] - span[1]):
                continue  # not earlier (or, at the same onset, not longer) than the span found
            if len(levels_across(start_s, stop_s)) > 1:
                span = (start_s, stop_s)

    steps: dict[int, Step | None] = dict.fromkeys(unusable)
    for n, (command, fs, epochs, holding, cands) in info.items():
        pick = None
        if span is not None:
            lo, hi = span_in(*span, fs)
            overlapping = [k for k in cands if epochs.starts[k] < hi and epochs.stops[k] > lo]
            if overlapping:  # the sweep's own epoch there (exact onset and length)
                k = overlapping[0]
                pick = (int(epochs.starts[k]), int(epochs.stops[k]))
            elif _level_in(command, lo, hi) is not None:  # at holding (0 pA) in this sweep
                pick = (lo, hi)
        elif span is None and cands.size:  # no ladder: the longest step, as for a single long square
            k = cands[int(np.argmax(epochs.stops[cands] - epochs.starts[cands]))]
            pick = (int(epochs.starts[k]), int(epochs.stops[k]))
        if pick is None:
            steps[n] = None
            continue
        start, stop = pick
        amplitude = round(float(np.median(command[start:stop])) - holding, 1)
        room, room_end = _room(epochs, holding, start, stop, command.size, fs)
        steps[n] = Step(start, stop - start, amplitude, room, room_end)
    return steps
