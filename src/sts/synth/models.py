"""Class-specific spiking models: a leaky integrate-and-fire core with linear extras.

Why this design: a Python time-step loop over ~23k steps per sweep is too slow for
thousands of cells. Everything subthreshold is linear, so it is computed with IIR filters
(scipy.signal.lfilter) over all sweeps at once: membrane (tau_m, R_in), Ih-like sag and
rebound, a D-type-like inactivating K current (delayed / late spiking), a T-type-like
onset transient (initial bursts) and OU membrane noise. Spikes are then found sweep by
sweep: each threshold crossing subtracts a precomputed kernel (LIF reset + two adaptation
currents) from the rest of the trace, which is exact for a linear core. Finally a spike
waveform template (upstroke, peak, downstroke into the reset/AHP) is pasted at each spike
time at the file's sampling rate, so dV/dt detectors (20 mV/ms) see realistic spikes.
Units: mV, ms, pA, MOhm (mV = pA * MOhm / 1000).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

CLASSES = ("Pvalb", "Sst", "Vip/Lamp5", "Excitatory")

# (mean, sd, low, high) per class and parameter; deliberately overlapping.
_P = {  # Pvalb, Sst, Vip/Lamp5, Excitatory
    "el_mv": [(-69, 3, -78, -60), (-64, 3, -74, -58), (-66, 3, -75, -58), (-71, 3, -79, -62)],
    "r_mohm": [(130, 45, 50, 300), (230, 70, 90, 450), (300, 100, 110, 600), (180, 60, 70, 400)],
    "tau_ms": [(8, 2.5, 4, 16), (15, 4, 7, 28), (16, 5, 7, 30), (20, 5, 9, 35)],
    "theta_mv": [(-43, 3, -52, -35), (-46, 3, -54, -38), (-44, 3, -52, -36), (-44, 3, -52, -36)],
    "ahp_mv": [(20, 4, 10, 30), (14, 4, 6, 24), (13, 4, 5, 24), (10, 3, 4, 18)],
    "b_fast_pa": [(3, 3, 0, 15), (20, 8, 0, 45), (15, 8, 0, 40), (20, 8, 0, 45)],
    "tau_fast_ms": [(30, 10, 10, 60), (40, 12, 15, 80), (40, 12, 15, 80), (50, 15, 20, 100)],
    "b_slow_pa": [(1, 1, 0, 6), (4, 2, 0, 12), (3, 2, 0, 10), (6, 2.5, 0, 15)],
    "tau_slow_ms": [(300, 80, 100, 600), (400, 100, 150, 800), (400, 100, 150, 800), (500, 120, 200, 900)],
    "onset_frac": [(0.0, 0.05, 0, 0.2), (0.35, 0.2, 0, 0.9), (0.2, 0.2, 0, 0.8), (0.1, 0.1, 0, 0.5)],
    "onset_tau_ms": [(20, 5, 8, 40), (30, 10, 10, 60), (30, 10, 10, 60), (25, 8, 10, 50)],
    "delay_frac": [(0.12, 0.08, 0, 0.35), (0.03, 0.05, 0, 0.2), (0.2, 0.2, 0, 0.6), (0.04, 0.05, 0, 0.2)],
    "delay_tau_ms": [(80, 30, 20, 200), (100, 30, 30, 200), (300, 120, 50, 700), (100, 30, 30, 200)],
    "sag_frac": [(0.05, 0.03, 0, 0.15), (0.15, 0.07, 0, 0.35), (0.07, 0.05, 0, 0.25), (0.12, 0.06, 0, 0.3)],
    "sag_tau_ms": [(40, 10, 15, 80), (50, 15, 20, 100), (50, 15, 20, 100), (60, 15, 25, 110)],
    "noise_mv": [(0.25, 0.07, 0.1, 0.5), (0.35, 0.1, 0.15, 0.6), (0.6, 0.2, 0.2, 1.1), (0.3, 0.08, 0.12, 0.5)],
    "noise_tau_ms": [(6, 2, 2, 12), (8, 2, 3, 15), (10, 3, 3, 20), (8, 2, 3, 15)],
    "jitter_mv": [(0.4, 0.2, 0, 1.0), (0.6, 0.3, 0, 1.5), (1.2, 0.5, 0.2, 2.5), (0.5, 0.2, 0, 1.2)],
    "spike_amp_mv": [(68, 5, 55, 82), (75, 6, 60, 90), (72, 6, 58, 88), (80, 5, 65, 92)],
    "t_up_ms": [(0.33, 0.05, 0.22, 0.5), (0.42, 0.07, 0.28, 0.6), (0.42, 0.07, 0.28, 0.6), (0.6, 0.08, 0.4, 0.8)],
    "fall_ms": [(0.24, 0.05, 0.15, 0.4), (0.45, 0.1, 0.25, 0.75), (0.48, 0.1, 0.25, 0.8), (0.75, 0.12, 0.45, 1.1)],
    "amp_decay": [(0.05, 0.03, 0, 0.15), (0.15, 0.06, 0, 0.3), (0.12, 0.06, 0, 0.3), (0.2, 0.06, 0.05, 0.35)],
    "width_growth": [(0.05, 0.04, 0, 0.2), (0.2, 0.08, 0, 0.4), (0.15, 0.08, 0, 0.4), (0.3, 0.1, 0.05, 0.6)],
}


ATYPICAL_P = 0.15
_NEIGHBOURS = [  # rows: own class; columns: probability of the class it resembles
    [0.0, 0.7, 0.2, 0.1], [0.4, 0.0, 0.45, 0.15], [0.1, 0.6, 0.0, 0.3], [0.1, 0.5, 0.4, 0.0],
]


@dataclass(frozen=True)
class CellParams:
    """One cell's model parameters (units in the field names)."""

    el_mv: float; r_mohm: float; tau_ms: float; theta_mv: float; ahp_mv: float
    b_fast_pa: float; tau_fast_ms: float; b_slow_pa: float; tau_slow_ms: float
    onset_frac: float; onset_tau_ms: float; delay_frac: float; delay_tau_ms: float
    sag_frac: float; sag_tau_ms: float; noise_mv: float; noise_tau_ms: float; jitter_mv: float
    spike_amp_mv: float; t_up_ms: float; fall_ms: float; amp_decay: float; width_growth: float

    @property
    def rheobase_est_pa(self) -> float:
        """Deterministic long-step rheobase of the LIF core (pA)."""
        return (self.theta_mv - self.el_mv) * 1000.0 / self.r_mohm

    @property
    def window_ms(self) -> float:
        """Span of the pasted waveform (threshold to end of downstroke), at most widened."""
        return self.t_up_ms + 3.0 * self.fall_ms * (1.0 + self.width_growth)


def draw_params(cls: str, rng: np.random.Generator) -> CellParams:
    """Parameters of one cell of class ``cls`` (a clipped normal per parameter)."""
    k = CLASSES.index(cls)
    # Atypical cells (e.g. fast-spiking-like Sst, Sst-like Vip) take about half of their
    # parameters from a neighbouring class: this keeps classifiers well below 100 %.
    alt = k
    if rng.random() < ATYPICAL_P:
        alt = int(rng.choice(len(CLASSES), p=_NEIGHBOURS[k]))
    vals = {}
    for f in fields(CellParams):
        use = alt if alt != k and rng.random() < 0.5 else k
        mean, sd, lo, hi = _P[f.name][use]
        vals[f.name] = float(np.clip(rng.normal(mean, sd), lo, hi))
    if cls == "Vip/Lamp5" and rng.random() < 0.35:  # Lamp5-like late spiking
        vals["delay_frac"] = float(rng.uniform(0.35, 0.6))
        vals["delay_tau_ms"] = float(rng.uniform(250, 700))
    # Keep rheobase in a physiological 20..450 pA range by moving the threshold.
    rheo = (vals["theta_mv"] - vals["el_mv"]) * 1000.0 / vals["r_mohm"]
    rheo_c = float(np.clip(rheo, 20.0, 450.0))
    vals["theta_mv"] = vals["el_mv"] + rheo_c * vals["r_mohm"] / 1000.0
    return CellParams(**vals)


def _lowpass(x: np.ndarray, dt_ms: float, tau_ms: float) -> np.ndarray:
    """Exact one-pole low-pass along the last axis (unit DC gain), starting from 0."""
    a = np.exp(-dt_ms / tau_ms)
    from scipy.signal import lfilter  # lazy: Snakemake imports this package at parse time

    return lfilter([1.0 - a], [1.0, -a], x, axis=-1)


def subthreshold(p: CellParams, i_pa: np.ndarray, dt_ms: float, rng: np.random.Generator) -> np.ndarray:
    """Membrane potential (mV) without spikes, i_pa (n_sweeps, n) sampled every dt_ms."""
    pos = np.clip(i_pa, 0.0, None)
    on = (i_pa > 0).astype(float)
    i_eff = i_pa.copy()
    # Inactivating K current: a fraction of depolarising drive lost, recovering with tau.
    i_eff -= p.delay_frac * pos * (1.0 - _lowpass(on, dt_ms, p.delay_tau_ms))
    # Onset transient (T-type-like) after a depolarising step: initial burst.
    i_eff += p.onset_frac * pos * (on - _lowpass(on, dt_ms, p.onset_tau_ms))
    # Ih: opposes hyperpolarisation slowly (sag) and lingers after it (rebound).
    i_eff -= p.sag_frac * _lowpass(np.clip(i_pa, None, 0.0), dt_ms, p.sag_tau_ms) * 2.0
    v = p.el_mv + _lowpass(i_eff * p.r_mohm / 1000.0, dt_ms, p.tau_ms)
    # OU noise of stationary sd noise_mv; start in the stationary state.
    a = np.exp(-dt_ms / p.noise_tau_ms)
    w = rng.standard_normal(i_pa.shape) * p.noise_mv * np.sqrt(1.0 - a * a)
    w[:, 0] = rng.standard_normal(i_pa.shape[0]) * p.noise_mv
    from scipy.signal import lfilter

    return v + lfilter([1.0], [1.0, -a], w, axis=-1)


def _adapt_kernel(p: CellParams, n: int, dt_ms: float) -> np.ndarray:
    """Voltage drop (mV) after one spike from the two adaptation currents (exp current * membrane)."""
    t = np.arange(1, n + 1) * dt_ms
    k = np.zeros(n)
    em = np.exp(-t / p.tau_ms)
    for b, tau in ((p.b_fast_pa, p.tau_fast_ms), (p.b_slow_pa, p.tau_slow_ms)):
        k += b * p.r_mohm / 1000.0 * tau / (tau - p.tau_ms) * (np.exp(-t / tau) - em)
    return k


def find_spikes(p: CellParams, v: np.ndarray, dt_ms: float, rng: np.random.Generator, t0_ms: float = 0.0):
    """Threshold crossings per sweep; modifies v (n_sweeps, n) in place with resets/adaptation.

    Returns per sweep (spike_times_ms, threshold_mv) arrays; searches from t0_ms on.
    """
    n = v.shape[1]
    em = np.exp(-np.arange(1, n + 1) * dt_ms / p.tau_ms)
    kad = _adapt_kernel(p, n, dt_ms)
    n_ref = int(np.ceil((p.window_ms + 0.3) / dt_ms))
    out = []
    for vs in v:
        times, ths = [], []
        i = int(t0_ms / dt_ms) + 1
        th = p.theta_mv + rng.normal(0.0, p.jitter_mv)
        while i < n:
            above = vs[i:] >= th
            j = int(np.argmax(above))
            if not above[j]:
                break
            j += i
            frac = (th - vs[j - 1]) / (vs[j] - vs[j - 1]) if vs[j] > vs[j - 1] and vs[j - 1] < th else 1.0
            times.append((j - 1 + frac) * dt_ms)
            ths.append(th)
            # Reset from the next step on, so the resampled trace rises into the template.
            m = n - j - 1
            if m > 0:
                vs[j + 1 :] -= (th - (p.theta_mv - p.ahp_mv)) * em[:m] + kad[:m]
            i = j + n_ref
            th = p.theta_mv + rng.normal(0.0, p.jitter_mv)
        out.append((np.asarray(times), np.asarray(ths)))
    return out


def render(p: CellParams, v: np.ndarray, dt_ms: float, spikes, fs_hz: float, n_out: int) -> np.ndarray:
    """Traces (n_sweeps, n_out) in mV at fs_hz: v resampled, spike templates pasted in.

    Template from threshold th at t_k: exponential upstroke to th + A over t_up, then a
    Gaussian downstroke of width fall_ms that blends into the post-spike (reset) trace.
    Later spikes in a train are smaller and broader (amp_decay, width_growth).
    """
    dt_s = 1.0 / fs_hz
    t_out = np.arange(n_out) * dt_s * 1000.0  # ms
    t_mod = np.arange(v.shape[1]) * dt_ms
    out = np.empty((v.shape[0], n_out))
    w = int(np.ceil(p.window_ms * fs_hz / 1000.0)) + 1
    for s, (times, ths) in enumerate(spikes):
        vs = np.interp(t_out, t_mod, v[s])
        if times.size:
            k = np.arange(times.size)
            grow = 1.0 - np.exp(-k / 3.0)
            amp = p.spike_amp_mv * (1.0 - p.amp_decay * grow)
            fall = p.fall_ms * (1.0 + p.width_growth * grow)
            first = np.ceil(times * fs_hz / 1000.0).astype(int)
            idx = first[:, None] + np.arange(w)[None, :]
            ok = idx < n_out
            idx = np.minimum(idx, n_out - 1)
            tau = idx * (1000.0 / fs_hz) - times[:, None]  # ms since threshold
            end = p.t_up_ms + 3.0 * fall  # per spike
            post = np.interp(times + end, t_mod, v[s])
            up = (np.exp(2.0 * tau / p.t_up_ms) - 1.0) / (np.exp(2.0) - 1.0)
            x = (tau - p.t_up_ms) / fall[:, None]
            e_end = np.exp(-4.5)
            down = (np.exp(-0.5 * x * x) - e_end) / (1.0 - e_end)
            g = np.where(tau < p.t_up_ms, up, down)  # 0 -> 1 -> 0 (fraction of amplitude)
            blend = np.where(tau < p.t_up_ms, 0.0, 1.0 - g)  # base moves from threshold to post
            base = ths[:, None] + (post - ths)[:, None] * blend
            shape = base + amp[:, None] * g
            inside = ok & (tau <= end[:, None])
            vs[idx[inside]] = shape[inside]
        out[s] = vs
    return out
