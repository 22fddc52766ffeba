import numpy as np
import pytest
from scipy.signal import resample_poly as scipy_resample_poly

from sts.prep.resample import rational_ratio, resample, resample_poly


@pytest.mark.parametrize("up,down,n", [(2, 25, 60_000), (1, 50, 240_000), (3, 7, 1001), (5, 3, 77), (7, 2, 5)])
def test_matches_scipy(up, down, n):
    x = np.random.default_rng(n).normal(size=n)
    np.testing.assert_allclose(resample_poly(x, up, down), scipy_resample_poly(x, up, down), atol=1e-12)


def test_batch_matches_scipy_on_last_axis():
    x = np.random.default_rng(0).normal(size=(2, 3, 1000))
    np.testing.assert_allclose(resample_poly(x, 2, 5), scipy_resample_poly(x, 2, 5, axis=-1), atol=1e-12)


@pytest.mark.parametrize("fs_in", [50_000.0, 200_000.0])
def test_no_aliasing_of_tone_above_nyquist(fs_in):
    """A 2.5 kHz tone is above the 2 kHz Nyquist of 4 kHz: it must vanish, not fold to 1.5 kHz."""
    t = np.arange(int(fs_in)) / fs_in
    alias = resample(np.sin(2 * np.pi * 2500 * t), fs_in, 4000.0)
    kept = resample(np.sin(2 * np.pi * 300 * t), fs_in, 4000.0)
    core = slice(200, -200)  # away from the zero-padded ends
    assert np.abs(alias[core]).max() < 5e-3  # > 46 dB attenuation (Kaiser beta 5, as scipy)
    assert np.abs(kept[core]).max() == pytest.approx(1.0, abs=0.01)
    # and naive decimation would have aliased it: the test can tell the difference
    naive = np.sin(2 * np.pi * 2500 * t)[:: int(fs_in // 4000)]
    assert np.abs(naive).max() > 0.5


def test_rational_ratio():
    assert rational_ratio(50_000, 4000) == (2, 25)
    assert rational_ratio(200_000, 4000) == (1, 50)
    assert rational_ratio(10_000, 4000) == (2, 5)
