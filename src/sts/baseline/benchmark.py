"""The LightGBM baseline's benchmark: holdout and k-fold cross-validation scores with bootstrap intervals.

``cross_validate`` runs a nested, stratified k-fold CV over all usable cells (training and
holdout together): each outer fold gets its own search (``sts.baseline.lgbm.search``, the run's
settings: trials, inner folds, seed) on the other folds' cells and its refit predicts the fold's
cells, so no cell scores a model whose parameters were chosen on it. Its out-of-fold predictions
and the holdout's are scored by ``sts.trust.uncertainty.scores_with_intervals`` (accuracy, balanced
accuracy, macro-F1, per-class recall; scikit-learn; class-stratified bootstrap of the cells,
percentile 95 % intervals, seeded).

``write_benchmark`` writes OUT_DIR/benchmark.json and benchmark.md (a markdown table, one row per
evaluation).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from sts.baseline.flow import FeatureCells
from sts.settings import BaselineSettings
from sts.trust.uncertainty import SCORED_METHOD, SCORES, BootstrapSettings, scores_with_intervals

log = logging.getLogger(__name__)

BENCHMARK_JSON = "benchmark.json"
BENCHMARK_MD = "benchmark.md"
CV_PREDICTIONS = "cv_predictions.csv"
HEADERS = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "macro_f1": "macro-F1"}


def all_cells(cells: FeatureCells) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """Features, labels and ids of the training and holdout cells together (index 0..n-1)."""
    X = pd.concat([cells.train.X, cells.test.X], ignore_index=True)
    y = pd.concat([cells.train.y, cells.test.y], ignore_index=True)
    ids = pd.concat([cells.train.specimen_id, cells.test.specimen_id], ignore_index=True)
    return X, y, ids


def cross_validate(cells: FeatureCells, settings: BaselineSettings, k: int, classes: list[str]) -> pd.DataFrame:
    """Out-of-fold predictions of a nested stratified ``k``-fold CV: specimen_id, label, predicted, fold."""
    from sklearn.model_selection import StratifiedKFold

    from sts.baseline.lgbm import fit_final, predict_in_order, search

    s = settings
    X, y, ids = all_cells(cells)
    predicted = np.empty(len(y), dtype=object)
    fold_of = np.full(len(y), -1)
    outer = StratifiedKFold(k, shuffle=True, random_state=s.seed)
    for fold, (train, test) in enumerate(outer.split(X, y)):
        result = search(X.iloc[train], y.iloc[train], n_trials=s.trials, seed=s.seed, n_jobs=s.jobs,
                        n_folds=s.folds, space=s.space, study_name=f"cv{fold}",
                        early_stopping_rounds=s.early_stopping or None)  # fmt: skip
        model = fit_final(X.iloc[train], y.iloc[train], result.best_params, seed=s.seed, n_jobs=s.jobs)
        predicted[test], fold_of[test] = predict_in_order(model, X.iloc[test], classes)[0], fold
        log.info("CV fold %d/%d: inner CV balanced accuracy %.4f, %d cells predicted", fold + 1, k,
                 result.best_score, len(test))  # fmt: skip
    return pd.DataFrame({"specimen_id": ids, "label": y, "predicted": predicted, "fold": fold_of})


def markdown(results: dict) -> str:
    """One table row per evaluation: cells, the scores and each class's recall, with their intervals."""
    classes = results["classes"]
    head = ["evaluation", "cells", *HEADERS.values(), *(f"recall {c}" for c in classes)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in results["evaluations"].items():
        cells = [_ci(r[m]) for m in SCORES] + [_ci(r["recall"][c]) for c in classes]
        lines.append(f"| {name} | {r['n_cells']:,} | " + " | ".join(cells) + " |")
    b = results["bootstrap"]
    source = results["source"] if "scheme" in results["source"] else f"{results['source']}, scheme {results['scheme']}"
    note = (f"{results['n_features']} features; {source}. "
            f"{100 * b['confidence']:.0f} % intervals: {b['method']}, {b['n_resamples']} resamples, "
            f"seed {b['seed']}.")  # fmt: skip
    return "\n".join(lines) + "\n\n" + note + "\n"


def _ci(score: dict) -> str:
    return f"{score['value']:.3f} [{score['low']:.3f}, {score['high']:.3f}]"


def write_benchmark(out_dir, cells: FeatureCells, holdout: pd.DataFrame, classes: list[str], scheme: str,
                    cv: pd.DataFrame | None = None, k: int = 0,
                    bootstrap: BootstrapSettings = BootstrapSettings()) -> dict:  # fmt: skip
    """benchmark.json and benchmark.md of the holdout predictions (``holdout``: label, predicted)
    and, with ``cv``, of the k-fold out-of-fold ones (also written as cv_predictions.csv)."""
    from sts.io.atomic import write_csv_atomic, write_json_atomic, write_text_atomic
    from sts.io.text import spreadsheet_safe

    out = Path(out_dir)
    evaluations = {f"holdout ({len(holdout):,} cells)": holdout}
    if cv is not None:
        write_csv_atomic(out / CV_PREDICTIONS, spreadsheet_safe(cv))
        evaluations = {f"{k}-fold CV (nested)": cv, **evaluations}
    results = {
        "scheme": scheme, "classes": list(classes), "n_features": len(cells.features), "features": cells.features,
        "source": cells.name, "counts": cells.summary(),
        "bootstrap": {**bootstrap.describe(), "method": SCORED_METHOD},
        "evaluations": {name: scores_with_intervals(p["label"], p["predicted"], classes, bootstrap)
                        for name, p in evaluations.items()},
    }  # fmt: skip
    write_json_atomic(out / BENCHMARK_JSON, results)
    table = markdown(results)
    write_text_atomic(out / BENCHMARK_MD, table)
    log.info("benchmark:\n%s", table)
    return results
