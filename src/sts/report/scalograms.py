"""Example scalograms per class for the report: a few usable cells, both sweeps, real axes.

Cells are picked from the manifest (status ok) per class, in turns from each dataset
(clamp, seq) so both show when both exist, in a seeded random order within each dataset.
Each example shows the membrane potential of the two sweeps (rheobase, rheobase + 40 pA)
above their |CWT| on time (s from step onset) and frequency (Hz) axes; both sweeps of a cell
share one logarithmic colour scale (three decades below the cell's peak).
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

SWEEP_NAMES = ("rheobase", "rheobase + 40 pA")


def candidate_cells(cells: pd.DataFrame, classes, per_dataset: int = 8, seed: int = 0) -> list[str]:
    """Ids the example figures may draw from: per class and dataset, up to ``per_dataset`` cells
    of the cohort table (specimen_id, dataset, label) in a seeded random order.

    The workflow lists only these cells' files as inputs (not the whole cohort's), and the
    figures show the first usable ones.
    """
    rng = np.random.default_rng(seed)
    keep = cells[cells["label"].isin(list(classes))].sort_values("specimen_id")
    ids = []
    for _, group in keep.groupby(["label", "dataset"], sort=True):
        ids += list(group["specimen_id"].iloc[rng.permutation(len(group))[:per_dataset]])
    return sorted(map(str, ids))


def pick_examples(manifest: pd.DataFrame, cls: str, n: int = 3, seed: int = 0, among=None) -> pd.DataFrame:
    """Up to ``n`` usable cells of class ``cls`` (of ``among`` when given), alternating between datasets."""
    ok = manifest[(manifest["status"] == "ok") & (manifest["label"] == cls)].sort_values("specimen_id")
    if among is not None:
        ok = ok[ok["specimen_id"].isin(set(map(str, among)))]
    rng = np.random.default_rng(seed)
    groups = [g.iloc[rng.permutation(len(g))] for _, g in ok.groupby("dataset", sort=True)]
    picked = []
    for i in range(max((len(g) for g in groups), default=0)):
        picked += [g.iloc[i] for g in groups if i < len(g)]
    return pd.DataFrame(picked[:n], columns=manifest.columns)


def read_example(scalogram_path: str | Path, sweeps_path: str | Path) -> dict:
    """One cell's |scalogram| (2, n_freqs, n_times) float32 (files store float16, older ones
    float32), traces (2, n_times) and axes."""
    with h5py.File(scalogram_path, "r") as f:
        if "scalogram" not in f:
            raise ValueError(f"{scalogram_path}: no 'scalogram' dataset (cell excluded upstream?)")
        out = {
            "scalogram": np.abs(f["scalogram"][()].astype(np.float32)),  # as older files: scales in float32
            "freqs_hz": f.attrs["freqs_hz"][()],
            "fs_hz": float(f.attrs["fs_hz"]),
            "amplitudes_pa": f.attrs.get("amplitudes_pa", [np.nan, np.nan]),
            "n_spikes": f.attrs.get("n_spikes", [np.nan, np.nan]),
        }
    with h5py.File(sweeps_path, "r") as f:
        out["traces_mv"] = f["traces_mv"][()]
    return out


def plot_examples(cls: str, cells: pd.DataFrame, examples: list[dict], n_usable: int):
    """Figure: per example cell, traces above scalograms, rheobase left, +40 pA right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    if not examples:
        fig, ax = plt.subplots(figsize=(6, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, f"{cls}: no usable cell", ha="center", va="center")
        return fig
    n = len(examples)
    fig = plt.figure(figsize=(12, 3.6 * n), layout="constrained")
    grid = fig.add_gridspec(2 * n, 2, height_ratios=[1, 2.2] * n)
    for i, (cell, ex) in enumerate(zip(cells.itertuples(index=False), examples)):
        t = np.arange(ex["traces_mv"].shape[-1]) / ex["fs_hz"]
        f = ex["freqs_hz"]
        extent = (0, t[-1] + 1 / ex["fs_hz"], f[0], f[-1])
        vmax = float(ex["scalogram"].max()) or 1.0
        norm = LogNorm(vmin=vmax * 1e-3, vmax=vmax, clip=True)  # spikes and subthreshold both visible
        images, bottoms = [], []
        for ch in range(2):
            top = fig.add_subplot(grid[2 * i, ch])
            bottom = fig.add_subplot(grid[2 * i + 1, ch], sharex=top)
            top.plot(t, ex["traces_mv"][ch], lw=0.6, color="k")
            top.set_ylabel("V (mV)")
            top.tick_params(labelbottom=False)
            amp, spikes = ex["amplitudes_pa"][ch], ex["n_spikes"][ch]
            top.set_title(
                f"cell {cell.specimen_id} ({cell.dataset}), {SWEEP_NAMES[ch]}: {amp:.0f} pA, "
                f"{spikes:.0f} spike{'' if spikes == 1 else 's'}",
                fontsize=10,
            )
            images.append(bottom.imshow(ex["scalogram"][ch], origin="lower", aspect="auto", extent=extent,
                                        cmap="viridis", norm=norm, interpolation="antialiased"))  # fmt: skip
            bottom.set_ylabel("frequency (Hz)")
            bottom.set_xlabel("time from step onset (s)")
            bottoms.append(bottom)
        fig.colorbar(images[-1], ax=bottoms, label="|CWT coefficient| (a.u., log scale)", shrink=0.9, pad=0.01)
    fig.suptitle(f"{cls}: example scalograms ({n} of {n_usable} usable cells)", fontsize=13)
    return fig


def write_class_examples(
    manifest_csv: str | Path, cls: str, out_png: str | Path, scalogram_dir="results/scalograms",
    sweeps_dir="results/sweeps", n: int = 3, seed: int = 0, among=None,
) -> list[str]:
    """Write one class's example figure (cells of ``among`` when given); return the ids shown."""
    import matplotlib.pyplot as plt

    from sts.io.atomic import save_figure_atomic

    manifest = pd.read_csv(manifest_csv, dtype={"specimen_id": str}, keep_default_na=False)
    cells = pick_examples(manifest, cls, n, seed, among)
    n_usable = int(((manifest["status"] == "ok") & (manifest["label"] == cls)).sum())
    examples = []
    for sid in cells["specimen_id"]:
        try:
            examples.append(read_example(Path(scalogram_dir) / f"{sid}.h5", Path(sweeps_dir) / f"{sid}.h5"))
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"cell {sid}: cannot read its scalogram or sweeps: {err}") from err
    if cells.empty:
        log.warning("class %s: no usable cell, the figure says so", cls)
    fig = plot_examples(cls, cells, examples, n_usable)
    try:
        # The constrained layout already fits the page: no bbox_inches="tight" (a second full draw).
        save_figure_atomic(fig, out_png, dpi=100, bbox_inches=None)
    finally:
        plt.close(fig)
    log.info("class %s: example cells %s -> %s", cls, ", ".join(cells["specimen_id"]), out_png)
    return list(cells["specimen_id"])


def write_examples_per_class(manifest_csv, classes, out_pngs, **kwargs) -> None:
    """Rule ``report_scalograms``: ``write_class_examples`` for each class, one figure each."""
    for cls, png in zip(classes, out_pngs):
        write_class_examples(manifest_csv, cls, png, **kwargs)
