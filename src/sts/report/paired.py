"""Paired bootstrap differences between models, from their ``predictions.csv`` files.

``paired_rows`` compares two models on the holdout cells they share (matched by
specimen_id): A minus B for balanced accuracy and weighted F1, with the paired,
class-stratified bootstrap interval of ``sts.trust.uncertainty.paired_difference``. The report
compares the best CNN (by its CV score, never by the holdout) with the LightGBM baseline;
another comparison (e.g. a fusion model minus the best single model) is one more
``paired_rows`` call on its two predictions.csv files.

Table columns (PAIRED_COLUMNS): comparison, model_a, model_b, metric, n_cells (shared cells,
the ones resampled), n_only_a / n_only_b (holdout cells of one model only, left out), score_a,
score_b, difference (a - b), low, high (the interval), std, confidence, n_resamples, seed,
method, reason (why a comparison has no scores; empty otherwise).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from sts.trust.uncertainty import METRICS, BootstrapSettings, paired_difference

log = logging.getLogger(__name__)

PAIRED_COLUMNS = ["comparison", "model_a", "model_b", "metric", "n_cells", "n_only_a", "n_only_b", "score_a",
                  "score_b", "difference", "low", "high", "std", "confidence", "n_resamples", "seed", "method",
                  "reason"]  # fmt: skip


def read_cv_score(best_params: str | Path) -> float:
    """A CNN's CV balanced accuracy from its tuning ``best_params.json`` (NaN when absent)."""
    import json

    value = json.loads(Path(best_params).read_text()).get("cv_balanced_accuracy")
    return float(value) if value is not None else float("nan")


def best_by_cv(cv_scores: Mapping[str, float]) -> str | None:
    """The model with the highest CV score (first in order on ties); None when none has one."""
    scored = {name: s for name, s in cv_scores.items() if s is not None and np.isfinite(s)}
    return max(scored, key=scored.get) if scored else None


def align(frame_a: pd.DataFrame, frame_b: pd.DataFrame) -> tuple[pd.DataFrame, int, int]:
    """Cells of both prediction tables (inner join on specimen_id): ``specimen_id, label,
    predicted_a, predicted_b``, and the counts of cells only in A and only in B."""
    a = frame_a[["specimen_id", "label", "predicted"]].astype(str)
    b = frame_b[["specimen_id", "label", "predicted"]].astype(str)
    both = a.merge(b, on="specimen_id", how="inner", suffixes=("_a", "_b"), validate="one_to_one")
    differ = both["label_a"] != both["label_b"]
    if differ.any():
        cells = both.loc[differ, "specimen_id"].tolist()[:5]
        raise ValueError(f"true labels differ between the two prediction tables for cells {cells}")
    both = both.rename(columns={"label_a": "label"}).drop(columns="label_b")
    return both, len(a) - len(both), len(b) - len(both)


def paired_rows(
    comparison: str, model_a: str, predictions_a: str | Path, model_b: str, predictions_b: str | Path,
    settings: BootstrapSettings = BootstrapSettings(),
) -> list[dict]:  # fmt: skip
    """Rows (one per metric) of A minus B on their shared holdout cells."""
    from sts.trust.metrics import read_predictions

    (frame_a, classes_a, _), (frame_b, classes_b, _) = read_predictions(predictions_a), read_predictions(predictions_b)
    both, only_a, only_b = align(frame_a, frame_b)
    base = {"comparison": comparison, "model_a": model_a, "model_b": model_b, "n_cells": len(both),
            "n_only_a": only_a, "n_only_b": only_b, **settings.describe(), "reason": ""}  # fmt: skip
    if only_a or only_b:
        log.warning("%s: %d cells only in %s and %d only in %s are left out", comparison, only_a, model_a, only_b,
                    model_b)  # fmt: skip
    if not len(both):
        return [{**base, "metric": m, "reason": "no holdout cell in common"} for m in METRICS]
    labels = set(both["label"]) | set(both["predicted_a"]) | set(both["predicted_b"])
    classes = list(dict.fromkeys([*classes_a, *classes_b, *sorted(labels)]))
    diff = paired_difference(both["label"], both["predicted_a"], both["predicted_b"], classes, settings)
    rows = []
    for m in METRICS:
        d = diff[m]
        rows.append({**base, "metric": m, "score_a": d["a"], "score_b": d["b"], "difference": d["difference"],
                     "low": d["low"], "high": d["high"], "std": d["std"]})  # fmt: skip
        log.info("%s, %s: %+.4f [%.4f, %.4f] (%d cells)", comparison, m, d["difference"], d["low"], d["high"],
                 len(both))  # fmt: skip
    return rows


def best_cnn_minus_baseline(
    baseline_predictions: str | Path | None, cnn_predictions: Mapping[str, str | Path],
    cv_scores: Mapping[str, float], settings: BootstrapSettings = BootstrapSettings(),
) -> pd.DataFrame:  # fmt: skip
    """The paired table of "best CNN (by CV) minus LightGBM"; a row with the reason when
    there is no baseline, no CNN or no CV score."""
    best = best_by_cv({a: cv_scores.get(a) for a in cnn_predictions})
    name = f"best CNN ({best}) - LightGBM" if best else "best CNN - LightGBM"
    reason = ("no LightGBM baseline" if not baseline_predictions else "no CNN in this run" if not cnn_predictions
              else "no CNN has a CV score" if best is None else "")  # fmt: skip
    if reason:
        rows = [{"comparison": name, "model_a": best or "", "model_b": "LightGBM", "metric": m, "reason": reason}
                for m in METRICS]  # fmt: skip
    else:
        rows = paired_rows(name, best, cnn_predictions[best], "LightGBM", baseline_predictions, settings)
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


def oof_balanced_accuracy(oof_csv: str | Path) -> float:
    """Balanced accuracy of a model's out-of-fold predictions (its CV score on the manifest's folds)."""
    from sklearn.metrics import balanced_accuracy_score

    from sts.trust.metrics import read_predictions

    frame, _, _ = read_predictions(oof_csv)
    return float(balanced_accuracy_score(frame["label"], frame["predicted"])) if len(frame) else float("nan")


def fusion_minus_members(
    fusion_predictions: str | Path, members: Mapping[str, str | Path], cv_scores: Mapping[str, float],
    settings: BootstrapSettings = BootstrapSettings(), labels: Mapping[str, str] | None = None,
) -> pd.DataFrame:  # fmt: skip
    """Paired rows of the fusion minus the best single member (by ``cv_scores``: the members'
    out-of-fold balanced accuracy, never the holdout), then minus every member.
    ``members``: name -> holdout predictions.csv; ``labels``: display names."""
    labels = dict(labels or {})
    best = best_by_cv({m: cv_scores.get(m) for m in members})
    rows = []
    if best is None:
        rows += [{"comparison": "fusion - best single model", "model_a": "fusion", "model_b": "", "metric": m,
                  "reason": "no member has a CV score"} for m in METRICS]  # fmt: skip
    else:
        name = labels.get(best, best)
        rows += paired_rows(f"fusion - best single model ({name})", "fusion", fusion_predictions, name,
                            members[best], settings)  # fmt: skip
    for m, path in members.items():
        name = labels.get(m, m)
        rows += paired_rows(f"fusion - {name}", "fusion", fusion_predictions, name, path, settings)
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)
