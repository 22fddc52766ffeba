"""The ladder's step from hand-built commands: what real protocols put next to it is not the step."""

from __future__ import annotations

import numpy as np
import pytest

from sts.recordings.steps import ladder_steps, segment


def command(fs, dur_s, pieces, holding=0.0):
    """A command (pA) at ``holding`` with constant ``pieces`` [(start_s, stop_s, level_pa)]."""
    c = np.full(int(round(dur_s * fs)), holding)
    for a, b, level in pieces:
        c[int(round(a * fs)) : int(round(b * fs))] = level
    return c


def test_prepulse_test_pulse_and_dual_second_step_are_not_the_step():
    fs, amps = 20_000.0, [-50.0, 0.0, 50.0, 100.0]
    sweeps = {}
    for n, a in enumerate(amps):
        pieces = [(0.01, 0.02, -10.0),  # 10 ms test pulse
                  (0.05, 0.35, -100.0),  # fixed pre-pulse, 0.3 s
                  (0.5, 1.0, a),  # the ladder's step, 0.5 s
                  (1.5, 1.8, -100.0), (1.8, 2.3, a)]  # dual: a fixed step, then the amplitude again
        sweeps[n] = (command(fs, 3.0, pieces, holding=5.0), fs, None)
    steps = ladder_steps(sweeps, 0.1)
    for n, a in enumerate(amps):
        st = steps[n]
        assert st.onset_idx == int(0.5 * fs) and st.duration_idx == int(0.5 * fs), n
        assert st.amplitude_pa == pytest.approx(a - 5.0)  # level minus holding (5 pA)
        assert st.room_idx == int(1.0 * fs) and "1.5 s" in st.room_end  # up to the fixed -100 pA step


def test_zero_amplitude_sweep_and_other_rates():
    amps = [0.0, 20.0, 40.0]
    sweeps = {n: (command(fs, 2.0, [(0.5, 1.5, a)]), fs, None) for n, (a, fs) in enumerate(zip(amps, [10e3, 20e3, 50e3]))}
    steps = ladder_steps(sweeps, 0.1)
    assert steps[0].amplitude_pa == 0.0 and steps[0].onset_idx == 5000
    assert (steps[1].onset_idx, steps[1].amplitude_pa) == (10000, 20.0)
    assert (steps[2].onset_idx, steps[2].duration_idx, steps[2].amplitude_pa) == (25000, 50000, 40.0)
    assert steps[2].room_end == "the sweep's end" and steps[2].room_idx == 75000


def test_short_steps_ramps_and_a_single_sweep():
    fs = 10_000.0
    short = {n: (command(fs, 1.0, [(0.2, 0.25, 100.0 * (n + 1))]), fs, None) for n in range(3)}
    assert all(s is None for s in ladder_steps(short, 0.1).values())  # 50 ms: never the step
    t = np.arange(int(fs)) / fs
    ramp = {0: (np.where(t > 0.2, (t - 0.2) * 100.0, 0.0), fs, None)}  # 0.01 pA per sample
    assert ladder_steps(ramp, 0.1)[0] is None
    assert len(segment(ramp[0][0])) == 1 and np.isnan(segment(ramp[0][0]).levels_pa).all()
    single = {7: (command(fs, 2.0, [(0.01, 0.02, -10.0), (0.3, 1.3, 80.0)]), fs, None)}
    st = ladder_steps(single, 0.1)[7]  # no ladder to compare: the longest step
    assert (st.onset_idx, st.duration_idx, st.amplitude_pa) == (3000, 10000, 80.0)


def test_non_finite_commands_have_no_step():
    fs = 10_000.0
    sweeps = {n: (command(fs, 2.0, [(0.5, 1.5, 20.0 * (n + 1))]), fs, None) for n in range(3)}
    sweeps[3] = (np.full(20000, np.nan), fs, None)
    sweeps[4] = (np.empty(0), fs, None)
    steps = ladder_steps(sweeps, 0.1)
    assert steps[3] is None and steps[4] is None and [steps[n].amplitude_pa for n in range(3)] == [20.0, 40.0, 60.0]
