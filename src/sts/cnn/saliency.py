"""Per-class saliency on the scalogram's own axes (time in ms, frequency in Hz).

For each class, the mean absolute attribution over the correctly classified holdout cells of
that class, for the class's logit: input gradients (captum ``Saliency``) or Integrated
Gradients (captum, baseline: an all-zero input). The (3, H, W) map is folded back to the two
sweeps (rheobase = mean of image channels 0 and 2, which both carry it; +40 pA = channel 1)
and resized bilinearly to the scalogram's (n_freqs, n_times).

``saliency.h5``: dataset ``saliency`` float32 (n_classes, 2, n_freqs, n_times) (NaN for a class
without a correctly classified cell), attributes ``classes``, ``n_cells``, ``freqs_hz``,
``times_ms``, ``method``, ``channels``. ``saliency.png`` draws every class and sweep.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from sts.settings import DEFAULT_DEVICE, SALIENCY_METHODS, SaliencySettings, default

log = logging.getLogger(__name__)

METHOD, IG_STEPS = default(SaliencySettings, "method"), default(SaliencySettings, "ig_steps")
CHANNEL_NAMES = ("rheobase", "rheobase+40pA")


def attribute(model, x, target: int, method: str = METHOD, ig_steps: int = IG_STEPS):
    """Absolute attributions (B, 3, H, W) of ``target``'s logit."""
    import torch

    if method == "gradient":
        from captum.attr import Saliency

        return Saliency(model).attribute(x, target=target, abs=True).detach()
    if method == "integrated_gradients":
        from captum.attr import IntegratedGradients

        ig = IntegratedGradients(model)
        return ig.attribute(x, baselines=torch.zeros_like(x), target=target, n_steps=ig_steps).abs().detach()
    raise ValueError(f"saliency method {method!r}: expected one of {SALIENCY_METHODS}")


def to_scalogram_axes(maps: np.ndarray, n_freqs: int, n_times: int) -> np.ndarray:
    """(3, H, W) image-space map -> (2, n_freqs, n_times) per sweep."""
    import torch
    import torch.nn.functional as F

    sweeps = np.stack([(maps[0] + maps[2]) / 2, maps[1]])[None].astype(np.float32)
    return F.interpolate(torch.from_numpy(sweeps), size=(n_freqs, n_times), mode="bilinear",
                         align_corners=False)[0].numpy()  # fmt: skip


def class_saliency(model, packed, device, method: str = METHOD, batch_size: int = 32, ig_steps: int = IG_STEPS):
    """(saliency (K, 2, n_freqs, n_times), cells per class) over correctly classified holdout cells."""
    from tqdm import tqdm

    from sts.cnn.train import batch_tensor, predict_proba

    idx = packed.indices("test")
    y = packed.y[idx]
    pred = predict_proba(model, packed.images, idx, device).argmax(axis=1)
    k, nf, nt = len(packed.classes), len(packed.freqs_hz), packed.n_times
    out = np.full((k, 2, nf, nt), np.nan, dtype=np.float32)
    counts = []
    model.eval()
    for c, name in enumerate(tqdm(packed.classes, desc="saliency")):
        cells = idx[(y == c) & (pred == c)]
        counts.append(int(len(cells)))
        if not len(cells):
            log.warning("class %s: no correctly classified holdout cell, saliency left NaN", name)
            continue
        total = 0.0
        for start in range(0, len(cells), batch_size):
            x = batch_tensor(packed.images, cells[start : start + batch_size], device).requires_grad_(True)
            total = total + attribute(model, x, c, method, ig_steps).sum(dim=0).float().cpu().numpy()
        out[c] = to_scalogram_axes(total / len(cells), nf, nt)
    return out, counts


def explain(
    model_path, packed, out_dir, method: str = METHOD, device: str = DEFAULT_DEVICE,
    ig_steps: int = IG_STEPS, threads: int | None = None,
) -> Path:
    """Write saliency.h5 and saliency.png for a saved model (see the module docstring)."""
    import torch

    from sts.cnn.final import load_model
    from sts.cnn.train import select_device
    from sts.io.atomic import atomic_h5

    if method not in SALIENCY_METHODS:
        raise ValueError(f"saliency method {method!r}: expected one of {SALIENCY_METHODS}")
    if threads:
        torch.set_num_threads(threads)
    dev = select_device(device)
    model, meta = load_model(model_path, dev)
    sal, counts = class_saliency(model, packed, dev, method, ig_steps=ig_steps)
    times_ms = np.arange(packed.n_times) / packed.fs_hz * 1000.0
    out = Path(out_dir)
    with atomic_h5(out / "saliency.h5") as f:
        f.create_dataset("saliency", data=sal, compression="gzip", compression_opts=1)
        f.attrs.update(classes=json.dumps(list(packed.classes)), n_cells=counts, freqs_hz=packed.freqs_hz,
                       times_ms=times_ms, method=method, channels=json.dumps(CHANNEL_NAMES),
                       arch=meta["arch"])  # fmt: skip
    plot_saliency(sal, counts, packed.classes, packed.freqs_hz, times_ms, out / "saliency.png",
                  f"{meta['arch']}: {method.replace('_', ' ')}")  # fmt: skip
    return out / "saliency.h5"


def plot_saliency(sal, counts, classes, freqs_hz, times_ms, path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sts.io.atomic import save_figure_atomic

    k = len(classes)
    fig, axes = plt.subplots(k, 2, figsize=(10, 2.2 * k), squeeze=False, constrained_layout=True)
    extent = (times_ms[0], times_ms[-1], freqs_hz[0], freqs_hz[-1])
    for c in range(k):
        for ch in range(2):
            ax = axes[c, ch]
            ax.set_title(f"{classes[c]} (n={counts[c]}), {CHANNEL_NAMES[ch]}", fontsize=9)
            ax.set_ylabel("frequency (Hz)")
            if c == k - 1:
                ax.set_xlabel("time from step onset (ms)")
            if not np.isfinite(sal[c, ch]).any():  # no correctly classified holdout cell
                ax.set(xlim=extent[:2], ylim=extent[2:])
                ax.text(0.5, 0.5, "no correctly classified holdout cell", transform=ax.transAxes, ha="center",
                        va="center", color="grey")  # fmt: skip
                continue
            im = ax.imshow(sal[c, ch], origin="lower", aspect="auto", extent=extent, cmap="magma")
            fig.colorbar(im, ax=ax, shrink=0.8, label="mean |attribution| (a.u.)")
    fig.suptitle(f"{title} (per class: correctly classified holdout cells)")
    try:
        save_figure_atomic(fig, path)
    finally:
        plt.close(fig)
