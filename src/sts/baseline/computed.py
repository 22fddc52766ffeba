"""LightGBM baseline on the EP features computed per cell (``results/baseline/features.csv``).

Cells follow the manifest's split (holdout = its ``test`` cells). A cell usable in the
manifest whose features could not be computed is listed in ``excluded.csv`` with the
reason, never imputed; features undefined for a cell (e.g. avg_isi with one spike) stay
NaN, which LightGBM routes natively.

The final fit is saved for ``sts predict`` in ``model/`` (``model.txt`` + ``model.json``,
``sts.baseline.served``), with the feature parameters that made ``features.csv``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

META = ["specimen_id", "dataset", "label", "status", "reason"]


def join_features(features_csv, manifest_csv) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(usable rows with split, excluded rows with reason, feature columns)."""
    feats = pd.read_csv(features_csv, dtype={"specimen_id": str})
    manifest = pd.read_csv(manifest_csv, dtype={"specimen_id": str}, keep_default_na=False)
    usable = manifest[manifest["status"] == "ok"][["specimen_id", "label", "split"]]
    merged = usable.merge(feats.drop(columns=["label"]), on="specimen_id", how="left", validate="one_to_one")
    missing = merged["status"].isna()
    failed = merged["status"].fillna("ok") != "ok"
    excluded = merged.loc[missing | failed, ["specimen_id", "label", "split"]].copy()
    excluded["reason"] = merged.loc[missing | failed, "reason"].fillna("no EP features for this cell")
    excluded.loc[missing[missing | failed].values, "reason"] = "no EP features for this cell"
    rows = merged[~(missing | failed)]
    columns = [c for c in feats.columns if c not in META and rows[c].notna().any()]
    return rows.reset_index(drop=True), excluded.reset_index(drop=True), columns


def train_computed(features_csv, manifest_csv, out_dir, n_trials=50, seed=0, n_jobs=2, n_folds=3,
                   classes=None, space=None, feature_params=None) -> dict:
    """Tune, fit, save the fit (``out_dir/model/``), evaluate on the holdout and explain; returns
    the holdout metrics.

    ``classes`` (the configured ones) orders the metrics and probability columns; a class
    without training cells gets probability 0. Default: the training labels, sorted.
    ``space`` updates the search space (``sts.baseline.lgbm.DEFAULT_SPACE``); ``feature_params``
    are the ``FeatureParams`` that made ``features_csv`` (default: those ``sts ep-features`` uses).
    """
    from sts.baseline.explain import explain
    from sts.baseline.lgbm import fit_final, search
    from sts.baseline.served import save_model
    from sts.atomic import write_csv_atomic, write_json_atomic
    from sts.metrics import write_evaluation

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, excluded, columns = join_features(features_csv, manifest_csv)
    if len(excluded):
        log.warning("%d usable cells have no EP features: %s", len(excluded), excluded["reason"].value_counts().to_dict())
    write_csv_atomic(out / "excluded.csv", excluded)
    train, test = rows[rows["split"] == "train"], rows[rows["split"] == "test"]
    log.info("%d features; %d training and %d holdout cells", len(columns), len(train), len(test))
    result = search(train[columns], train["label"], n_trials=n_trials, seed=seed, n_jobs=n_jobs,
                    n_folds=n_folds, space=space, storage=out / "search.journal",
                    study_name=f"lgbm-seed{seed}")  # fmt: skip
    write_json_atomic(out / "best_params.json", result.best_params)
    write_json_atomic(out / "search.json", {**result.to_dict(), "features": columns})
    model = fit_final(train[columns], train["label"], result.best_params, seed=seed, n_jobs=n_jobs)
    fitted = [str(c) for c in model.classes_]
    classes = [str(c) for c in classes] if classes else fitted
    unknown = sorted(set(fitted) - set(classes))
    if unknown:
        raise ValueError(f"{manifest_csv}: training labels {unknown} are not among the classes {classes}")
    save_model(out / "model", model, columns, classes, train[columns], feature_params=feature_params,
               best_params=result.best_params, seed=seed, labels=train["label"])  # fmt: skip
    proba = np.zeros((len(test), len(classes)))
    proba[:, [classes.index(c) for c in fitted]] = model.predict_proba(test[columns].reset_index(drop=True))
    pred = [classes[i] for i in proba.argmax(axis=1)]
    metrics = write_evaluation(out, test["specimen_id"], test["label"], pred, proba, classes,
                               title="LightGBM (computed EP features), holdout")  # fmt: skip
    explain(model, test[columns].reset_index(drop=True), fitted, out)
    log.info("holdout balanced accuracy %.3f, weighted F1 %.3f", metrics["balanced_accuracy"], metrics["weighted_f1"])
    return metrics
