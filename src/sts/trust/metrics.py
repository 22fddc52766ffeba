"""Holdout evaluation shared by every model stage (LightGBM baseline, CNNs).

``evaluate`` computes the scores from labels, predictions and class probabilities;
``write_evaluation`` writes them to a folder as

* ``metrics.json`` — ``balanced_accuracy``, ``weighted_f1``, ``accuracy``, ``per_class``
  ({class: {precision, recall, f1, support}}), ``confusion_matrix`` (rows true, columns
  predicted, in ``classes`` order), ``classes``, ``n_test``, and ``bootstrap``: 95 %
  intervals of ``balanced_accuracy`` and ``weighted_f1`` (``{"low", "high", "std"}`` each)
  from a seeded, class-stratified bootstrap of the holdout cells, with the method, number of
  resamples, confidence and seed (``sts.trust.uncertainty``); ``ece`` (15 bins), ``brier`` and
  ``log_loss`` of the probabilities as given, uncalibrated (``sts.trust.calibration``; the
  calibration step's ``calibration.json`` has them before and after temperature scaling);
* ``predictions.csv`` — ``specimen_id, label, predicted, p_<class>...`` (one probability
  column per class, class names verbatim, e.g. ``p_Vip/Lamp5``);
* ``confusion_matrix.png`` — counts and row-normalised matrices side by side.

Every file is written atomically (``sts.io.atomic``): a killed job never leaves a half-written output.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from sts.io.atomic import save_figure_atomic, write_csv_atomic, write_json_atomic
from sts.trust.uncertainty import BootstrapSettings, bootstrap_intervals

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.csv"
CONFUSION_PNG = "confusion_matrix.png"


def _check(y_true, y_pred, proba, classes, specimen_ids) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)
    proba = np.asarray(proba, dtype=float)
    n, k = len(y_true), len(classes)
    if len(set(classes)) != k:
        raise ValueError(f"duplicate class names: {list(classes)}")
    if len(y_pred) != n or proba.shape != (n, k):
        raise ValueError(f"shapes differ: y_true {n}, y_pred {len(y_pred)}, proba {proba.shape}, {k} classes")
    if specimen_ids is not None:
        ids = pd.Series(list(specimen_ids))
        if len(ids) != n:
            raise ValueError(f"{len(ids)} specimen ids for {n} predictions")
        if ids.duplicated().any():
            raise ValueError(f"duplicate specimen ids: {ids[ids.duplicated()].tolist()[:5]}")
    unknown = (set(y_true) | set(y_pred)) - set(classes)
    if unknown:
        raise ValueError(f"labels not among classes {list(classes)}: {sorted(map(str, unknown))}")
    return y_true, y_pred, proba


def evaluate(
    y_true: Sequence, y_pred: Sequence, proba, classes: Sequence[str], specimen_ids: Sequence | None = None,
    bootstrap: BootstrapSettings | None = BootstrapSettings(),
) -> dict:  # fmt: skip
    """Scores of one holdout: see the module docstring for the keys.

    ``proba`` has shape (n, len(classes)), columns in ``classes`` order; ``specimen_ids``
    (optional) are only checked for length and uniqueness. ``bootstrap=None`` leaves the
    intervals out.
    """
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    classes = [str(c) for c in classes]
    y_true, y_pred, proba = _check(y_true, y_pred, proba, classes, specimen_ids)
    prec, rec, f1, sup = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
    intervals = {"bootstrap": bootstrap_intervals(y_true, y_pred, classes, bootstrap)} if bootstrap else {}
    from sts.trust.calibration import codes, probabilistic_scores

    probabilistic = probabilistic_scores(proba, codes(y_true, classes)) if len(y_true) else {}
    return {
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=classes, average="weighted", zero_division=0)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "per_class": {
            c: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for c, p, r, f, s in zip(classes, prec, rec, f1, sup)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=classes).tolist(),
        "classes": classes,
        "n_test": int(len(y_true)),
        **probabilistic,
        **intervals,
    }


def predictions_frame(specimen_ids, y_true, y_pred, proba, classes: Sequence[str]) -> pd.DataFrame:
    """The ``predictions.csv`` table."""
    frame = pd.DataFrame(
        {"specimen_id": list(specimen_ids), "label": list(y_true), "predicted": list(y_pred)}
    )
    proba = np.asarray(proba, dtype=float)
    for j, c in enumerate(classes):
        frame[f"p_{c}"] = proba[:, j]
    return frame


def plot_confusion(cm, classes: Sequence[str], title: str = ""):
    """Figure with the count and the row-normalised confusion matrices."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, dtype=float)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    k = len(classes)
    fig, axes = plt.subplots(1, 2, figsize=(5.0 + 2.6 * k, 1.5 + 1.1 * k), constrained_layout=True)
    for ax, mat, sub, fmt in ((axes[0], cm, "counts", "{:.0f}"), (axes[1], norm, "row-normalised", "{:.2f}")):
        im = ax.imshow(mat, cmap="Blues", vmin=0, vmax=mat.max() or 1)
        ax.set_xticks(range(k), classes, rotation=30, ha="right")
        ax.set_yticks(range(k), classes)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(f"{title} ({sub})" if title else sub)
        for i in range(k):
            for j in range(k):
                light = mat[i, j] > 0.6 * (mat.max() or 1)
                ax.text(
                    j, i, fmt.format(mat[i, j]), ha="center", va="center", color="white" if light else "black"
                )
        fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def write_evaluation(
    out_dir: str | os.PathLike,
    specimen_ids: Sequence,
    y_true: Sequence,
    y_pred: Sequence,
    proba,
    classes: Sequence[str],
    title: str = "holdout",
) -> dict:
    """Write metrics.json, predictions.csv and confusion_matrix.png to ``out_dir``; return the metrics."""
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    classes = [str(c) for c in classes]
    metrics = evaluate(y_true, y_pred, proba, classes, specimen_ids)
    write_csv_atomic(out / PREDICTIONS_FILE, predictions_frame(specimen_ids, y_true, y_pred, proba, classes))
    fig = plot_confusion(metrics["confusion_matrix"], classes, title)
    try:
        save_figure_atomic(fig, out / CONFUSION_PNG)
    finally:
        plt.close(fig)
    write_json_atomic(out / METRICS_FILE, metrics)
    if "bootstrap" in metrics:
        ci = metrics["bootstrap"]
        bounds = [v for m in ("balanced_accuracy", "weighted_f1") for v in (metrics[m], ci[m]["low"], ci[m]["high"])]
        log.info("%s: %.0f %% intervals (%s, %d resamples): balanced accuracy %.4f [%.4f, %.4f], weighted F1 %.4f "
                 "[%.4f, %.4f]", title, 100 * ci["confidence"], ci["method"], ci["n_resamples"], *bounds)  # fmt: skip
    return metrics


def read_predictions(path: str | os.PathLike) -> tuple[pd.DataFrame, list[str], np.ndarray]:
    """Read a predictions.csv back: (table, classes, probabilities)."""
    text = {c: str for c in ("specimen_id", "label", "predicted")}  # ids such as '007', labels such as 'NA'
    frame = pd.read_csv(path, dtype=text, keep_default_na=False)
    cols = [c for c in frame.columns if c.startswith("p_")]
    return frame, [c[2:] for c in cols], frame[cols].to_numpy(float)
