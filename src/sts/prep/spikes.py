"""Spike detection exactly as ipfx's ``SpikeFeatureExtractor`` finds spikes.

The same ipfx functions in the same order (``ipfx.spike_detector``): dV/dt from a 4-pole
Bessel low-pass at 10 kHz (none when the sampling rate cannot carry it, as for 10-20 kHz
ABF files), upward crossings of the dV/dt cutoff (20 mV/ms), the peak after each, candidates
dropped whose peak is below -30 mV or less than 2 mV above threshold, thresholds refined to
5 % of the upstroke, and threshold-to-peak intervals over 5 ms rejected. Only the per-spike
features that ipfx computes afterwards are skipped (they cost most of its time).
"""

from __future__ import annotations

import numpy as np

FILTER_KHZ = 10.0  # ipfx's default low-pass
MIN_PEAK_MV = -30.0
MIN_HEIGHT_MV = 2.0
MAX_INTERVAL_S = 0.005
THRESH_FRAC = 0.05


def filter_khz(fs_hz: float) -> float | None:
    """ipfx's 10 kHz Bessel when below Nyquist, else no filter (ipfx would refuse it)."""
    return FILTER_KHZ if FILTER_KHZ * 1e3 < fs_hz / 2 else None


def detect_spikes(
    v_mv: np.ndarray, fs_hz: float, start_s: float = 0.0, end_s: float | None = None,
    dvdt_cutoff_mv_ms: float = 20.0,
) -> np.ndarray:
    """Spike threshold times (s, from the trace's first sample) within [start_s, end_s).

    v_mv: (n,) membrane potential in mV sampled at fs_hz.
    """
    return detect_spike_peaks(v_mv, fs_hz, start_s, end_s, dvdt_cutoff_mv_ms)[0]


def detect_spike_peaks(
    v_mv: np.ndarray, fs_hz: float, start_s: float = 0.0, end_s: float | None = None,
    dvdt_cutoff_mv_ms: float = 20.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(threshold times s, peak potentials mV) of the spikes ``detect_spikes`` finds."""
    try:
        return _detect(v_mv, fs_hz, start_s, end_s, dvdt_cutoff_mv_ms)
    except AssertionError:
        # ipfx re-checks a threshold over the 10 ms after it and asserts that this lies inside the
        # trace: a spike in the trace's last 10 ms. Held at its last value, the trace has them.
        v = np.asarray(v_mv, dtype=np.float64)
        end = (v.size - 1) / fs_hz if end_s is None else min(end_s, (v.size - 1) / fs_hz)
        pad = np.full(int(np.ceil(3 * MAX_INTERVAL_S * fs_hz)) + 2, v[-1] if v.size else 0.0)
        return _detect(np.r_[v, pad], fs_hz, start_s, end, dvdt_cutoff_mv_ms)


def _detect(v_mv, fs_hz: float, start_s: float, end_s: float | None, dvdt_cutoff_mv_ms: float):
    from ipfx import spike_detector as spkd
    from ipfx.time_series_utils import calculate_dvdt

    v = np.asarray(v_mv, dtype=np.float64)
    none = (np.empty(0), np.empty(0))
    if v.size < 3:
        return none
    t = np.arange(v.size) / fs_hz
    end = t[-1] if end_s is None else min(end_s, t[-1])
    if end - start_s < 3 / fs_hz:
        return none
    filt = filter_khz(fs_hz)
    dvdt = calculate_dvdt(v, t, filt)
    spikes = spkd.detect_putative_spikes(v, t, start_s, end, dv_cutoff=dvdt_cutoff_mv_ms, dvdt=dvdt)
    peaks = spkd.find_peak_indexes(v, t, spikes, end)
    spikes, peaks = spkd.filter_putative_spikes(v, t, spikes, peaks, MIN_HEIGHT_MV, MIN_PEAK_MV, dvdt=dvdt)
    if not spikes.size:
        return none
    upstrokes = spkd.find_upstroke_indexes(v, t, spikes, peaks, dvdt=dvdt)
    thresholds = spkd.refine_threshold_indexes(v, t, upstrokes, THRESH_FRAC, dvdt=dvdt)
    thresholds, peaks, *_ = spkd.check_thresholds_and_peaks(v, t, thresholds, peaks, upstrokes, start_s, end,
                                                            MAX_INTERVAL_S, dvdt=dvdt)  # fmt: skip
    return t[np.asarray(thresholds, dtype=int)], v[np.asarray(peaks, dtype=int)]
