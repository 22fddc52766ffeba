"""Dominant time constant of the voltage rise before the first spike, for ``delay_ratio``.

ipfx's ``fit_prespike_time_constant`` starts a Levenberg-Marquardt double-exponential fit with
both components equal: the Jacobian is then singular, the first step is set by rounding noise,
and scipy's MINPACK returns different fits (or gives up, and ipfx falls back to a log-linear
guess) for the same arrays from one call to the next. Here the same model is fitted so that the
answer is a function of the data alone:

    v(t) = c + a1 exp(-t / tau1) + a2 exp(-t / tau2),   t from step onset to the first spike,

c, a1, a2 by exact linear least squares for each (tau1, tau2) (variable projection) with a1 and a2
of one sign (a monotone rise: two large opposite components cancelling are not a fit), the time
constants by exhaustive search of a fixed log grid (tau2 >= 2 tau1, both within [2 samples,
5 x window]), refined on a finer grid around the best pair. The dominant component is the one
that moves the voltage most within the window, |a| (1 - exp(-T / tau)). No BLAS or LAPACK
call: sums are numpy's pairwise sums, so the result is bit-identical across calls, processes
and thread settings.
"""

from __future__ import annotations

import math

import numpy as np

MAX_POINTS = 2000  # the window is block-averaged to at most this many points
PER_DECADE = 40  # coarse grid: 10 ** (1 / 40) = 5.9 % steps
FINE = 21  # fine grid points per coarse step either side of the best pair
MIN_SEPARATION = 2.0  # tau2 / tau1 at least this: the two components stay distinguishable
MAX_TAU_WINDOWS = 5.0  # longest tau, in window lengths (a slower rise is a ramp)
MIN_POINTS = 8  # fewer samples before the spike: no fit
COLLINEAR = 1e-9  # 1 - correlation**2 of the two components below this: pair skipped


def dominant_tau_s(t_s: np.ndarray, v_mv: np.ndarray) -> float:
    """Dominant time constant (s) of ``v_mv`` over ``t_s`` (s, from the rise's start); NaN if undefined."""
    t, v = _block_mean(np.asarray(t_s, dtype=np.float64), np.asarray(v_mv, dtype=np.float64))
    if t.size < MIN_POINTS or not np.all(np.isfinite(v)) or np.ptp(v) == 0:
        return math.nan
    t = t - t[0]
    span = float(t[-1])
    dt = span / (t.size - 1)
    lo, hi = math.log10(2 * dt), math.log10(MAX_TAU_WINDOWS * span)
    grid = 10.0 ** (np.arange(math.floor(lo * PER_DECADE), math.ceil(hi * PER_DECADE) + 1) / PER_DECADE)
    gap = math.ceil(math.log10(MIN_SEPARATION) * PER_DECADE)
    i, j = np.triu_indices(grid.size, gap)
    if i.size == 0:
        return math.nan
    sse, *_ = _fit(t, v, grid, i, j)
    best = int(np.argmin(sse))
    # Finer grid: one coarse step either side of each of the best pair's time constants.
    step = 10.0 ** (1 / PER_DECADE)
    fine = step ** np.linspace(-1, 1, FINE)
    taus = np.clip(np.concatenate([grid[i[best]] * fine, grid[j[best]] * fine]), grid[0], grid[-1])
    fi, fj = (a.ravel() for a in np.meshgrid(np.arange(FINE), FINE + np.arange(FINE), indexing="ij"))
    keep = taus[fj] >= MIN_SEPARATION * taus[fi]
    sse, a1, a2 = _fit(t, v, taus, fi[keep], fj[keep])
    k = int(np.argmin(sse))
    tau1, tau2 = taus[fi[keep][k]], taus[fj[keep][k]]
    moved1 = abs(a1[k]) * -math.expm1(-span / tau1)
    moved2 = abs(a2[k]) * -math.expm1(-span / tau2)
    return float(tau1 if moved1 >= moved2 else tau2)


def _block_mean(t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means of consecutive blocks so that at most MAX_POINTS remain (the first block takes the remainder)."""
    k = -(-t.size // MAX_POINTS)
    if k <= 1:
        return t, v
    r = t.size % k
    head = [(t[: r].mean(), v[: r].mean())] if r else []
    tb, vb = t[r:].reshape(-1, k).mean(axis=1), v[r:].reshape(-1, k).mean(axis=1)
    if head:
        tb, vb = np.concatenate([[head[0][0]], tb]), np.concatenate([[head[0][1]], vb])
    return tb, vb


def _fit(t, v, taus, i, j):
    """Residual sum of squares and amplitudes of v ~ c + a1 exp(-t/taus[i]) + a2 exp(-t/taus[j]), per pair,
    with a1 a2 >= 0 (a monotone rise; opposite signs would let two large components cancel).

    The constant is removed by centring; the 2 x 2 normal equations are solved in closed form.
    Where the free solution has opposite signs the constrained optimum has one amplitude 0: the
    better of the two single exponentials.
    """
    e = np.exp(-t[None, :] / taus[:, None])
    e -= e.mean(axis=1, keepdims=True)
    y = v - v.mean()
    yy = np.sum(y * y)
    gram = np.stack([np.sum(e[k] * e, axis=1) for k in range(taus.size)])
    b = np.sum(e * y, axis=1)
    g = np.diagonal(gram)
    single_a, single_sse = b / g, yy - b * b / g
    g11, g22, g12 = g[i], g[j], gram[i, j]
    det = g11 * g22 - g12 * g12
    with np.errstate(divide="ignore", invalid="ignore"):
        a1 = (g22 * b[i] - g12 * b[j]) / det
        a2 = (g11 * b[j] - g12 * b[i]) / det
    sse = yy - (a1 * b[i] + a2 * b[j])
    free = (det > COLLINEAR * g11 * g22) & (a1 * a2 >= 0)  # (nearly) collinear pairs: singles only
    first = single_sse[i] <= single_sse[j]
    sse = np.where(free, sse, np.where(first, single_sse[i], single_sse[j]))
    a1 = np.where(free, a1, np.where(first, single_a[i], 0.0))
    a2 = np.where(free, a2, np.where(first, 0.0, single_a[j]))
    return sse, a1, a2
