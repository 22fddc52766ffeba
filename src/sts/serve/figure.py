"""One figure per classified cell (``sts predict --figures``): traces, scalograms, saliency.

Columns: rheobase and rheobase + 40 pA sweeps. Rows: membrane potential (mV) against time
from step onset (s); |CWT| on time (s) x frequency (Hz); the saliency (|attribution|) of the
predicted class on the same axes. Colour bars on both image rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DISPLAY_COLUMNS = 800  # a panel is ~500 px wide: more time columns only slow the drawing


def _display(image: np.ndarray, k: int) -> np.ndarray:
    """(n_freqs, n_times) -> (n_freqs, n_times // k): maximum over blocks of k columns (keeps spikes)."""
    n = image.shape[1] // k * k
    return image[:, :n].reshape(image.shape[0], -1, k).max(axis=2)


def plot_cell(prepared, proba, classes, saliency, fs_hz: float, freqs_hz, path: str | Path, title: str = "") -> None:
    """Write ``path`` (PNG, atomically) for one prepared cell and its class probabilities."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sts.io.atomic import save_figure_atomic

    traces, scal = prepared.traces_mv, prepared.scalogram
    n_times = traces.shape[-1]
    t = np.arange(n_times) / fs_hz
    k = max(1, -(-n_times // DISPLAY_COLUMNS))
    extent = (0.0, n_times // k * k / fs_hz, float(freqs_hz[0]), float(freqs_hz[-1]))
    amps = prepared.attrs.get("amplitudes_pa", [np.nan, np.nan])
    pred = int(np.argmax(proba))
    fig, axes = plt.subplots(3, 2, figsize=(11, 7.5), sharex=True, constrained_layout=True)
    for ch in range(2):
        name = f"rheobase ({amps[0]:g} pA)" if ch == 0 else f"rheobase + {amps[1] - amps[0]:g} pA ({amps[1]:g} pA)"
        ax = axes[0, ch]
        ax.plot(t, traces[ch], lw=0.6, color="k")
        ax.set(ylabel="membrane potential (mV)", title=name)
        for row, data, cmap, label in ((1, np.abs(scal[ch]), "viridis", "|CWT| (mV)"),
                                       (2, saliency[ch], "magma", f"saliency of {classes[pred]}")):  # fmt: skip
            ax = axes[row, ch]
            im = ax.imshow(_display(data, k), origin="lower", aspect="auto", extent=extent, cmap=cmap, interpolation="nearest")
            ax.set_ylabel("frequency (Hz)")
            fig.colorbar(im, ax=ax, label=label, shrink=0.9)
        axes[2, ch].set_xlabel("time from step onset (s)")
    probs = ", ".join(f"{c} {p:.2f}" for c, p in zip(classes, proba))
    fig.suptitle(f"{prepared.specimen_id} ({Path(prepared.path).name}){': ' + title if title else ''} — "
                 f"predicted {classes[pred]}\n{probs}", fontsize=10)  # fmt: skip
    try:
        save_figure_atomic(fig, path)
    finally:
        plt.close(fig)
