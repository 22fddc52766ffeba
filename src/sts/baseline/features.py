"""Per-cell electrophysiological (EP) features from the cell's own long-square sweeps, by ipfx.

``compute_features(nwb_path)`` reads every long-square sweep with ``sts.recordings`` (ipfx 2.1.2
cannot open these files itself), builds ipfx ``Sweep`` objects from the arrays and runs
ipfx's ``LongSquareAnalysis`` (spike detection: 10 kHz Bessel, dV/dt >= 20 mV/ms, as
``ipfx.data_set_features.extract_cell_long_square_features``). The per-cell record is then
read off the analysis as ipfx's own ``feature_record.build_cell_feature_record`` does, so the
names and units are those of the Allen cell-feature table and of the patch-seq EP table
(../shared/reference/*_EP_features.csv):

* ``vrest``, ``ri``, ``sag``, ``vm_for_sag``, ``tau`` (ms), ``f_i_curve_slope`` (Hz/pA) —
  cell level. ``ri`` is ipfx's input resistance (MOhm) and ``threshold_i_long_square`` the
  rheobase (pA); the Allen table's ``input_resistance_mohm`` is a different (LIMS) quantity.
* ``adaptation``, ``latency`` (s), ``avg_isi`` (ms) — the hero sweep (first spiking sweep
  between rheobase + 39 and + 61 pA, else the one closest to rheobase + 39 pA).
* ``*_long_square`` — the first spike of the rheobase sweep (lowest positive spiking
  amplitude). Voltages in mV, ``width_long_square`` in ms, ``*_t_long_square`` in s **from
  the step onset** (the published tables count from the sweep or epoch start, which differs by
  dataset: ~1.02 s Allen, ~0.5 s patch-seq; subtract that to compare).
* ``has_burst``, ``has_pause``, ``has_delay`` (0/1) — ipfx's burst and pause analyses and the
  delay ratio of the hero sweep (ipfx 2.1.2's ``pause``/``burst`` wrappers are broken, so its
  detectors are called directly). has_burst: at least one burst detected; has_pause: at least one
  pause; has_delay: ``delay_ratio`` above ``FeatureParams.delay_ratio_min``. ``delay_ratio`` is
  ipfx's quantity, latency / dominant time constant of the rise from step onset to the first
  spike, with that time constant fitted by ``sts.baseline.prespike`` (ipfx's own fit is not
  reproducible). The published Allen table has the three has_* columns constant False and the
  patch-seq table lacks them.
* ``first_isi`` (ms), ``isi_cv``, ``avg_rate`` (Hz) of the hero sweep: extra, not in the
  published tables.

NaN is kept where a feature is undefined, never imputed: ``avg_isi`` and ``first_isi`` need
two spikes in the hero sweep, ``adaptation`` three; slow-trough features need a slow trough;
spike-shape features need a first spike not clipped by the step end; ``tau`` needs a
successful exponential fit. A cell whose features cannot be computed at all
(unreadable file, no long squares, NaN in a step, no spiking sweep, no subthreshold sweep in
ipfx's range, any ipfx error) gets ``status='excluded'`` and a reason naming cause and file.

Sweeps are aligned on their own step onset (found in the stimulus trace), so ipfx's single
start/end window fits every sweep even if onsets differ; the stimulus is baseline-subtracted
so ipfx's ``stim_amp`` is the step amplitude. Long squares whose step is cut short (recording
stopped early) or shorter than the cell's usual step are left out and counted in ``info``.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from sts.baseline.prespike import dominant_tau_s
from sts.recordings import NwbReadError, open_recording
from sts.recordings.steps import ladder_steps
from sts.prep.sweeps import SelectionParams, find_step, is_long_square
from sts.io.text import clean_text

log = logging.getLogger(__name__)

# Output feature name -> (where ipfx has it, ipfx key, scale to the output unit).
#   cell: LongSquareAnalysis.analyze() result; hero: hero-sweep spike-train features;
#   rheo_spike: first spike of the rheobase sweep; hero_extra: computed here with ipfx's
#   burst / pause functions and sts.baseline.prespike on the hero sweep (value -> 0/1 by the rule in the docstring).
FEATURE_MAP: dict[str, tuple[str, str, float]] = {
    "f_i_curve_slope": ("cell", "fi_fit_slope", 1.0),  # Hz/pA
    "threshold_i_long_square": ("cell", "rheobase_i", 1.0),  # pA (rheobase)
    "vrest": ("cell", "v_baseline", 1.0),  # mV, mean pre-step baseline of all long squares
    "ri": ("cell", "input_resistance", 1.0),  # MOhm
    "sag": ("cell", "sag", 1.0),  # fraction
    "vm_for_sag": ("cell", "vm_for_sag", 1.0),  # mV
    "tau": ("cell", "tau", 1e3),  # s -> ms
    "avg_isi": ("hero", "mean_isi", 1e3),  # s -> ms
    "adaptation": ("hero", "adapt", 1.0),
    "latency": ("hero", "latency", 1.0),  # s
    "first_isi": ("hero", "first_isi", 1e3),  # s -> ms
    "isi_cv": ("hero", "isi_cv", 1.0),
    "avg_rate": ("hero", "avg_rate", 1.0),  # Hz
    "has_burst": ("hero_extra", "burst", 1.0),
    "has_pause": ("hero_extra", "pause", 1.0),
    "has_delay": ("hero_extra", "delay", 1.0),
    "delay_ratio": ("hero_extra", "delay_ratio", 1.0),  # latency / pre-spike rise time constant
    "upstroke_downstroke_ratio_long_square": ("rheo_spike", "upstroke_downstroke_ratio", 1.0),
    "peak_v_long_square": ("rheo_spike", "peak_v", 1.0),
    "peak_t_long_square": ("rheo_spike", "peak_t", 1.0),
    "trough_v_long_square": ("rheo_spike", "trough_v", 1.0),
    "trough_t_long_square": ("rheo_spike", "trough_t", 1.0),
    "fast_trough_v_long_square": ("rheo_spike", "fast_trough_v", 1.0),
    "fast_trough_t_long_square": ("rheo_spike", "fast_trough_t", 1.0),
    "slow_trough_v_long_square": ("rheo_spike", "slow_trough_v", 1.0),
    "slow_trough_t_long_square": ("rheo_spike", "slow_trough_t", 1.0),
    "threshold_v_long_square": ("rheo_spike", "threshold_v", 1.0),
    "threshold_t_long_square": ("rheo_spike", "threshold_t", 1.0),
    "width_long_square": ("rheo_spike", "width", 1e3),  # s -> ms
}
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURE_MAP)
# has_delay: delay ratio (latency / pre-spike rise time constant) above this. Prompt first
# spikes give 0.2-7 on the synthetic cohort and real recordings, delayed (late-spiking) cells
# 16-57; the published tables give no positive example to calibrate on (Allen: all False).
DELAY_RATIO_MIN = 10.0
MIN_STEP_S = SelectionParams.min_step_s  # the ladder's step is found as sweep selection finds it


@dataclass(frozen=True)
class FeatureParams:
    """How a cell's EP features are computed. The spike threshold and which sweeps make the ladder
    follow the config's ``sweeps:`` block (``sts.settings.feature_params``), so the baseline reads
    the same steps as sweep selection; the rest are ipfx's long-square choices."""

    dv_cutoff_mv_ms: float = SelectionParams.dvdt_cutoff_mv_ms  # 20: ipfx's default for long squares
    filter_khz: float = 10.0  # ipfx Bessel low-pass before dV/dt
    subthresh_min_amp_pa: float = -100.0  # ipfx's choice for 20 pA coarse steps
    pre_s: float = 0.3  # data kept before the step onset (ipfx baseline needs 0.1 s)
    post_s: float = 0.2  # data kept after the step end
    duration_tolerance: float = 0.02  # a step this much shorter than the cell's usual one is dropped
    long_square_names: tuple[str, ...] = SelectionParams().long_square_names
    min_step_s: float = MIN_STEP_S  # shortest step that counts as the ladder's
    delay_ratio_min: float = DELAY_RATIO_MIN  # has_delay threshold
    any_square_step: bool = False  # NWB sweeps of any protocol name count (the step is found in the stimulus)
    # delay_ratio's time constant: "sts" (sts.baseline.prespike, reproducible) or "ipfx" (ipfx's own
    # fit, which differs from call to call: only to serve LightGBM models trained on it)
    delay_fit: str = "sts"

    def __post_init__(self):
        if self.delay_fit not in DELAY_FITS:
            raise ValueError(f"feature parameters: delay_fit {self.delay_fit!r}: expected one of {DELAY_FITS}")

    @classmethod
    def from_dict(cls, values: dict) -> "FeatureParams":
        """As saved with ``dataclasses.asdict``; every field required, no unknown key (they shape features).
        A model saved before a field existed gets what the code did then (``LEGACY``)."""
        values = {**LEGACY, **values}
        names = [f.name for f in fields(cls)]
        unknown, missing = sorted(set(values) - set(names)), [n for n in names if n not in values]
        if unknown or missing:
            raise ValueError(f"feature parameters: unknown keys {unknown}, missing keys {missing}")
        if not isinstance(values["any_square_step"], bool):
            raise ValueError(f"feature parameters: any_square_step must be true or false, not {values['any_square_step']!r}")
        kept = ("long_square_names", "any_square_step", "delay_fit")
        out = {k: float(values[k]) for k in names if k not in kept}
        lsn = values["long_square_names"]
        if not isinstance(lsn, (list, tuple)) or not all(isinstance(n, str) for n in lsn):
            raise ValueError(f"feature parameters: long_square_names must be a list of names, not {lsn!r}")
        return cls(**out, long_square_names=tuple(lsn), any_square_step=values["any_square_step"],
                   delay_fit=str(values["delay_fit"]))  # fmt: skip


DELAY_FITS = ("sts", "ipfx")
# Fields added after models were first saved, at the value that reproduces those models' features.
LEGACY = {"any_square_step": False, "delay_fit": "ipfx"}


@dataclass
class FeatureResult:
    status: str  # 'ok' or 'excluded'
    reason: str = ""
    features: dict[str, float] = field(default_factory=dict)
    info: dict = field(default_factory=dict)  # sweeps used, rheobase/hero sweep numbers...
    unexpected_error: str = ""  # exception type when an unexpected error excluded the cell (sts.prep.sweeps.failed)
    # "rheobase"/"hero" -> (sweep number, amplitude pA, t_s from step onset, v_mv): what sts predict's
    # figure draws; not written
    sweeps: dict = field(default_factory=dict)

    def __post_init__(self):
        # Reasons quote readers' and files' text: one line, cut (as sts.prep.sweeps.Selection's).
        self.reason = clean_text(self.reason) if self.reason else ""


class FeatureFailure(Exception):
    """A cell whose features cannot be computed; the message is the exclusion reason."""


def compute_features(nwb_path: str | Path, params: FeatureParams = FeatureParams(), protocol=None) -> FeatureResult:
    """EP features of one cell; never raises for bad data: the cell is excluded with a reason.

    ``protocol`` (``sts.recordings.abf.Protocol``): the step ladder of an ABF file without a command waveform.
    """
    from sts.prep.sweeps import WatchedRecording

    try:
        rec = WatchedRecording(open_recording(nwb_path, protocol))
    except NwbReadError as err:
        return FeatureResult("excluded", str(err))
    except Exception as err:  # that file only, as in sweep selection
        return _failed(err, nwb_path)
    try:
        with rec:
            by_name = rec.named_protocols and not params.any_square_step
            numbers = [n for n in rec.sweep_numbers
                       if not by_name or is_long_square(rec.stimulus_name(n), params.long_square_names)]  # fmt: skip
            loaded = {n: (*rec.load(n), rec.fs_hz(n)) for n in numbers}
            # The ladder's step as sweep selection finds it (pre-pulses and test steps are not it).
            steps = ladder_steps({n: (stim, fs, rec.epochs(n)) for n, (stim, _, fs) in loaded.items()}, params.min_step_s)
            raw = [(n, *loaded[n], steps[n]) for n in numbers]
            layout = rec.layout
    except NwbReadError as err:
        return FeatureResult("excluded", str(err))
    except Exception as err:
        return _failed(err, nwb_path, rec.sweep_number)
    result = features_from_arrays(raw, params, source=str(nwb_path))
    result.info.setdefault("layout", layout)
    return result


def _failed(err: Exception, path, sweep_number=None) -> FeatureResult:
    """Excluded after an exception other than NwbReadError: marked unexpected unless the HDF5
    library failed on a damaged file (``sts.prep.sweeps.failed``: traceback logged)."""
    from sts.prep.sweeps import failed

    sel = failed(err, path, sweep_number)
    return FeatureResult("excluded", sel.reason, unexpected_error=sel.unexpected_error)


def features_from_arrays(sweeps, params: FeatureParams = FeatureParams(), source: str = "") -> FeatureResult:
    """EP features from a cell's long squares given as (number, stimulus_pa, response_mv, fs_hz[, step]).

    Each sweep is a whole recorded sweep (test pulse and baseline included); the step is found
    in the stimulus. ``source`` names the cell's file in exclusion reasons.
    """
    where = f" in {source}" if source else ""
    try:
        prepared, info = _prepare(sweeps, params, where)
        return _analyze(prepared, info, params, where)
    except FeatureFailure as err:
        return FeatureResult("excluded", str(err))
    except Exception as err:  # an ipfx error on this cell must not stop the run
        log.debug("ipfx failure%s", where, exc_info=True)
        return FeatureResult("excluded", f"ipfx error{where}: {type(err).__name__}: {err}")


@dataclass
class _LS:
    number: int
    amplitude_pa: float
    fs_hz: float
    t: np.ndarray  # s from step onset
    v: np.ndarray  # mV
    i: np.ndarray  # pA, baseline-subtracted
    duration_s: float


def _prepare(sweeps, params: FeatureParams, where: str) -> tuple[list[_LS], dict]:
    found = []
    for n, stim, resp, fs, *given in sweeps:
        stim, resp = np.asarray(stim, dtype=np.float64), np.asarray(resp, dtype=np.float64)
        step = given[0] if given else find_step(stim, fs)
        if step is not None and step.amplitude_pa != 0:
            found.append((n, fs, stim, resp, step))
    if not found:
        raise FeatureFailure(f"no long-square sweeps{where}")
    usual = float(np.median([s.duration_idx / fs for _, fs, _, _, s in found]))
    prepared, dropped = [], []
    for n, fs, stim, resp, step in found:
        dur = step.duration_idx / fs
        end = step.onset_idx + step.duration_idx
        if dur < usual * (1 - params.duration_tolerance) or end >= resp.size:
            dropped.append(int(n))  # step cut short by the end of the recording, or a shorter protocol
            continue
        lo = max(step.onset_idx - int(round(params.pre_s * fs)), 0)
        hi = min(end + int(round(params.post_s * fs)), resp.size)
        v = resp[lo:hi]
        if np.isnan(v).any():
            raise FeatureFailure(f"NaN values in the response of long-square sweep {n}{where}")
        baseline = float(np.median(stim[lo : step.onset_idx])) if step.onset_idx > lo else 0.0
        t = (np.arange(lo, hi) - step.onset_idx) / fs
        prepared.append(_LS(int(n), step.amplitude_pa, float(fs), t, v, stim[lo:hi] - baseline, dur))
    if not prepared:
        raise FeatureFailure(f"no complete long-square sweep{where} (all {len(found)} cut short)")
    prepared.sort(key=lambda s: (s.amplitude_pa, s.number))
    info = {"n_long_squares": len(prepared), "dropped_sweeps": dropped, "step_duration_s": usual}
    return prepared, info


def _ipfx_sweep(s: _LS):
    from ipfx.sweep import Sweep

    whole = (0, s.t.size - 1)
    epochs = {"test": None, "sweep": whole, "recording": whole, "stim": whole, "experiment": whole}
    return Sweep(s.t, s.v, s.i, clamp_mode="CurrentClamp", sampling_rate=s.fs_hz,
                 sweep_number=s.number, epochs=epochs)


def _analyze(sweeps: list[_LS], info: dict, params: FeatureParams, where: str) -> FeatureResult:
    from ipfx import spike_train_features as strf
    from ipfx.error import FeatureError
    from ipfx.feature_extractor import SpikeFeatureExtractor, SpikeTrainFeatureExtractor
    from ipfx.stimulus_protocol_analysis import LongSquareAnalysis
    from ipfx.sweep import SweepSet

    duration = info["step_duration_s"]
    # ipfx refuses a low-pass at or above Nyquist (10-20 kHz ABF files): filter only below it.
    fs_min = min(s.fs_hz for s in sweeps)
    filt = params.filter_khz if params.filter_khz and params.filter_khz * 1e3 < fs_min / 2 else None
    spx = SpikeFeatureExtractor(start=0.0, end=duration, filter=filt,
                                dv_cutoff=params.dv_cutoff_mv_ms)
    sptx = SpikeTrainFeatureExtractor(start=0.0, end=duration)
    lsa = LongSquareAnalysis(spx, sptx, subthresh_min_amp=params.subthresh_min_amp_pa)
    sweep_set = SweepSet([_ipfx_sweep(s) for s in sweeps])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            cell = lsa.analyze(sweep_set)
        except FeatureError as err:
            raise FeatureFailure(f"{err} ({len(sweeps)} long squares, "
                                 f"{sweeps[0].amplitude_pa:g} to {sweeps[-1].amplitude_pa:g} pA){where}")
        hero = cell["hero_sweep"]
        rheo = cell["rheobase_sweep"]
        rheo_spikes = cell["spikes_set"][rheo.name]
        hero_spikes = cell["spikes_set"][hero.name]
        hero_sweep = sweep_set.sweeps[hero.name]
        extra = _hero_extra(strf, hero_sweep, hero_spikes, params, duration)

    sources = {"cell": cell, "hero": hero, "rheo_spike": rheo_spikes.iloc[0], "hero_extra": extra}
    features = {}
    for name, (src, key, scale) in FEATURE_MAP.items():
        features[name] = _num(sources[src].get(key, math.nan)) * scale
    # ipfx reads the amplitude off one stimulus sample (float32 in files): 179.99998 -> 180.0
    features["threshold_i_long_square"] = round(features["threshold_i_long_square"], 2)
    info = {**info, "rheobase_sweep": sweeps[rheo.name].number, "hero_sweep": sweeps[hero.name].number,
            "hero_amplitude_pa": _num(hero["stim_amp"]),
            "n_spiking_sweeps": int(len(cell["spiking_sweeps"]))}
    drawn = {k: (s.number, s.amplitude_pa, s.t, s.v) for k, s in (("rheobase", sweeps[rheo.name]),
                                                                 ("hero", sweeps[hero.name]))}  # fmt: skip
    return FeatureResult("ok", "", features, info, sweeps=drawn)


def _hero_extra(strf, sweep, spikes, params: FeatureParams, duration: float) -> dict[str, float]:
    """has_burst / has_pause (0/1) by ipfx's detectors, delay_ratio and has_delay, on the hero sweep.

    ipfx 2.1.2's wrappers ``strf.pause`` / ``strf.burst`` call ``spike_features.detect_*``,
    which moved to ``spike_train_features``, so the wrappers' few lines are repeated here.
    ipfx's ``strf.delay`` serves only ``delay_fit="ipfx"``: its fit differs from call to call
    (``sts.baseline.prespike``).
    """
    out = {"burst": 0.0, "pause": 0.0}
    if len(spikes) >= 3:  # a burst or a pause needs ISIs to compare
        isis = strf.get_isis(sweep.t, spikes["threshold_index"].values.astype(int))
        isi_types = spikes["isi_type"][:-1].values
        pauses = strf.detect_pauses(isis, isi_types, cost_weight=1.0)
        bursts = strf.detect_bursts(
            isis, isi_types, spikes["fast_trough_v"].values, spikes["fast_trough_t"].values,
            spikes["slow_trough_v"].values, spikes["slow_trough_t"].values,
            spikes["threshold_v"].values, tol=0.5, pause_cost=1.0)
        out = {"burst": float(len(bursts) > 0), "pause": float(len(pauses) > 0)}
    ratio = math.nan
    if len(spikes) and params.delay_fit == "ipfx":
        ratio = _num(strf.delay(sweep.t, sweep.v, spikes, 0.0, duration)[0])
    elif len(spikes):  # latency / dominant time constant of the rise from step onset to the first spike
        latency = float(spikes["threshold_t"].values[0])
        rise = (sweep.t >= 0.0) & (sweep.t < latency)
        ratio = latency / dominant_tau_s(sweep.t[rise], sweep.v[rise])
    out["delay_ratio"] = ratio
    out["delay"] = float(ratio > params.delay_ratio_min) if np.isfinite(ratio) else math.nan
    return out


def _num(value) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out
