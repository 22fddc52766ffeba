"""One table of every model's holdout scores, read from their ``metrics.json`` files, with the
study's published figures beside them.

Rows: the LightGBM baseline, each CNN, and "best CNN" (the CNN with the highest CV balanced
accuracy, from its tuning ``best_params.json`` — never chosen by the holdout — repeated so it
sits beside the study's best-CNN figure; no such row without CV scores). Columns: model,
family, balanced_accuracy, balanced_accuracy_low, balanced_accuracy_high, weighted_f1,
weighted_f1_low, weighted_f1_high, accuracy, n_test, cv_balanced_accuracy,
published_balanced_accuracy, published_weighted_f1, published_source, metrics_file. The
``_low``/``_high`` columns are the 95 % class-stratified bootstrap percentile intervals stored
in each metrics.json (``sts.trust.uncertainty``; empty for a metrics.json without them); the
figure draws them as error bars.

With a fusion model (``sts.fusion``), a "fusion" row; with each model's ``calibration.json``,
the columns ``temperature`` and ``ece``, ``brier``, ``log_loss`` on the holdout before
temperature scaling and ``*_calibrated`` after it (T fitted on out-of-fold predictions);
``oof_balanced_accuracy`` is the CV score of a model's out-of-fold predictions on the
manifest's folds (it picks the best single model for the fusion's comparison).

Beside it, ``write_comparison`` writes the paired bootstrap differences on shared holdout
cells (``sts.report.paired``), read from the ``predictions.csv`` next to each metrics.json:
"best CNN minus LightGBM" and, with a fusion, "fusion minus best single model" (by
out-of-fold CV score) and "fusion minus" each member.

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
COLUMNS = ["model", "family", "balanced_accuracy", "balanced_accuracy_low", "balanced_accuracy_high", "weighted_f1",
           "weighted_f1_low", "weighted_f1_high", "accuracy", "n_test", "cv_balanced_accuracy",
           "published_balanced_accuracy", "published_weighted_f1", "published_source", "metrics_file",
           "oof_balanced_accuracy", "temperature", "ece", "ece_calibrated", "brier", "brier_calibrated", "log_loss",
           "log_loss_calibrated"]  # fmt: skip
CALIBRATION_SCORES = ("ece", "brier", "log_loss")
NOTE = (
    "Holdout scores of this run, read from each model's metrics.json; _low/_high: 95% percentile interval of a "
    "class-stratified bootstrap of the holdout cells (each class keeps its count). 'best CNN' is the CNN with the "
    "highest CV balanced accuracy. 'fusion': logistic regression stacked on the members' out-of-fold "
    "probabilities. ece (15 bins), brier, log_loss: holdout, raw probabilities; *_calibrated: after temperature "
    "scaling (temperature fitted on out-of-fold predictions, never on the holdout). Published figures are the study's ({STUDY}), on its 5,590 real cells and its "
    "split; the study gives no per-architecture figure here. Scores of another cohort (e.g. the synthetic demo) are "
    "not comparable with them."
)
PAIRED_NOTE = (
    "Paired bootstrap: both models scored on the same resampled holdout cells (class-stratified, percentile "
    "interval); only the cells both models scored. An interval that excludes 0 means the difference is larger than "
    "the holdout's sampling noise (training variability is not included)."
)


def read_metrics(path: str | Path) -> dict:
    metrics = json.loads(Path(path).read_text())
    missing = [k for k in ("balanced_accuracy", "weighted_f1", "accuracy", "n_test") if k not in metrics]
    if missing:
        raise ValueError(f"{path}: metrics without {missing}")
    return metrics


def _interval(metrics: dict, key: str) -> tuple[float, float]:
    ci = (metrics.get("bootstrap") or {}).get(key) or {}
    return float(ci.get("low", np.nan)), float(ci.get("high", np.nan))


def _calibration_columns(path) -> dict:
    if not path:
        return {}
    doc = json.loads(Path(path).read_text())
    out = {"temperature": float(doc["temperature"])}
    for k in CALIBRATION_SCORES:
        out[k], out[f"{k}_calibrated"] = doc["holdout"]["before"][k], doc["holdout"]["after"][k]
    return out


def comparison_table(
    baseline: str | Path | None, cnns: Mapping[str, str | Path], cv_scores: Mapping[str, float] | None = None,
    fusion: str | Path | None = None, calibrations: Mapping[str, str | Path] | None = None,
    oof_scores: Mapping[str, float] | None = None,
) -> pd.DataFrame:  # fmt: skip
    """The table (see the module docstring) from the baseline's, each CNN's and the fusion's
    metrics.json; ``cv_scores`` (arch -> CV balanced accuracy) picks the best CNN;
    ``calibrations`` and ``oof_scores`` are keyed by 'lightgbm', the arch, or 'fusion'."""
    from sts.report.paired import best_by_cv

    cv_scores, calibrations, oof_scores = dict(cv_scores or {}), dict(calibrations or {}), dict(oof_scores or {})
    rows = []

    def row(model, family, path, published=None, cv=np.nan, key=None):
        m = read_metrics(path)
        published = published or {}
        (ba_low, ba_high), (f1_low, f1_high) = _interval(m, "balanced_accuracy"), _interval(m, "weighted_f1")
        rows.append({
            "model": model, "family": family, "balanced_accuracy": float(m["balanced_accuracy"]),
            "balanced_accuracy_low": ba_low, "balanced_accuracy_high": ba_high, "weighted_f1": float(m["weighted_f1"]),
            "weighted_f1_low": f1_low, "weighted_f1_high": f1_high, "accuracy": float(m["accuracy"]),
            "n_test": int(m["n_test"]), "cv_balanced_accuracy": cv,
            "published_balanced_accuracy": published.get("balanced_accuracy", np.nan),
            "published_weighted_f1": published.get("weighted_f1", np.nan),
            "published_source": published.get("source", ""), "metrics_file": str(path),
            "oof_balanced_accuracy": float(oof_scores.get(key, np.nan)), **_calibration_columns(calibrations.get(key)),
        })  # fmt: skip

    if baseline:
        row("LightGBM (EP features)", "baseline", baseline, PUBLISHED["lightgbm"], key="lightgbm")
    for arch, path in cnns.items():
        row(arch, "CNN", path, cv=float(cv_scores.get(arch, np.nan)), key=arch)
    best = best_by_cv({arch: cv_scores.get(arch) for arch in cnns})
    if best:
        row(f"best CNN ({best})", "CNN", cnns[best], PUBLISHED["best_cnn"], cv=float(cv_scores[best]), key=best)
    elif cnns:
        log.warning("no CNN has a CV score: no 'best CNN' row")
    if fusion:
        row("fusion", "fusion", fusion, key="fusion")
    return pd.DataFrame(rows, columns=COLUMNS)


def _signed(d: dict) -> str:
    return f"{d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def paired_caption(paired: pd.DataFrame | None) -> str:
    """One line per comparison of the paired table, e.g. 'best CNN (x) - LightGBM: balanced
    accuracy +0.050 [-0.100, +0.200], weighted F1 ...' (empty without scores)."""
    if paired is None or not len(paired) or paired["difference"].isna().all():
        return ""
    lines = []
    for name, rows in paired.dropna(subset=["difference"]).groupby("comparison", sort=False):
        conf = int(round(100 * rows["confidence"].iloc[0]))
        parts = [f"{r['metric'].replace('_', ' ').replace('f1', 'F1')} {_signed(r)}" for r in rows.to_dict("records")]
        lines.append(f"{name} ({rows['n_cells'].iloc[0]} cells, paired {conf}% interval): " + ", ".join(parts))
    return "\n".join(lines)


def plot_comparison(table: pd.DataFrame, n_classes: int | None = None, paired: pd.DataFrame | None = None):
    """Grouped bars (balanced accuracy, weighted F1) per model with their bootstrap intervals
    as error bars; published figures as markers; the paired differences under the title."""
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
        low, high = table.get(f"{col}_low"), table.get(f"{col}_high")
        yerr = None
        if low is not None and high is not None and np.isfinite(low.to_numpy(float)).any():
            value = table[col].to_numpy(float)
            below, above = value - low.to_numpy(float), high.to_numpy(float) - value
            yerr = np.nan_to_num(np.clip(np.vstack([below, above]), 0, None))  # no interval: no bar
        label = f"{name} (this run" + (", bootstrap interval)" if yerr is not None else ")")
        bars = ax.bar(x + offset, table[col], width, yerr=yerr, capsize=3, ecolor="0.2", label=label, color=color)
        ax.bar_label(bars, fmt="%.2f", fontsize=8, label_type="center", color="white")
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
    caption = paired_caption(paired)
    ax.set_title("Holdout scores per model" + (f"\n{caption}" if caption else ""), fontsize=9 if caption else None)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def write_comparison(
    baseline, cnns: Mapping[str, str | Path], out_csv, out_html, out_png, cnn_best_params=None,
    paired_csv=None, paired_html=None, fusion=None, calibrations=None, oofs=None,
) -> pd.DataFrame:  # fmt: skip
    """Write the table as CSV and HTML, and its bar chart; return the table.

    ``cnn_best_params`` (arch -> tuning best_params.json) gives the CV scores that pick the
    best CNN; with ``paired_csv``/``paired_html``, also the paired bootstrap table of best CNN
    minus LightGBM, from the predictions.csv beside each metrics.json. ``fusion``: the fusion's
    metrics.json (adds its row and the paired rows fusion minus the best single member and minus
    each member); ``oofs`` (the fusion's members: 'lightgbm' or arch -> out-of-fold CSV) gives
    the CV scores that pick the best single member; ``calibrations`` (those names and 'fusion'
    -> calibration.json) the calibration columns.
    """
    import matplotlib.pyplot as plt

    from sts.io.atomic import save_figure_atomic, write_csv_atomic, write_text_atomic
    from sts.trust.metrics import PREDICTIONS_FILE
    from sts.report.paired import best_cnn_minus_baseline, fusion_minus_members, oof_balanced_accuracy, read_cv_score
    from sts.report.tables import html_table

    cv_scores = {arch: read_cv_score(path) for arch, path in (cnn_best_params or {}).items()}
    oof_scores = {name: oof_balanced_accuracy(path) for name, path in (oofs or {}).items()}
    table = comparison_table(baseline, cnns, cv_scores, fusion, calibrations, oof_scores)
    write_csv_atomic(out_csv, table)
    write_text_atomic(out_html, html_table(table, "Holdout scores per model", NOTE))
    paired = None
    if paired_csv or paired_html:
        beside = {a: Path(p).with_name(PREDICTIONS_FILE) for a, p in cnns.items()}
        paired = best_cnn_minus_baseline(baseline and Path(baseline).with_name(PREDICTIONS_FILE), beside, cv_scores)
        if fusion:
            files = {"lightgbm": baseline and Path(baseline).with_name(PREDICTIONS_FILE), **beside}
            members = {name: files[name] for name in oof_scores}
            fused = fusion_minus_members(Path(fusion).with_name(PREDICTIONS_FILE), members, oof_scores,
                                         labels={"lightgbm": "LightGBM"})  # fmt: skip
            paired = pd.concat([paired, fused], ignore_index=True)
        if paired_csv:
            write_csv_atomic(paired_csv, paired)
        if paired_html:
            write_text_atomic(paired_html, html_table(paired, "Paired differences of holdout scores", PAIRED_NOTE))
    classes = read_metrics(baseline or next(iter(cnns.values()))).get("classes") if len(table) else None
    headline = None  # under the chart's title: best CNN - LightGBM and fusion - best single model
    if paired is not None:
        headline = paired[paired["comparison"].str.startswith(("best CNN", "fusion - best single"))]
    fig = plot_comparison(table, len(classes) if classes else None, headline)
    try:
        save_figure_atomic(fig, out_png)
    finally:
        plt.close(fig)
    for r in table.itertuples(index=False):
        log.info("%s: balanced accuracy %.4f [%.4f, %.4f], weighted F1 %.4f [%.4f, %.4f] (n=%d)", r.model,
                 r.balanced_accuracy, r.balanced_accuracy_low, r.balanced_accuracy_high, r.weighted_f1,
                 r.weighted_f1_low, r.weighted_f1_high, r.n_test)  # fmt: skip
    return table
