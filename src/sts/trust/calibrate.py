"""The calibration step of one served model (a CNN, the LightGBM baseline, the fusion).

Its temperature is fitted on the model's out-of-fold predictions of the training cells (never
a holdout cell: refused against the manifest) and scored on the holdout ``predictions.csv`` of
its evaluation step. Writes, beside the model:

* ``calibration.json`` — the sidecar ``sts predict`` applies (``sts.trust.calibration``): T, the
  model file's sha256, ECE (15 bins), Brier score and log loss before/after, on the
  out-of-fold rows (where T was fitted) and on the holdout (where it was not), reliability bins;
* ``predictions_calibrated.csv`` — the holdout predictions after scaling (what ``sts predict``
  serves for those cells);
* ``reliability.png`` — the holdout's reliability diagram before and after.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


def plot_reliability(cal, title: str):
    """Accuracy against mean confidence per bin (markers sized by cell count), before and after, with
    the diagonal of perfect calibration; ECE in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.6), layout="constrained")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    for key, color, name in (("before", "tab:red", "raw"), ("after", "tab:blue", f"T = {cal.temperature:.2f}")):
        bins = cal.reliability[key]
        conf = [b["confidence"] for b in bins]
        acc = [b["accuracy"] for b in bins]
        n = np.array([b["n"] for b in bins], dtype=float)
        ece = cal.holdout[key]["ece"]
        ax.plot(conf, acc, color=color, lw=1)
        ax.scatter(conf, acc, s=20 + 180 * n / max(n.max(), 1), color=color, alpha=0.7,
                   label=f"{name}: ECE {ece:.3f}, log loss {cal.holdout[key]['log_loss']:.3f}")  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("mean top-class confidence (15 equal-width bins)")
    ax.set_ylabel("accuracy in the bin")
    ax.set_title(f"{title}: holdout reliability ({cal.n_holdout} cells)\nT fitted on {cal.n_fit} out-of-fold "
                 "training cells", fontsize=9)  # fmt: skip
    ax.legend(fontsize=8, loc="upper left")
    return fig


def calibrate_model(oof_csv, predictions_csv, model_file, manifest_csv, out_json, out_predictions, out_png,
                    title: str) -> dict:  # fmt: skip
    """Fit, score and write the three outputs; returns the calibration as a dict."""
    import matplotlib.pyplot as plt

    from sts.trust.calibration import calibrate, write_calibration
    from sts.io.atomic import save_figure_atomic, write_csv_atomic
    from sts.trust.metrics import predictions_frame

    text = {"specimen_id": str, "label": str, "predicted": str}
    oof = pd.read_csv(oof_csv, dtype=text, keep_default_na=False)
    holdout = pd.read_csv(predictions_csv, dtype=text, keep_default_na=False)
    manifest = pd.read_csv(manifest_csv, dtype={"specimen_id": str}, keep_default_na=False)
    cal, after = calibrate(oof, holdout, manifest)
    classes = cal.classes
    write_csv_atomic(out_predictions, predictions_frame(holdout["specimen_id"], holdout["label"],
                                                        [classes[i] for i in after.argmax(axis=1)], after, classes))
    fig = plot_reliability(cal, title)
    try:
        save_figure_atomic(fig, out_png)
    finally:
        plt.close(fig)
    write_calibration(out_json, cal, model_file)
    b, a = cal.holdout["before"], cal.holdout["after"]
    log.info("%s: T %.4f (fitted on %d out-of-fold cells); holdout (%d cells) ECE %.4f -> %.4f, Brier %.4f -> %.4f, "
             "log loss %.4f -> %.4f", title, cal.temperature, cal.n_fit, cal.n_holdout, b["ece"], a["ece"],
             b["brier"], a["brier"], b["log_loss"], a["log_loss"])  # fmt: skip
    return cal.to_dict()
