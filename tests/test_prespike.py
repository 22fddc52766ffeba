"""The pre-spike rise's dominant time constant (delay_ratio's denominator) against known curves and scipy."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.optimize import curve_fit

from sts.baseline.prespike import dominant_tau_s

T = np.arange(0, 0.3, 1 / 50_000)  # s, 300 ms at 50 kHz (block-averaged inside)


@pytest.mark.parametrize(("a1", "tau1", "a2", "tau2", "dominant"), [
    (-20.0, 0.009, -6.0, 0.4, 0.009),  # fast charging, slow ramp (a delayed cell): the fast one
    (-3.0, 0.004, -15.0, 0.05, 0.05),  # small fast component: the slow one
    (-12.0, 0.02, 0.0, 1.0, 0.02),  # single exponential
])
def test_known_double_exponentials(a1, tau1, a2, tau2, dominant):
    v = -50.0 + a1 * np.exp(-T / tau1) + a2 * np.exp(-T / tau2)
    assert dominant_tau_s(T, v) == pytest.approx(dominant, rel=0.005)


def test_noisy_single_exponential_agrees_with_scipy():
    """Same least-squares problem as scipy's curve_fit of c + a exp(-t / tau) from the true start."""
    rng = np.random.default_rng(3)
    t = T[: 2500]  # 50 ms: no block averaging, so both fit the same points
    v = -45.0 - 15.0 * np.exp(-t / 0.012) + rng.normal(0, 0.3, t.size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (c, a, tau), _ = curve_fit(lambda x, c, a, tau: c + a * np.exp(-x / tau), t, v, p0=(-45.0, -15.0, 0.012))
    assert tau == pytest.approx(0.012, rel=0.05)  # the reference itself is near the truth
    assert dominant_tau_s(t, v) == pytest.approx(tau, rel=0.01)


def test_bit_identical_and_undefined():
    v = -50.0 - 20.0 * np.exp(-T / 0.009) - 6.0 * np.exp(-T / 0.4)
    assert dominant_tau_s(T, v).hex() == dominant_tau_s(T.copy(), v.copy()).hex()
    assert math.isnan(dominant_tau_s(T[:5], v[:5]))  # too few points before the spike
    assert math.isnan(dominant_tau_s(T, np.full(T.size, -60.0)))  # flat: no rise
