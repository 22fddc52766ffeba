"""Out-of-fold class probabilities of the LightGBM baseline on the manifest's CV folds.

The baseline's search scores its trials on folds of its own (seeded StratifiedKFold); fusion
and calibration need each training cell predicted by a model that did not train on it, on
the *same* folds as the CNNs (the manifest's ``fold`` column). So the tuned parameters
(``best_params.json``) are refitted once per manifest fold on the other folds' cells, with
the final fit's code (``fit_final``), and predict that fold's cells. Holdout cells are never
read. Caveat: the parameters themselves were chosen by a CV over all training cells, so these
predictions are slightly optimistic (as the CNNs' are: their folds also chose their epochs).

Output (``oof.csv``, the CNNs' ``oof_best.csv`` format): ``specimen_id, fold, label, predicted,
p_<class>...``, in the configured class order (a class without training cells in a fold's fit
gets probability 0).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)


def out_of_fold(features_csv, manifest_csv, best_params_json, out_csv, classes, seed: int = 0) -> pd.DataFrame:
    """Write and return the out-of-fold table of the training cells with EP features (one
    LightGBM thread per fit: see ``sts.baseline.lgbm``)."""
    from sts.baseline.computed import join_features
    from sts.baseline.lgbm import fit_final, predict_in_order
    from sts.io.atomic import write_csv_atomic
    from sts.trust.metrics import predictions_frame

    classes = [str(c) for c in classes]
    rows, _, columns = join_features(features_csv, manifest_csv)
    manifest = pd.read_csv(manifest_csv, dtype={"specimen_id": str}, keep_default_na=False)
    folds = dict(zip(manifest["specimen_id"], manifest["fold"].astype(int)))
    train = rows[rows["split"] == "train"].reset_index(drop=True)
    train = train.assign(fold=train["specimen_id"].map(folds))
    if (train["fold"] < 0).any():
        raise ValueError(f"{manifest_csv}: training cells without a CV fold: {train.loc[train['fold'] < 0, 'specimen_id'].tolist()[:5]}")
    params = json.loads(Path(best_params_json).read_text())
    frames = []
    for k in sorted(train["fold"].unique()):
        fit_rows, valid = train[train["fold"] != k], train[train["fold"] == k]
        model = fit_final(fit_rows[columns], fit_rows["label"], params, seed=seed)
        pred, proba = predict_in_order(model, valid[columns], classes)
        frame = predictions_frame(valid["specimen_id"], valid["label"], pred, proba, classes)
        frame.insert(1, "fold", int(k))
        frames.append(frame)
        log.info("fold %d: fitted on %d cells, predicted %d", k, len(fit_rows), len(valid))
    table = pd.concat(frames, ignore_index=True)
    write_csv_atomic(out_csv, table)
    return table
