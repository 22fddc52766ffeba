"""Per-sweep time of pywt.cwt (conv, fft) vs sts.prep.scalogram.cwt, their agreement, and the import time.

    python benchmarks/bench_cwt.py [--sweeps 2] [--samples 4800] [--fs 4000] [--n-freqs 180] [--repeats 15]

Timings are the median (and min) of --repeats calls with time.perf_counter, after one warm-up call
(which, for sts, also builds and caches the filter bank). Target: sts >= 10x faster per sweep than pywt.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time

import numpy as np
import pywt

from sts.prep.scalogram import cwt, default_freqs, scales_for


def timed(fn, repeats: int) -> tuple[float, float]:
    """(median, min) seconds per call, after one warm-up call."""
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)), float(np.min(ts))


def import_time_s(module: str) -> float:
    """Cumulative import time of ``module`` in a fresh interpreter (python -X importtime), seconds."""
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True, text=True, check=True
    ).stderr
    m = re.search(r"\|\s*(\d+)\s*\|\s*" + re.escape(module) + r"\s*$", err, re.M)
    return int(m.group(1)) * 1e-6 if m else float("nan")


def spike_like(rng: np.random.Generator, shape: tuple, fs: float) -> np.ndarray:
    """Voltage-like sweeps (mV): -70 baseline, noise, ~20 Hz of 1-ms spikes."""
    v = -70.0 + 0.5 * rng.standard_normal(shape)
    n = shape[-1]
    for idx in np.ndindex(shape[:-1]):
        for t0 in rng.choice(n - 8, size=max(1, int(20 * n / fs)), replace=False):
            v[idx][t0 : t0 + 4] += (60.0, 110.0, 60.0, 20.0)
    return v


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweeps", type=int, default=2)
    ap.add_argument("--samples", type=int, default=4800)
    ap.add_argument("--fs", type=float, default=4000.0)
    ap.add_argument("--fmin", type=float, default=20.0)
    ap.add_argument("--fmax", type=float, default=200.0)
    ap.add_argument("--n-freqs", type=int, default=180)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()

    fs, freqs = args.fs, default_freqs(args.fmin, args.fmax, args.n_freqs)
    scales = scales_for(freqs, fs)
    x = spike_like(np.random.default_rng(0), (args.sweeps, args.samples), fs)
    print(f"batch {x.shape} at {fs:g} Hz, {freqs.size} freqs {freqs[0]:g}-{freqs[-1]:g} Hz, "
          f"median (min) of {args.repeats} calls, per sweep")

    def pywt_cwt(method):
        return lambda: np.moveaxis(pywt.cwt(x, scales, "mexh", sampling_period=1 / fs, method=method)[0], 0, -2)

    ref = pywt_cwt("conv")()
    peak = np.abs(ref).max()
    rows = {
        "pywt.cwt conv": pywt_cwt("conv"),
        "pywt.cwt fft": pywt_cwt("fft"),
        "sts cwt (float32 FFTs, default)": lambda: cwt(x, fs, freqs),
        "sts cwt (float64 FFTs)": lambda: cwt(x, fs, freqs, fft_dtype=np.float64),
    }
    per_sweep = {}
    for name, fn in rows.items():
        med, mn = timed(fn, args.repeats)
        per_sweep[name] = med / args.sweeps
        err = np.abs(fn() - ref).max() / peak
        print(f"  {name:34s} {med / args.sweeps * 1e3:7.2f} ms ({mn / args.sweeps * 1e3:6.2f})   "
              f"max|err|/peak vs pywt conv {err:.1e}")
    for sts_name in ("sts cwt (float32 FFTs, default)", "sts cwt (float64 FFTs)"):
        print(f"speed-up of {sts_name}: "
              f"{per_sweep['pywt.cwt conv'] / per_sweep[sts_name]:.1f}x vs conv, "
              f"{per_sweep['pywt.cwt fft'] / per_sweep[sts_name]:.1f}x vs fft")
    print(f"import time (fresh interpreter, -X importtime, cumulative): "
          f"sts.prep.scalogram {import_time_s('sts.prep.scalogram') * 1e3:.0f} ms, "
          f"numpy alone {import_time_s('numpy') * 1e3:.0f} ms, pywt (incl. numpy) {import_time_s('pywt') * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
