"""One figure per classified cell (``sts predict --figures``), for every kind of served model.

Rows, each where the model has it:
- the two sweeps, membrane potential (mV) against time from step onset (s): a CNN's rheobase and
  rheobase + 40 pA sweeps (its window), the LightGBM baseline's rheobase and hero sweeps (the
  sweeps its spike features read, with the data before and after the step);
- their |CWT| on time (s) x frequency (Hz) (a fusion: as its first CNN member prepares them);
- per CNN (a fusion: per CNN member) the saliency (|input gradient|) of the predicted class on
  the same axes, each on its own preparation's axes;
- the class probabilities (bars; a fusion's: with each member's own raw probabilities as markers,
  its vote), beside the LightGBM baseline's EP features in training SDs.
Colour bars on every image. What the model cannot draw is said in the title's last line
(``notes``); the predictors log it once per run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

DISPLAY_COLUMNS = 800  # a panel is ~500 px wide: more time columns only slow the drawing
MARKERS = "o^sDvP*Xh<>"


@dataclass
class Sweep:
    """One trace of the top row."""

    title: str
    t_s: np.ndarray  # from step onset
    v_mv: np.ndarray


@dataclass
class Maps:
    """One row of images on the sweeps' time axis: (2, n_freqs, n_times) at ``fs_hz`` on ``freqs_hz``."""

    label: str  # the panel titles: "<label>, <sweep>"
    data: np.ndarray
    fs_hz: float
    freqs_hz: np.ndarray
    cmap: str
    unit: str  # the colour bar's label


@dataclass
class Features:
    """The LightGBM baseline's EP features in training SDs (``missing``: undefined in this cell, drawn grey)."""

    names: list[str]
    z: np.ndarray
    missing: np.ndarray
    title: str


def window_sweeps(prepared, fs_hz: float) -> list[Sweep]:
    """A CNN's two prepared sweeps (``traces_mv`` from step onset at ``fs_hz``)."""
    amps = prepared.attrs.get("amplitudes_pa", [np.nan, np.nan])
    t = np.arange(prepared.traces_mv.shape[-1]) / fs_hz
    titles = (f"rheobase ({amps[0]:g} pA)", f"rheobase + {amps[1] - amps[0]:g} pA ({amps[1]:g} pA)")
    return [Sweep(title, t, v) for title, v in zip(titles, prepared.traces_mv)]


def feature_sweeps(prepared) -> list[Sweep]:
    """The sweeps the LightGBM baseline's spike features read: rheobase and ipfx's hero sweep (first
    spiking sweep 39-61 pA above rheobase, ``sts.baseline.features``), with the data around the step."""
    return [Sweep(f"{name} (sweep {n}, {pa:g} pA)", t, v)
            for name, (n, pa, t, v) in (prepared.feature_sweeps or {}).items()]  # fmt: skip


def scalogram_maps(prepared, fs_hz: float, freqs_hz) -> Maps:
    return Maps("|CWT|", np.abs(prepared.scalogram), fs_hz, np.asarray(freqs_hz), "viridis", "|CWT| (mV)")


def saliency_maps(label: str, saliency: np.ndarray, fs_hz: float, freqs_hz) -> Maps:
    return Maps(label, saliency, fs_hz, np.asarray(freqs_hz), "magma", "|attribution| (a.u.)")


def _display(image: np.ndarray, k: int) -> np.ndarray:
    """(n_freqs, n_times) -> (n_freqs, n_times // k): maximum over blocks of k columns (keeps spikes)."""
    n = image.shape[1] // k * k
    return image[:, :n].reshape(image.shape[0], -1, k).max(axis=2)


def draw_cell(prepared, proba, classes, sweeps: list[Sweep], maps: list[Maps] = (), votes: dict | None = None,
              features: Features | None = None, notes: list[str] = (), title: str = ""):
    """The matplotlib figure of one classified cell (see the module docstring); the caller closes it.
    ``votes``: member name -> its raw probabilities (a fusion)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = list(classes)
    pred = int(np.argmax(proba))
    bottom = max(1.6, 0.35 * len(classes) + 0.25 * len(votes or {}), 0.2 * len(features.names) if features else 0)
    heights = [2.0] * (bool(sweeps) + len(maps)) + [bottom]
    fig = plt.figure(figsize=(11, sum(heights) + 0.8), constrained_layout=True)
    grid = fig.add_gridspec(len(heights), 2, height_ratios=heights)
    row = 0
    last = [None, None]  # each column's lowest axes so far: the time axis is shared down the column
    if sweeps:
        for ch, sweep in enumerate(sweeps[:2]):
            ax = last[ch] = fig.add_subplot(grid[0, ch])
            ax.plot(sweep.t_s, sweep.v_mv, lw=0.6, color="k")
            ax.set(ylabel="membrane potential (mV)", title=sweep.title)
        row = 1
    for m in maps:
        n_times = m.data.shape[-1]
        k = max(1, -(-n_times // DISPLAY_COLUMNS))
        extent = (0.0, n_times // k * k / m.fs_hz, float(m.freqs_hz[0]), float(m.freqs_hz[-1]))
        for ch in range(2):
            ax = fig.add_subplot(grid[row, ch], sharex=last[ch])
            im = ax.imshow(_display(m.data[ch], k), origin="lower", aspect="auto", extent=extent, cmap=m.cmap,
                           interpolation="nearest")  # fmt: skip
            name = sweeps[ch].title.split(" (")[0] if sweeps else ("rheobase", "rheobase + 40 pA")[ch]
            ax.set(ylabel="frequency (Hz)", title=f"{m.label}, {name}")
            fig.colorbar(im, ax=ax, label=m.unit, shrink=0.9)
            last[ch] = ax
        row += 1
    for ax in last:
        if ax is not None:
            ax.set_xlabel("time from step onset (s)")
    ax_p = fig.add_subplot(grid[row, 0] if features or votes else grid[row, :])
    _probabilities(ax_p, proba, classes, votes)
    if features:
        _features(fig.add_subplot(grid[row, 1]), features)
    elif votes:  # the members' legend beside the probabilities
        ax_v = fig.add_subplot(grid[row, 1])
        ax_v.axis("off")
        ax_v.legend(*ax_p.get_legend_handles_labels(), loc="center left", fontsize=8, title="member: its vote")
    probs = ", ".join(f"{c} {p:.2f}" for c, p in zip(classes, proba))
    text = f"{prepared.specimen_id} ({Path(prepared.path).name}){': ' + title if title else ''} — predicted " \
           f"{classes[pred]}\n{probs}" + "".join(f"\n{n}" for n in notes)  # fmt: skip
    fig.suptitle(text, fontsize=10)
    return fig


def _probabilities(ax, proba, classes, votes) -> None:
    y = np.arange(len(classes))
    ax.barh(y, proba, color="tab:blue", alpha=0.6, label="fused" if votes else None)
    for i, p in enumerate(proba):
        ax.text(min(p, 0.9) + 0.01, i, f"{p:.2f}", va="center", fontsize=8)
    for j, (name, p) in enumerate((votes or {}).items()):
        p = np.asarray(p)
        ax.scatter(p, y, marker=MARKERS[j % len(MARKERS)], s=30, zorder=3,
                   label=f"{name}: {classes[int(np.argmax(p))]}")  # fmt: skip
    ax.set_yticks(y, classes)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1.04), xlabel="probability")
    if votes:
        ax.set_title("fused probabilities (bars), each member's own (markers)")
    else:
        ax.set_title("class probabilities")


def _features(ax, f: Features) -> None:
    n = len(f.names)
    colours = np.where(f.missing, "lightgrey", np.where(np.abs(f.z) > 3, "tab:red", "tab:green"))
    ax.barh(range(n), np.clip(np.nan_to_num(f.z), -6, 6), color=colours)
    ax.set_yticks(range(n), [name + (" (undefined)" if m else "") for name, m in zip(f.names, f.missing)],
                  fontsize=7)  # fmt: skip
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.8)
    for x in (-3, 3):
        ax.axvline(x, color="grey", lw=0.5, ls="--")
    ax.set_xlim(-6, 6)
    ax.set_xlabel("feature value in training SDs from the training mean (clipped at ±6)")
    ax.set_title(f.title)


def plot_cell(path: str | Path, *args, **kwargs) -> None:
    """Write ``draw_cell``'s figure to ``path`` (PNG, atomically)."""
    import matplotlib.pyplot as plt

    from sts.io.atomic import save_figure_atomic

    fig = draw_cell(*args, **kwargs)
    try:
        save_figure_atomic(fig, path)
    finally:
        plt.close(fig)
