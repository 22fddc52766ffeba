"""SHAP explanation of a fitted tree classifier on the holdout cells.

``explain`` writes to OUT_DIR:

* ``shap_mean_abs.csv`` — rows features, one column per class: mean |SHAP| (raw-score units);
* ``shap_beeswarm_<class>.png`` — per class, a beeswarm of the top-k features by mean |SHAP|
  for that class (``/`` in a class name becomes ``-`` in the file name).

shap's multiclass output differs across versions (a list of (n, f) arrays, or one 3-D
array with the class axis last or first); ``shap_by_class`` returns (n, f, k) in every case.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from sts.io.atomic import save_figure_atomic, write_csv_atomic
from sts.settings import BaselineSettings

log = logging.getLogger(__name__)
SHAP_CSV = "shap_mean_abs.csv"


def normalise_shap(values, n_samples: int, n_features: int, n_classes: int) -> np.ndarray:
    """SHAP values of any layout as an array of shape (n_samples, n_features, n_classes)."""
    if isinstance(values, list):
        values = np.stack([np.asarray(v) for v in values], axis=-1)
    values = np.asarray(values, dtype=float)
    n, f, k = n_samples, n_features, n_classes
    if values.shape == (n, f, k):
        return values
    if values.shape == (k, n, f):
        return values.transpose(1, 2, 0)
    if values.shape == (n, k, f):
        return values.transpose(0, 2, 1)
    if values.shape == (n, f) and k == 2:  # binary: one margin, the positive class
        return np.stack([-values, values], axis=-1)
    raise ValueError(f"unexpected SHAP shape {values.shape} for {n} samples, {f} features, {k} classes")


def shap_by_class(model, X: pd.DataFrame, n_classes: int) -> np.ndarray:
    """TreeExplainer SHAP values of ``model`` on ``X``, shape (n, f, k)."""
    import shap

    explainer = shap.TreeExplainer(model)
    return normalise_shap(explainer.shap_values(X), len(X), X.shape[1], n_classes)


def class_filename(cls: str) -> str:
    """A file-name-safe version of a class name (Vip/Lamp5 -> Vip-Lamp5)."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", str(cls)).strip("-") or "class"


def mean_abs_table(values: np.ndarray, features: Sequence[str], classes: Sequence[str]) -> pd.DataFrame:
    """Mean |SHAP| per feature (rows) and class (columns)."""
    return pd.DataFrame(np.abs(values).mean(axis=0), index=list(features), columns=list(classes)).rename_axis(
        "feature"
    )


def beeswarm(values: np.ndarray, X: pd.DataFrame, cls: str, top_k: int = BaselineSettings.top_k):
    """Beeswarm figure of one class's SHAP values (n, f) for its top-k features."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import shap

    order = np.argsort(-np.abs(values).mean(axis=0))[:top_k]
    plt.figure()
    shap.summary_plot(
        values[:, order], X.iloc[:, order], feature_names=[X.columns[i] for i in order],
        max_display=top_k, show=False, plot_size=(8.0, 1.0 + 0.6 * len(order)), sort=True,
    )  # fmt: skip
    fig = plt.gcf()
    ax = fig.axes[0]
    ax.set_title(f"{cls}: top {len(order)} features by mean |SHAP| (n={len(X)})")
    ax.set_xlabel(f"SHAP value (impact on the {cls} raw score)")
    return fig


def explain(
    model, X: pd.DataFrame, classes: Sequence[str], out_dir: str | os.PathLike, top_k: int = BaselineSettings.top_k
) -> pd.DataFrame:
    """Write shap_mean_abs.csv and one beeswarm PNG per class; return the mean |SHAP| table.

    ``classes`` must be in the model's output order (``model.classes_``).
    """
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    classes = [str(c) for c in classes]
    values = shap_by_class(model, X, len(classes))
    table = mean_abs_table(values, X.columns, classes)
    write_csv_atomic(out / SHAP_CSV, table.reset_index())
    for j, cls in enumerate(classes):
        fig = beeswarm(values[:, :, j], X, cls, top_k)
        try:
            save_figure_atomic(fig, out / f"shap_beeswarm_{class_filename(cls)}.png")
        finally:
            plt.close(fig)
        log.info("%s: top features %s", cls, ", ".join(table[cls].nlargest(top_k).index))
    return table
