"""Recording-health checks of the two sweeps used for a cell: is this a working current-clamp recording?

A model cell, an open pipette, a saturated amplifier or a dying cell can pass sweep selection
(a step is found and something crosses the spike threshold) yet feed the classifier a trace no
healthy neuron makes. The checks look for broken recordings, not for an unusual resting
potential; each reason names its ``sweeps.qc`` key. Per sweep (``check_sweep``):

* ``baseline_min_mv``..``baseline_max_mv`` (-120..-30 mV): the baseline (median of the 100 ms
  before the step). Wide on purpose: healthy cells rest at -100..-115 mV (some neurons, cold
  rigs, junction-potential-corrected data), and more negative than about -120 mV lies beyond
  any potassium reversal potential, so the cell is held there by current or an offset. Above
  -30 mV sodium channels are inactivated: no neuron fires repetitively from there, while a model
  cell or an open pipette sits near 0 mV.
* ``min_mv``..``max_mv`` (-150..+100 mV): every sample of the window fed to the classifier.
* ``rail_max_ms`` (10 ms): the window may spend at most this long, in total, at its exact
  maximum or its exact minimum value. A saturated amplifier or digitiser repeats one value (a
  clipped, flat-topped trace; a pipette pinned at the rail); a living cell's noise does not.
* ``drift_max_mv`` (30 mV): the baseline after the step (median of 50..150 ms after its end,
  before the sweep's next epoch) stays this close to the baseline before it. A lost seal or a
  dying cell moves the membrane potential by tens of millivolts within a sweep; after-
  hyperpolarisations and spontaneous firing of healthy cells move it by less than 20 mV.

Spikes that never overshoot are not action potentials for sweep selection
(``sweeps.min_ap_peak_mv``, -10 mV): a cell whose spikes all stay below it is excluded there
("no long-square sweep with a spike peaking at or above ...").

Thresholds, from the real recordings of ``../shared/realdata`` and ``../shared/realdata2`` (36
spiking ladders of five labs, every sweep, pyabf's reading; tests/test_qc.py): baselines -80.5..
-40.3 mV; post- minus pre-step baseline -17.1..+17.3 mV; at most 3.4 ms at a window's exact
extreme (1.9 ms in 0.5 s windows). Each threshold keeps a margin of at least 10 mV or 3x over these.

ipfx's rig-noise criteria (baseline noise, leak current) are not applied: other labs' rigs
differ and their files rarely carry the data those criteria need.
"""

from __future__ import annotations

import numpy as np

from sts.settings import QcParams
from sts.recordings.steps import Step

BASELINE_S = 0.1  # baseline window before the step onset
MIN_BASELINE_S = 0.005  # shorter: no baseline (or post-step baseline) check
POST_DELAY_S = 0.05  # the post-step baseline starts after the step's capacitive and fast AHP transients
POST_S = 0.1  # post-step baseline window


def check_sweep(v_mv: np.ndarray, fs_hz: float, step: Step, end: int, qc: QcParams) -> tuple[str, float]:
    """('' or what is wrong, baseline mV) for one sweep.

    v_mv: (n,) the whole sweep's membrane potential (mV) at fs_hz; the window fed to the
    classifier is [step.onset_idx, end) (samples).
    """
    onset = step.onset_idx
    baseline = _median(v_mv, onset - int(round(BASELINE_S * fs_hz)), onset, fs_hz)
    if np.isfinite(baseline) and not qc.baseline_min_mv <= baseline <= qc.baseline_max_mv:
        return (
            f"baseline membrane potential {baseline:.1f} mV before the step is outside "
            f"{qc.baseline_min_mv:g}..{qc.baseline_max_mv:g} mV (sweeps.qc.baseline_min_mv/baseline_max_mv): "
            "a model cell, an open pipette or a depolarised, dying cell?",
            baseline,
        )
    window = v_mv[onset:end]
    low, high = float(np.min(window)), float(np.max(window))
    at_rail = max(np.count_nonzero(window == high), np.count_nonzero(window == low))
    if at_rail / fs_hz * 1e3 > qc.rail_max_ms:
        value = high if np.count_nonzero(window == high) == at_rail else low
        return (
            f"the window sits at exactly {value:.1f} mV for {at_rail / fs_hz * 1e3:.1f} ms, more than "
            f"sweeps.qc.rail_max_ms = {qc.rail_max_ms:g} ms: a saturated amplifier or digitiser (clipped trace)?",
            baseline,
        )
    if low < qc.min_mv or high > qc.max_mv:
        return (
            f"membrane potential reaches {low:.0f}..{high:.0f} mV in the window, beyond the physiological range "
            f"{qc.min_mv:g}..{qc.max_mv:g} mV (sweeps.qc.min_mv/max_mv): not a healthy neuron in current clamp?",
            baseline,
        )
    step_end = onset + step.duration_idx
    post_start = step_end + int(round(POST_DELAY_S * fs_hz))
    post_stop = min(post_start + int(round(POST_S * fs_hz)), onset + step.room_idx)
    after = _median(v_mv, post_start, post_stop, fs_hz)
    if np.isfinite(baseline) and np.isfinite(after) and abs(after - baseline) > qc.drift_max_mv:
        return (
            f"the baseline moves from {baseline:.1f} mV before the step to {after:.1f} mV after it, more than "
            f"sweeps.qc.drift_max_mv = {qc.drift_max_mv:g} mV: a lost seal or a dying cell?",
            baseline,
        )
    return "", baseline


def _median(v_mv: np.ndarray, start: int, stop: int, fs_hz: float) -> float:
    """Median of [start, stop) (clipped to the trace); NaN when shorter than MIN_BASELINE_S or not finite."""
    part = v_mv[max(0, start) : max(0, min(stop, v_mv.size))]
    return float(np.median(part)) if part.size and part.size >= MIN_BASELINE_S * fs_hz else float("nan")
