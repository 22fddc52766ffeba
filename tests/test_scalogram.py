"""sts.prep.scalogram.cwt against pywt.cwt, on real computations (each test well under a second)."""

from __future__ import annotations

import numpy as np
import pytest
import pywt

from sts.prep.scalogram import _bank, cwt, default_freqs, scales_for


def pywt_ref(x, fs, freqs, wavelet="mexh", method="conv"):
    """pywt.cwt with the scales for ``freqs``, scales axis moved next to time: (..., n_freqs, n)."""
    coef, _ = pywt.cwt(x, scales_for(freqs, fs, wavelet), wavelet, sampling_period=1 / fs, method=method)
    return np.moveaxis(coef, 0, -2)


def spike_like(rng, shape, fs):
    """Voltage-like sweeps in mV: -70 mV baseline, noise, 1-ms spikes at ~20 Hz."""
    v = -70.0 + 0.5 * rng.standard_normal(shape)
    n = shape[-1]
    for idx in np.ndindex(shape[:-1]):
        for t0 in rng.choice(max(n - 8, 1), size=max(1, int(20 * n / fs)), replace=False):
            v[idx][t0 : t0 + 4] += (60.0, 110.0, 60.0, 20.0)[: n - t0]
    return v


def rel_err(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


CASES = [  # (fs Hz, fmin, fmax, n_freqs, n samples)
    (4000.0, 20.0, 200.0, 180, 4800),
    (4000.0, 20.0, 200.0, 37, 1201),  # odd n
    (10000.0, 5.0, 1000.0, 25, 3001),
    (2000.0, 50.0, 900.0, 16, 7),  # signal shorter than every kernel
    (4000.0, 1900.0, 1999.0, 3, 64),  # near Nyquist: the shortest kernels
]


@pytest.mark.parametrize("fs, fmin, fmax, nf, n", CASES)
@pytest.mark.parametrize("method", ["conv", "fft"])
def test_matches_pywt_random_and_spiky(fs, fmin, fmax, nf, n, method):
    rng = np.random.default_rng(n)
    freqs = default_freqs(fmin, fmax, nf)
    for x in (rng.standard_normal(n), spike_like(rng, (n,), fs)):
        ref = pywt_ref(x, fs, freqs, method=method)
        exact = cwt(x, fs, freqs, fft_dtype=np.float64)
        fast = cwt(x, fs, freqs)
        assert exact.shape == fast.shape == (nf, n)
        assert exact.dtype == fast.dtype == np.float64
        # float64 FFTs: the same kernels and trimming as pywt, so agreement to rounding.
        assert rel_err(exact, ref) < 1e-10
        # default float32 FFTs: the contract's 1e-4 of the peak, with a wide margin.
        assert rel_err(fast, ref) < 1e-5


def test_batch_matches_pywt_and_single_signals():
    fs, freqs, n = 4000.0, default_freqs(20, 200, 40), 999
    x = spike_like(np.random.default_rng(3), (3, 2, n), fs)
    out = cwt(x, fs, freqs)
    assert out.shape == (3, 2, 40, n) and out.flags.c_contiguous
    assert rel_err(out, pywt_ref(x, fs, freqs)) < 1e-5
    for idx in np.ndindex(3, 2):
        single = cwt(x[idx], fs, freqs)
        np.testing.assert_allclose(out[idx], single, rtol=0, atol=1e-12 * np.abs(single).max())


def test_other_real_wavelet_and_precision():
    fs, freqs, x = 4000.0, default_freqs(20, 200, 12), np.random.default_rng(5).standard_normal(800)
    for wavelet in ("morl", "gaus2"):
        coef, _ = pywt.cwt(x, scales_for(freqs, fs, wavelet), wavelet, precision=10)
        assert rel_err(cwt(x, fs, freqs, wavelet, precision=10, fft_dtype=np.float64), coef) < 1e-10


@pytest.mark.parametrize("f_tone", [30.0, 60.0, 100.0, 150.0, 190.0])
def test_pure_tone_peaks_at_its_scale(f_tone):
    fs, freqs = 4000.0, default_freqs()
    t = np.arange(4000) / fs
    out = np.abs(cwt(np.sin(2 * np.pi * f_tone * t), fs, freqs))
    power = out[:, 1000:3000].max(axis=1)  # the middle, away from the zero-padded edges
    assert abs(int(np.argmax(power)) - int(np.argmin(np.abs(freqs - f_tone)))) <= 2


def test_scales_for_inverts_scale2frequency():
    fs, freqs = 4000.0, default_freqs()
    scales = scales_for(freqs, fs)
    assert scales.shape == (180,) and np.all(np.diff(scales) < 0)
    np.testing.assert_allclose(pywt.scale2frequency("mexh", scales) * fs, freqs, rtol=1e-12)
    np.testing.assert_allclose(scales[[0, -1]], [50.0, 5.0])  # mexh centre frequency 0.25
    np.testing.assert_allclose(pywt.scale2frequency("morl", scales_for(freqs, fs, "morl")) * fs, freqs, rtol=1e-12)


def test_default_freqs():
    f = default_freqs()
    assert f.shape == (180,) and f[0] == 20.0 and f[-1] == 200.0
    np.testing.assert_allclose(np.diff(f), 180 / 179)


def test_bank_is_cached_and_read_only():
    fs, freqs, x = 4000.0, default_freqs(20, 200, 10), np.ones(100)
    cwt(x, fs, freqs)
    hits = _bank.cache_info().hits
    cwt(x + 1, fs, list(freqs))
    assert _bank.cache_info().hits == hits + 1
    nfft, H = _bank(fs, tuple(freqs.tolist()), 100, "mexh", 12, np.dtype(np.float32).str)
    assert H.shape == (10, nfft // 2 + 1) and not H.flags.writeable
    assert nfft >= 100 + 16 * 50 + 2  # n + longest kernel (20 Hz: scale 50, 16*50+1 taps, + diff)


@pytest.mark.parametrize(
    "freqs, match",
    [
        ([20.0, 2000.0], "Nyquist"),
        ([20.0, 2500.0], "Nyquist"),
        ([0.0, 20.0], "positive"),
        ([-5.0], "positive"),
        ([np.nan], "positive and finite"),
        ([], "non-empty"),
        ([[20.0, 30.0]], "1-D"),
    ],
)
def test_bad_freqs_raise(freqs, match):
    with pytest.raises(ValueError, match=match):
        cwt(np.zeros(100), 4000.0, freqs)
    with pytest.raises(ValueError, match=match):
        scales_for(freqs, 4000.0)


def test_other_bad_input_raises():
    freqs = default_freqs()
    with pytest.raises(ValueError, match="at least one sample"):
        cwt(np.zeros((2, 0)), 4000.0, freqs)
    with pytest.raises(ValueError, match="at least one sample"):
        cwt(1.0, 4000.0, freqs)
    with pytest.raises(ValueError, match="sampling rate"):
        cwt(np.zeros(10), 0.0, freqs)
    with pytest.raises(ValueError, match="real wavelets"):
        cwt(np.zeros(10), 4000.0, freqs, wavelet="cmor1.5-1.0")
    with pytest.raises(ValueError, match="fft_dtype"):
        cwt(np.zeros(10), 4000.0, freqs, fft_dtype=np.float16)
