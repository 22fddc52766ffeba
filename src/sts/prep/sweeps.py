"""Select a cell's rheobase and rheobase + 40 pA long-square sweeps and resample them to 4 kHz.

Output per cell (``results/sweeps/{specimen_id}.h5``): dataset ``traces_mv`` (float32,
shape (2, n): rheobase, rheobase + plus_pa) and attributes (status, reason, amplitudes,
sweep numbers, rates, onset...). A cell that cannot be used still gets its file, with
``status = 'excluded'`` and a reason naming the cause, so one bad cell never stops a run.
Whatever fails on one cell excludes that cell: a reader's ``NwbReadError`` or the HDF5 library
failing on a damaged file is an ordinary exclusion; any other exception (a case the readers do
not know, or a bug of ours) also sets the attribute ``unexpected_error`` (its type) and logs the
traceback, and ``sts.cohort.manifest`` counts these so that a bug cannot silently exclude a cohort.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from sts.io.atomic import atomic_h5
from sts.io.hdf5 import write_attrs
from sts.prep.qc import check_sweep
from sts.recordings import NwbReadError, open_recording
from sts.recordings.common import from_hdf5, shown
from sts.prep.resample import resample
from sts.settings import SelectionParams
from sts.prep.spikes import detect_spike_peaks
from sts.recordings.steps import Step, ladder_steps
from sts.io.text import clean_text

log = logging.getLogger(__name__)

@dataclass
class Selection:
    status: str  # 'ok' or 'excluded'
    reason: str = ""
    traces_mv: np.ndarray | None = None  # (2, n) float32
    attrs: dict = field(default_factory=dict)
    unexpected_error: str = ""  # exception type when an unexpected error excluded the cell

    def __post_init__(self):
        # Reasons quote readers' and files' text (a download marker, an exception): one line, cut.
        self.reason = clean_text(self.reason) if self.reason else ""


def failed(err: Exception, path, sweep_number=None) -> Selection:
    """The exclusion of a cell after an exception other than NwbReadError: the HDF5 library
    failing on a damaged file is an ordinary exclusion, anything else is marked unexpected
    (traceback logged)."""
    where = f"{path}" + (f": sweep {sweep_number} (the last one read)" if sweep_number is not None else "")
    cause = f"{type(err).__name__}: {shown(str(err), 300)}"
    if from_hdf5(err):
        return Selection("excluded", f"{where}: damaged HDF5 data ({cause})")
    log.warning("%s: unexpected %s", where, type(err).__name__, exc_info=err)
    return Selection("excluded", f"{where}: unexpected {cause}", unexpected_error=type(err).__name__)


class WatchedRecording:
    """A recording that remembers the sweep it was last asked about (for unexpected errors)."""

    PER_SWEEP = ("stimulus_name", "fs_hz", "stimulus_pa", "response_mv", "load", "epochs")

    def __init__(self, rec):
        self._rec = rec
        self.sweep_number = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._rec.close()

    def __getattr__(self, name):
        value = getattr(self._rec, name)
        if name not in self.PER_SWEEP:
            return value

        def call(n, *args, **kwargs):
            self.sweep_number = n
            return value(n, *args, **kwargs)

        return call


def is_long_square(name: str, names: tuple[str, ...]) -> bool:
    low = name.strip().lower()
    return any(low == n.lower() or low.startswith(n.lower()) for n in names)


def find_step(stimulus_pa: np.ndarray, fs_hz: float, min_duration_s: float = 0.1) -> Step | None:
    """The step of a single sweep (no ladder to compare with): its longest constant epoch off holding."""
    return ladder_steps({0: (stimulus_pa, fs_hz, None)}, min_duration_s)[0]


def _cut(response_mv: np.ndarray, fs_in: float, onset: int, params: SelectionParams) -> np.ndarray:
    """Window from onset, resampled with real-data margins so filter edges fall outside it."""
    n_win = int(round(params.window_s * fs_in))
    margin = int(round(params.margin_s * fs_in))
    lo, hi = max(onset - margin, 0), min(onset + n_win + margin, response_mv.size)
    seg = np.pad(response_mv[lo:hi], (margin - (onset - lo), margin - (hi - onset - n_win)), mode="edge")
    out = resample(seg, fs_in, params.fs_hz)
    m_out = int(round(params.margin_s * params.fs_hz))
    n_out = int(round(params.window_s * params.fs_hz))
    return out[m_out : m_out + n_out]


def select_sweeps(nwb_path: str | Path, params: SelectionParams = SelectionParams(), protocol=None) -> Selection:
    """Choose and prepare the two sweeps of one cell; never raises for bad data, excludes.

    ``protocol``: step ladder of an ABF file without a command waveform (``sts.recordings.abf.Protocol``).
    """
    try:
        rec = open_recording(nwb_path, protocol)
    except NwbReadError as err:
        return Selection("excluded", str(err))
    except Exception as err:
        return failed(err, nwb_path)
    with rec:
        return select_from_recording(rec, params)


def select_from_recording(rec, params: SelectionParams = SelectionParams()) -> Selection:
    """``select_sweeps`` on an opened recording: any error on one of its sweeps excludes the cell."""
    watched = WatchedRecording(rec)
    try:
        return _select(watched, params)
    except NwbReadError as err:
        return Selection("excluded", str(err))
    except Exception as err:  # the cell only; marked, so that sts.cohort.manifest counts it
        return failed(err, rec.path, watched.sweep_number)


def _ladder_sweeps(rec, params: SelectionParams) -> tuple[list[int], str]:
    """The sweeps that may belong to the ladder, and a reason when there are none."""
    numbers = rec.sweep_numbers
    if params.any_square_step or not rec.named_protocols:
        return numbers, "" if numbers else f"no sweeps in {rec.path}"
    named = [n for n in numbers if is_long_square(rec.stimulus_name(n), params.long_square_names)]
    if named:
        return named, ""
    counts = Counter(rec.stimulus_name(n) or "(no name)" for n in numbers)
    found = ", ".join(f"{name} ×{k}" for name, k in counts.most_common(6))
    return [], (
        f"no long-square sweeps in {rec.path} (stimulus names: {found or 'none'}); add the ladder's name to "
        "sweeps.long_square_names or set sweeps.any_square_step"
    )


def _select(rec, params: SelectionParams) -> Selection:
    numbers, why = _ladder_sweeps(rec, params)
    if not numbers:
        return Selection("excluded", why)
    fs = {n: rec.fs_hz(n) for n in numbers}
    steps = ladder_steps({n: (rec.stimulus_pa(n), fs[n], rec.epochs(n)) for n in numbers}, params.min_step_s)
    candidates = sorted(
        ((st.amplitude_pa, n, st, fs[n]) for n, st in steps.items() if st is not None and st.amplitude_pa != 0),
        key=lambda c: (c[0], c[1]),  # by amplitude, then first sweep
    )
    if not candidates:
        return Selection("excluded", f"no square current step of at least {params.min_step_s:g} s "
                                     f"(sweeps.min_step_s) in the {len(numbers)} candidate sweeps of {rec.path}")  # fmt: skip

    cache: dict[int, np.ndarray] = {}
    n_spikes: dict[int, int] = {}
    n_aps: dict[int, int] = {}

    def response(n: int) -> np.ndarray:
        if n not in cache:
            cache[n] = rec.response_mv(n)
        return cache[n]

    def spikes_in_step(n: int, step: Step, fs: float) -> int:
        """ipfx's spikes in the step (recorded); returns the action potentials among them."""
        t0, t1 = step.onset_idx / fs, (step.onset_idx + step.duration_idx) / fs
        v = response(n)[: step.onset_idx + step.duration_idx]
        if np.isnan(v[step.onset_idx :]).any():
            raise _NanSweep(n)
        _, peaks = detect_spike_peaks(v, fs, t0, t1, params.dvdt_cutoff_mv_ms)
        n_spikes[n], n_aps[n] = peaks.size, int(np.sum(peaks >= params.min_ap_peak_mv))
        return n_aps[n]

    try:
        rheo = next((c for c in candidates if c[0] > 0 and spikes_in_step(c[1], c[2], c[3]) > 0), None)
        if rheo is None:
            top = candidates[-1][0]
            return Selection(
                "excluded", f"no long-square sweep with a spike peaking at or above {params.min_ap_peak_mv:g} mV "
                f"(an action potential, sweeps.min_ap_peak_mv; {len(candidates)} sweeps up to {top:g} pA)"
            )
        lower = sorted((st.amplitude_pa, n, st, fs[n]) for n, st in steps.items() if st is not None and st.amplitude_pa < rheo[0])
        if not lower:
            return Selection(
                "excluded", f"the lowest step ({rheo[0]:g} pA, sweep {rheo[1]}) already fires: the rheobase is not "
                f"in this file (a ladder needs a step below its first spiking one)"
            )
        spontaneous = _fires_spontaneously(lower, rheo, response, params)
        target = rheo[0] + params.plus_pa
        above = [c for c in candidates if c[0] > rheo[0]]
        near = [c for c in above if abs(c[0] - target) <= params.tolerance_pa]
        if not near:
            return Selection("excluded", _no_second_reason(rheo[0], target, above, params))
        second = min(near, key=lambda c: (abs(c[0] - target), c[1]))
        spikes_in_step(second[1], second[2], second[3])
        traces, baselines = [], []
        for amp, n, step, fs_n in (rheo, second):
            v = response(n)
            room = min(step.room_idx, v.size - step.onset_idx)
            if int(round(params.window_s * fs_n)) > room:
                end = step.room_end if step.room_idx <= v.size - step.onset_idx else "the recorded data's end"
                room_s = np.floor(room / fs_n * 1000) / 1000  # whole ms that fit
                return Selection(
                    "excluded",
                    f"sweep {n}: the {params.window_s:g} s window does not fit: {room_s:g} s from the step "
                    f"onset ({step.onset_idx / fs_n:.4g} s) to {end}; sweeps.window_s <= {room_s:g} would fit",
                )
            end_idx = step.onset_idx + int(round(params.window_s * fs_n))
            if np.isnan(v[step.onset_idx : end_idx]).any():
                raise _NanSweep(n)
            problem, baseline = check_sweep(v, fs_n, step, end_idx, params.qc)
            if problem:
                return Selection("excluded", f"sweep {n}: {problem}")
            baselines.append(baseline)
            traces.append(_cut(v, fs_n, step.onset_idx, params))
    except _NanSweep as nan:
        return Selection("excluded", f"NaN values in the response of sweep {nan.sweep_number}")

    attrs = {
        "sweep_numbers": [rheo[1], second[1]],
        "amplitudes_pa": [rheo[0], second[0]],
        "rheobase_pa": rheo[0],
        "second_offset_pa": abs(second[0] - target),
        "n_spikes": [n_spikes[rheo[1]], n_spikes[second[1]]],
        "fires_spontaneously": spontaneous,
        "bracket_sweep": lower[-1][1],  # the highest step below the rheobase: the file brackets it
        "fs_source_hz": [rheo[3], second[3]],
        "onset_s": [rheo[2].onset_idx / rheo[3], second[2].onset_idx / second[3]],
        "step_s": [rheo[2].duration_idx / rheo[3], second[2].duration_idx / second[3]],
        "baseline_mv": baselines,
        "layout": rec.layout,
        **rec.command_info(),
    }
    return Selection("ok", "", np.stack(traces).astype(np.float32), attrs)


def _no_second_reason(rheobase: float, target: float, above: list, params: SelectionParams) -> str:
    """Why no sweep serves as rheobase + plus_pa, and what would change that (only amplitudes
    above the rheobase can be the second sweep)."""
    head = (f"no sweep at rheobase+{params.plus_pa:g} pA = {target:g} ± {params.tolerance_pa:g} pA "
            f"(rheobase {rheobase:g} pA")  # fmt: skip
    if not above:
        return f"{head}; the ladder ends at the rheobase, below rheobase + {params.plus_pa:g} = {target:g} pA)"
    top = max(c[0] for c in above)
    nearest = min(above, key=lambda c: (abs(c[0] - target), c[1]))[0]
    hint = f"sweeps.tolerance_pa >= {abs(nearest - target):g} would accept {nearest:g} pA"
    if top < target:
        return f"{head}; the ladder ends at {top:g} pA, below rheobase + {params.plus_pa:g} = {target:g} pA; {hint})"
    return f"{head}; nearest amplitude above the rheobase {nearest:g} pA; {hint})"


def _fires_spontaneously(lower: list, rheo: tuple, response, params: SelectionParams) -> bool:
    """Whether the cell fires without depolarising current: an action potential before the
    rheobase sweep's step, or in the highest step at or below 0 pA."""
    def fires(v: np.ndarray, fs: float) -> bool:
        # no sample at the action potential's peak level: no action potential (spares ipfx's pass)
        if v.size <= 3 or np.isnan(v).any() or np.max(v) < params.min_ap_peak_mv:
            return False
        return bool(np.any(detect_spike_peaks(v, fs, 0.0, None, params.dvdt_cutoff_mv_ms)[1] >= params.min_ap_peak_mv))

    amp, n, step, fs = rheo
    if fires(response(n)[: step.onset_idx], fs):
        return True
    resting = [c for c in lower if c[0] <= 0]
    if not resting:
        return False
    amp0, n0, step0, fs0 = resting[-1]  # up to its step's end: not the rebound after a hyperpolarising step
    return fires(response(n0)[: step0.onset_idx + step0.duration_idx], fs0)


class _NanSweep(Exception):
    def __init__(self, sweep_number: int):
        super().__init__(sweep_number)
        self.sweep_number = sweep_number


def select_sweeps_file(nwb_path, out_path, params: SelectionParams, meta: dict, protocol=None) -> Selection:
    """Run ``select_sweeps`` and write the per-cell HDF5 atomically (also for excluded cells)."""
    sel = select_sweeps(nwb_path, params, protocol)
    if sel.status != "ok":
        log.warning("%s excluded: %s", meta.get("specimen_id", nwb_path), sel.reason)
    with atomic_h5(out_path) as f:
        if sel.traces_mv is not None:
            f.create_dataset("traces_mv", data=sel.traces_mv)
        base = {**meta, "status": sel.status, "reason": sel.reason, "source_file": str(nwb_path),
                "unexpected_error": sel.unexpected_error}
        p = asdict(params)
        p.pop("long_square_names")
        p.update({f"qc_{k}": v for k, v in p.pop("qc").items()})
        write_attrs(f, {**base, **{k: v for k, v in p.items() if k != "fs_hz"}, "fs_hz": params.fs_hz})
        write_attrs(f, sel.attrs)
    return sel


