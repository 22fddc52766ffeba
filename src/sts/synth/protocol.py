"""Stimulus protocol of a synthetic cell: the sweep list and its current traces.

Modelled on the Allen long-square protocol: a test pulse at sweep start, a 1 s step
starting ~1.02 s in, amplitudes on a 20 pA grid around the cell's rheobase, a finer
sweep near rheobase for some cells, non-contiguous sweep numbers, a repeated amplitude,
plus short-square, ramp and test sweeps that a pipeline must ignore.
All times in seconds, currents in pA.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

TEST_START_S = 0.005  # test pulse: 10 ms starting 5 ms into the sweep
TEST_DUR_S = 0.010
EXPERIMENT_START_S = 0.020  # Allen "Experiment" epoch starts after the test pulse region
STEP_DUR_S = 1.0
SWEEP_DUR_S = 2.3
SHORT_SQUARE_DUR_S = 0.003
GRID_PA = 20.0

# Names written to files. Allen v1: aibs_stimulus_name; MIES: stimulus_description.
ALLEN_NAMES = {"long_square": "Long Square", "short_square": "Short Square", "ramp": "Ramp", "test": "Test"}
MIES_CODES = {
    "coarse": "C1LSCOARSE150216_DA_0",
    "fine": "C1LSFINEST150112_DA_0",
    "subthresh": "X1PS_SubThresh_DA_0",
    "rheo": "X3LP_Rheo_DA_0",
    "supra": "X4PS_SupraThresh_DA_0",
    "short_square": "C1SSFINEST150112_DA_0",
    "ramp": "C1RP25PR1S_DA_0",
    "test": "EXTPSMOKET180424_DA_0",
}


@dataclass(frozen=True)
class Sweep:
    """One sweep: kind in ALLEN_NAMES, amp_pa (step/pulse amplitude; ramp end value), dur_s."""

    kind: str
    amp_pa: float
    dur_s: float = SWEEP_DUR_S
    fine: bool = False  # off-grid sweep near rheobase
    number: int = 0


def long_square_ladder(rheo_est_pa: float, rng: np.random.Generator, defect: str = "") -> list[Sweep]:
    """Long squares around an estimated rheobase: two hyperpolarising steps, then the 20 pA
    grid from rheobase-60 to rheobase+120 (positive amplitudes only), sometimes a fine sweep
    10 pA off-grid, sometimes a repeat of rheobase+80. ``no_spiking`` moves the top below it."""
    r0 = GRID_PA * round(rheo_est_pa / GRID_PA)
    top = r0 - 60.0 if defect == "no_spiking" else r0 + 120.0
    grid = np.arange(r0 - 60.0, top + 1.0, GRID_PA)
    if defect == "no_spiking":
        grid = np.arange(top - 160.0, top + 1.0, GRID_PA)
    amps = [-90.0, -50.0] + [a for a in grid if a > 0]
    sweeps = [Sweep("long_square", a) for a in amps]
    if rng.random() < 0.5 and defect != "no_spiking":
        sweeps.append(Sweep("long_square", r0 + rng.choice([-10.0, 10.0]), fine=True))
    if rng.random() < 0.4 and defect != "no_spiking":
        sweeps.append(Sweep("long_square", r0 + 80.0))  # repeat, recorded later
    return sweeps


def other_sweeps(rheo_est_pa: float, rng: np.random.Generator) -> list[Sweep]:
    """Sweeps to be ignored: test (pulse only), short squares (3 ms), one ramp."""
    ss_amp = GRID_PA * round(max(3.0 * rheo_est_pa, 300.0) / GRID_PA)
    return [
        Sweep("test", 0.0, dur_s=0.5),
        Sweep("short_square", ss_amp, dur_s=1.5),
        Sweep("short_square", ss_amp + 20.0, dur_s=1.5),
        Sweep("ramp", 1.5 * rheo_est_pa + rng.uniform(0.0, 50.0)),
    ]


def number_sweeps(sweeps: list[Sweep], rng: np.random.Generator) -> list[Sweep]:
    """Non-contiguous increasing sweep numbers (gaps stand for QC-failed or other protocols)."""
    n = int(rng.integers(3, 12))
    out = []
    for s in sweeps:
        out.append(replace(s, number=n))
        n += 1 + int(rng.random() < 0.25) * int(rng.integers(1, 5))
    return out


def stimulus_pa(sweep: Sweep, t_s: np.ndarray, onset_s: float, test_pa: float) -> np.ndarray:
    """Injected current (pA) of ``sweep`` at times t_s (s from sweep start); 0 beyond dur_s."""
    i = np.where((t_s >= TEST_START_S) & (t_s < TEST_START_S + TEST_DUR_S), test_pa, 0.0)
    if sweep.kind == "long_square":
        i += np.where((t_s >= onset_s) & (t_s < onset_s + STEP_DUR_S), sweep.amp_pa, 0.0)
    elif sweep.kind == "short_square":
        i += np.where((t_s >= onset_s) & (t_s < onset_s + SHORT_SQUARE_DUR_S), sweep.amp_pa, 0.0)
    elif sweep.kind == "ramp":
        ramp = (t_s - onset_s) / STEP_DUR_S * sweep.amp_pa
        i += np.where((t_s >= onset_s) & (t_s < onset_s + STEP_DUR_S), ramp, 0.0)
    i[t_s >= sweep.dur_s] = 0.0
    return i


def mies_code(sweep: Sweep, style: str, rheobase_pa: float | None) -> str:
    """MIES protocol code; style 'C1' (Allen-like coarse/fine) or 'X' (patch-seq X1/X3/X4)."""
    if sweep.kind != "long_square":
        return MIES_CODES[sweep.kind]
    if style == "C1":
        return MIES_CODES["fine" if sweep.fine else "coarse"]
    if sweep.amp_pa <= 0:
        return MIES_CODES["subthresh"]
    if rheobase_pa is None or sweep.amp_pa <= rheobase_pa:
        return MIES_CODES["rheo"]
    return MIES_CODES["supra"]
