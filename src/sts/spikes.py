"""Spike detection by dV/dt threshold, as ipfx does it (numpy only, for start-up time).

ipfx (``SpikeFeatureExtractor``) low-passes the trace (10 kHz Bessel), marks upward
crossings of dV/dt = 20 mV/ms, takes the voltage peak after each crossing and drops
candidates whose peak is below -30 mV or less than 2 mV above the threshold. We do the
same with a 0.1 ms moving average as the low-pass (which tames the derivative of noise at
50-200 kHz) and require repolarisation between spikes so one noisy upstroke counts once.
Tests compare the counts with ipfx on synthetic traces.
"""

from __future__ import annotations

import numpy as np

SMOOTH_S = 1e-4  # moving-average width: a ~10 kHz low-pass before differentiating
MIN_PEAK_MV = -30.0
MIN_HEIGHT_MV = 2.0


def smooth(v_mv: np.ndarray, fs_hz: float) -> np.ndarray:
    """Centred moving average over SMOOTH_S seconds (odd length; identity below 3 samples)."""
    width = int(round(SMOOTH_S * fs_hz))
    width += 1 - width % 2
    if width < 3:
        return np.asarray(v_mv, dtype=np.float64)
    kernel = np.full(width, 1.0 / width)
    padded = np.pad(np.asarray(v_mv, dtype=np.float64), width // 2, mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def detect_spikes(
    v_mv: np.ndarray, fs_hz: float, start_s: float = 0.0, end_s: float | None = None,
    dvdt_cutoff_mv_ms: float = 20.0,
) -> np.ndarray:
    """Spike threshold times (s, from the trace's first sample) within [start_s, end_s).

    v_mv: (n,) membrane potential in mV sampled at fs_hz. A spike is an upward crossing of
    dV/dt >= dvdt_cutoff_mv_ms followed by a peak above -30 mV and at least 2 mV above the
    crossing, with the voltage falling back below half-height before the next spike.
    """
    v = smooth(v_mv, fs_hz)
    i0 = max(int(round(start_s * fs_hz)), 1)
    i1 = v.size if end_s is None else min(int(round(end_s * fs_hz)), v.size)
    if i1 - i0 < 3:
        return np.empty(0)
    dvdt = np.diff(v) * (fs_hz / 1000.0)  # mV/ms; dvdt[i] = slope between i and i+1
    seg = dvdt[i0 - 1 : i1 - 1]
    ups = np.flatnonzero((seg[1:] >= dvdt_cutoff_mv_ms) & (seg[:-1] < dvdt_cutoff_mv_ms)) + i0
    spikes = []
    ready_below = np.inf  # the voltage must fall below this before another spike counts
    last_peak = -1
    for n, c in enumerate(ups):
        if c <= last_peak:
            continue
        stop = ups[n + 1] if n + 1 < len(ups) else min(i1 + int(fs_hz * 2e-3), v.size)
        if np.isfinite(ready_below) and not (v[last_peak:c + 1] < ready_below).any():
            continue
        peak = c + int(np.argmax(v[c:stop])) if stop > c else c
        if v[peak] < MIN_PEAK_MV or v[peak] - v[c] < MIN_HEIGHT_MV:
            continue
        spikes.append(c / fs_hz)
        ready_below = v[c] + 0.5 * (v[peak] - v[c])
        last_peak = peak
    return np.asarray(spikes)
