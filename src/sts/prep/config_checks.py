"""Checks across config keys that the JSON schema cannot express.

Run when the DAG is built (``workflow/rules/common.smk``, after the schema), so a setting that
every job would trip over stops the run before the first job, with a message naming the keys.
"""

from __future__ import annotations

import math
from dataclasses import asdict

from sts.settings import QcParams

# Values of one sweep's CWT filter bank, n_freqs x nfft (nfft: the window's samples plus the longest
# kernel, 1 / fmin_hz long in scales): each of the bank, its spectrum and the coefficients holds about
# this many numbers at once. 2^26 (~0.5 GB per float64 copy) is ~60x the default (180 x 6,000).
MAX_CWT_VALUES = 1 << 26


def cwt_values(fs_hz: float, window_s: float, fmin_hz: float, n_freqs: int, wavelet: str) -> int:
    """About n_freqs x nfft of ``sts.prep.scalogram.cwt`` on one window (its filter bank's size)."""
    import pywt

    from sts.prep.scalogram import scales_for

    wav = pywt.ContinuousWavelet(wavelet)
    kernel = float(scales_for([fmin_hz], fs_hz, wavelet)[0]) * (wav.upper_bound - wav.lower_bound)
    return int(n_freqs * (window_s * fs_hz + kernel))


def config_problems(config: dict) -> list[str]:
    """Every cross-field problem of a schema-valid config, one message each (empty: none)."""
    problems = []
    sweeps, scal = config["sweeps"], config["scalogram"]
    fs_hz, window_s = float(sweeps["fs_hz"]), float(sweeps["window_s"])
    fmin, fmax = float(scal["fmin_hz"]), float(scal["fmax_hz"])
    if fmin >= fmax:
        problems.append(
            f"scalogram.fmin_hz ({fmin:g}) must be below scalogram.fmax_hz ({fmax:g}): "
            "the frequency grid runs from fmin_hz up to fmax_hz"
        )
    if fmax >= fs_hz / 2:
        problems.append(
            f"scalogram.fmax_hz ({fmax:g}) must be below the Nyquist frequency of sweeps.fs_hz "
            f"({fs_hz:g} / 2 = {fs_hz / 2:g} Hz)"
        )
    samples = window_s * fs_hz
    if not math.isclose(samples, round(samples), rel_tol=0, abs_tol=1e-6):
        problems.append(
            f"sweeps.window_s x sweeps.fs_hz ({window_s:g} s x {fs_hz:g} Hz = {samples:g}) must be a "
            "whole number of samples"
        )
    if not problems:
        n_freqs, wavelet = int(scal["n_freqs"]), str(scal["wavelet"])
        values = cwt_values(fs_hz, window_s, fmin, n_freqs, wavelet)
        if values > MAX_CWT_VALUES:
            problems.append(
                f"the CWT of one sweep would hold about {values:,} values per array ({values * 8 / 1e9:.1f} GB "
                f"in float64; at most {MAX_CWT_VALUES:,}): lower sweeps.fs_hz ({fs_hz:g}), sweeps.window_s "
                f"({window_s:g}), scalogram.n_freqs ({n_freqs}) or raise scalogram.fmin_hz ({fmin:g})"
            )
    qc = {**asdict(QcParams()), **sweeps.get("qc", {})}
    for low, high in (("baseline_min_mv", "baseline_max_mv"), ("min_mv", "max_mv")):
        if qc[low] >= qc[high]:
            problems.append(
                f"sweeps.qc.{low} ({qc[low]:g}) must be below sweeps.qc.{high} ({qc[high]:g}): "
                "no sweep could pass QC"
            )
    return problems


def check_config(config: dict) -> None:
    """Raise ValueError listing every cross-field problem (see ``config_problems``)."""
    problems = config_problems(config)
    if problems:
        raise ValueError("config: " + "; ".join(problems))

