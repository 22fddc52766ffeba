"""Physiological checks of a sweep used for a cell: is this a healthy neuron in current clamp?

A model cell, an open pipette or a dying cell can pass sweep selection (a step is found and
something crosses the spike threshold) yet feed the classifier a trace no neuron makes.
Two checks, thresholds in config (``sweeps.qc``):

* the baseline membrane potential (median over the 100 ms before the step onset) lies in
  ``baseline_min_mv``..``baseline_max_mv`` (default -100..-30 mV);
* the window fed to the classifier stays within ``min_mv``..``max_mv`` (default -150..+100 mV).

ipfx's rig-noise criteria (baseline noise, leak current) are not applied: other labs' rigs
differ and their files rarely carry the data those criteria need.
"""

from __future__ import annotations

import numpy as np

from sts.settings import QcParams

BASELINE_S = 0.1  # baseline window before the step onset
MIN_BASELINE_S = 0.005  # shorter: no baseline check


def check_sweep(v_mv: np.ndarray, fs_hz: float, onset: int, end: int, qc: QcParams) -> tuple[str, float]:
    """('' or what is wrong, baseline mV) for a response whose window is [onset, end) (samples)."""
    lo = max(0, onset - int(round(BASELINE_S * fs_hz)))
    baseline = float(np.median(v_mv[lo:onset])) if onset - lo >= MIN_BASELINE_S * fs_hz else float("nan")
    if np.isfinite(baseline) and not qc.baseline_min_mv <= baseline <= qc.baseline_max_mv:
        return (
            f"baseline membrane potential {baseline:.1f} mV before the step is outside the physiological range "
            f"{qc.baseline_min_mv:g}..{qc.baseline_max_mv:g} mV (sweeps.qc.baseline_min_mv/baseline_max_mv)",
            baseline,
        )
    window = v_mv[onset:end]
    low, high = float(np.min(window)), float(np.max(window))
    if low < qc.min_mv or high > qc.max_mv:
        return (
            f"membrane potential reaches {low:.0f}..{high:.0f} mV in the window, beyond the physiological range "
            f"{qc.min_mv:g}..{qc.max_mv:g} mV (sweeps.qc.min_mv/max_mv): not a healthy neuron in current clamp?",
            baseline,
        )
    return "", baseline
