"""The LightGBM baseline's top features per class, from its ``shap_mean_abs.csv``.

``shap_mean_abs.csv`` (sts.baseline.explain) has one row per feature and one column per
class: mean |SHAP| over the holdout cells, in raw-score (log-odds) units. Here: the ``k``
largest per class as a long table (class, rank, feature, mean_abs_shap) and as one bar
chart per class.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from sts.settings import BaselineSettings

log = logging.getLogger(__name__)


def read_shap_table(path: str | Path) -> pd.DataFrame:
    """Mean |SHAP| table indexed by feature, one column per class."""
    table = pd.read_csv(path)
    if "feature" not in table.columns or table.shape[1] < 2:
        raise ValueError(f"{path}: expected a 'feature' column and one column per class")
    return table.set_index("feature")


def top_features(table: pd.DataFrame, k: int = BaselineSettings.top_k) -> pd.DataFrame:
    """The ``k`` features with the largest mean |SHAP| per class (ties: feature order)."""
    rows = []
    for cls in table.columns:
        values = table[cls].astype(float)
        order = np.argsort(-values.to_numpy(), kind="stable")[:k]
        for rank, i in enumerate(order, start=1):
            rows.append({"class": str(cls), "rank": rank, "feature": table.index[i], "mean_abs_shap": values.iloc[i]})
    return pd.DataFrame(rows, columns=["class", "rank", "feature", "mean_abs_shap"])


def plot_top_features(top: pd.DataFrame, title: str = "LightGBM baseline: top features per class"):
    """One horizontal bar chart per class, largest at the top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = list(dict.fromkeys(top["class"]))
    ncols = 2 if len(classes) > 1 else 1
    nrows = -(-len(classes) // ncols)
    k = int(top["rank"].max()) if len(top) else 1
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.5 * ncols, 0.45 * k * nrows + 1.2 * nrows), squeeze=False,
                             layout="constrained")  # fmt: skip
    xmax = float(top["mean_abs_shap"].max()) if len(top) else 1.0
    for ax, cls in zip(axes.flat, classes):
        rows = top[top["class"] == cls].sort_values("rank", ascending=False)
        ax.barh(rows["feature"], rows["mean_abs_shap"], color="tab:blue")
        ax.set_xlim(0, xmax * 1.05)
        ax.set_title(cls)
        ax.set_xlabel("mean |SHAP| over holdout cells (raw-score units)")
    for ax in list(axes.flat)[len(classes) :]:
        ax.axis("off")
    fig.suptitle(title)
    return fig


def write_top_features(shap_csv: str | Path, out_png: str | Path, out_csv: str | Path, out_html: str | Path,
                       k: int = BaselineSettings.top_k) -> pd.DataFrame:  # fmt: skip
    """Write the top-k table (CSV and HTML) and its figure; return the table."""
    import matplotlib.pyplot as plt

    from sts.io.atomic import save_figure_atomic, write_csv_atomic, write_text_atomic
    from sts.report.tables import html_table

    top = top_features(read_shap_table(shap_csv), k)
    write_csv_atomic(out_csv, top)
    note = f"Source: {shap_csv}. Mean |SHAP| (TreeExplainer) over the holdout cells, raw-score units."
    write_text_atomic(out_html, html_table(top, f"LightGBM baseline: top {k} features per class by mean |SHAP|",
                                           note, digits=4))  # fmt: skip
    fig = plot_top_features(top, f"LightGBM baseline: top {k} features per class by mean |SHAP|")
    try:
        save_figure_atomic(fig, out_png)
    finally:
        plt.close(fig)
    for cls, rows in top.groupby("class", sort=False):
        log.info("%s: %s", cls, ", ".join(rows["feature"]))
    return top
