"""One table of every model's holdout scores, read from their ``metrics.json`` files, with the
study's published figures beside them.

Rows: the LightGBM baseline, each CNN, and "best CNN" (the CNN with the highest holdout
balanced accuracy, repeated so it sits beside the study's best-CNN figure). Columns: model,
family, balanced_accuracy, weighted_f1, accuracy, n_test, published_balanced_accuracy,
published_weighted_f1, published_source, metrics_file.

Published figures (``PUBLISHED``) are only those the study reports, as quoted in
``../shared/reference/README.md`` (LightGBM) and the project brief (best CNN); the study
gives no per-architecture figure here. They come from its 5,590 real cells and split:
scores of another cohort (e.g. the synthetic demo) are not comparable with them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

STUDY = "Amprimo et al., EMBC 2025"
PUBLISHED = {
    "lightgbm": {"weighted_f1": 0.890, "source": f"{STUDY}: LightGBM holdout weighted F1 89.00%"},
    "best_cnn": {"balanced_accuracy": 0.905, "source": f"{STUDY}: best CNN holdout balanced accuracy 90.5%"},
}
COLUMNS = ["model", "family", "balanced_accuracy", "weighted_f1", "accuracy", "n_test",
           "published_balanced_accuracy", "published_weighted_f1", "published_source", "metrics_file"]  # fmt: skip
NOTE = (
    "Holdout scores of this run, read from each model's metrics.json. Published figures are the study's "
    f"({STUDY}), on its 5,590 real cells and its split; the study gives no per-architecture figure here. "
    "Scores of another cohort (e.g. the synthetic demo) are not comparable with them."
)


def read_metrics(path: str | Path) -> dict:
    metrics = json.loads(Path(path).read_text())
    missing = [k for k in ("balanced_accuracy", "weighted_f1", "accuracy", "n_test") if k not in metrics]
    if missing:
        raise ValueError(f"{path}: metrics without {missing}")
    return metrics


def comparison_table(baseline: str | Path | None, cnns: Mapping[str, str | Path]) -> pd.DataFrame:
    """The table (see the module docstring) from the baseline's and each CNN's metrics.json."""
    rows = []

    def row(model, family, path, published=None):
        m = read_metrics(path)
        published = published or {}
        rows.append({
            "model": model, "family": family, "balanced_accuracy": float(m["balanced_accuracy"]),
            "weighted_f1": float(m["weighted_f1"]), "accuracy": float(m["accuracy"]), "n_test": int(m["n_test"]),
            "published_balanced_accuracy": published.get("balanced_accuracy", np.nan),
            "published_weighted_f1": published.get("weighted_f1", np.nan),
            "published_source": published.get("source", ""), "metrics_file": str(path),
        })  # fmt: skip

    if baseline:
        row("LightGBM (EP features)", "baseline", baseline, PUBLISHED["lightgbm"])
    for arch, path in cnns.items():
        row(arch, "CNN", path)
    cnn_rows = [r for r in rows if r["family"] == "CNN"]
    if cnn_rows:
        best = max(cnn_rows, key=lambda r: r["balanced_accuracy"])
        row(f"best CNN ({best['model']})", "CNN", best["metrics_file"], PUBLISHED["best_cnn"])
    return pd.DataFrame(rows, columns=COLUMNS)


def plot_comparison(table: pd.DataFrame, n_classes: int | None = None):
    """Grouped bars (balanced accuracy, weighted F1) per model; published figures as markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(table))
    width = 0.38
    fig, ax = plt.subplots(figsize=(max(6.0, 1.5 * len(table) + 2), 4.2), layout="constrained")
    for offset, col, pub, name, color in (
        (-width / 2, "balanced_accuracy", "published_balanced_accuracy", "balanced accuracy", "tab:blue"),
        (width / 2, "weighted_f1", "published_weighted_f1", "weighted F1", "tab:orange"),
    ):
        bars = ax.bar(x + offset, table[col], width, label=f"{name} (this run)", color=color)
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
        has = table[pub].notna().to_numpy()
        ax.scatter(x[has] + offset, table.loc[has, pub], marker="D", s=60, color=color, edgecolors="k", zorder=3,
                   label=f"{name} (published)" if has.any() else None)  # fmt: skip
        for xi, value in zip(x[has] + offset, table.loc[has, pub]):
            ax.annotate(f"{value:.3f} (study)", (xi, value), xytext=(0, 7), textcoords="offset points",
                        ha="center", fontsize=8)  # fmt: skip
    if n_classes:
        ax.axhline(1 / n_classes, ls="--", color="grey", lw=1, label=f"chance balanced accuracy (1/{n_classes})")
    ax.set_xticks(x, table["model"], rotation=20, ha="right")
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("holdout score")
    ax.set_title("Holdout scores per model")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def write_comparison(baseline, cnns: Mapping[str, str | Path], out_csv, out_html, out_png) -> pd.DataFrame:
    """Write the table as CSV and HTML, and its bar chart; return the table."""
    import matplotlib.pyplot as plt

    from sts.metrics import save_figure_atomic, write_csv_atomic, write_text_atomic
    from sts.report.tables import html_table

    table = comparison_table(baseline, cnns)
    write_csv_atomic(out_csv, table)
    write_text_atomic(out_html, html_table(table, "Holdout scores per model", NOTE))
    classes = read_metrics(baseline or next(iter(cnns.values()))).get("classes") if len(table) else None
    fig = plot_comparison(table, len(classes) if classes else None)
    try:
        save_figure_atomic(fig, out_png)
    finally:
        plt.close(fig)
    for r in table.itertuples(index=False):
        log.info("%s: balanced accuracy %.4f, weighted F1 %.4f (n=%d)", r.model, r.balanced_accuracy, r.weighted_f1,
                 r.n_test)  # fmt: skip
    return table
