"""Fusion: a stacked multinomial logistic regression over the members' out-of-fold probabilities.

Members are the trained CNNs and the LightGBM baseline. Each member's out-of-fold table
(``oof_best.csv`` of a CNN's tuning, ``oof.csv`` of the baseline; the manifest's folds) gives
every training cell's class probabilities from a model that did not train on it. The stacker's
features are the members' log-probabilities (clipped at ``FEATURE_FLOOR``), member by member in
the members' order, classes in the configured order: ``x = [log p_m1, log p_m2, ...]``. Raw
member probabilities, not calibrated ones: temperature scaling multiplies a member's
log-probabilities by 1/T, which the stacker's coefficients absorb, so calibrating first would
change nothing but the (weak) regularisation; raw inputs also keep the fusion independent of
the calibration step. The fusion's own output is calibrated afterwards like any model's.

Training rows: the training cells that every member predicted out of fold (a cell a member
excluded, e.g. without EP features, is left out and listed in ``excluded.csv``). No holdout
cell is ever a training row (``check_training_rows`` refuses one). The holdout is scored once,
on the holdout cells every member predicted, from the members' evaluation ``predictions.csv``.
The fusion's own out-of-fold predictions (``oof.csv``: the stacker refitted per manifest fold on
the other folds' rows) give its CV score and the rows its temperature is fitted on.

Outputs of ``fit_fusion`` (a folder): ``model.json`` (``sts.fusion.model``), ``oof.csv``,
``metrics.json``, ``predictions.csv``, ``confusion_matrix.png`` (``sts.trust.metrics``) and
``excluded.csv`` (``specimen_id, split, label, reason``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

FEATURE_FLOOR = 1e-6  # log-probability features bottom out at log(1e-6) = -13.8


@dataclass(frozen=True)
class Member:
    """One fused model: its name, served model file, out-of-fold and holdout predictions."""

    name: str
    model: Path  # model.pt, or the LightGBM baseline's model.json
    oof: Path
    predictions: Path


@dataclass(frozen=True)
class FusionParams:
    """The stacker's settings (one home: these defaults)."""

    C: float = 1.0  # inverse L2 strength of the logistic regression (scikit-learn's C)
    max_iter: int = 5000


def features(probas: list[np.ndarray], floor: float = FEATURE_FLOOR) -> np.ndarray:
    """(n, members x classes) stacker input from each member's (n, k) probabilities."""
    return np.hstack([np.log(np.clip(np.asarray(p, dtype=np.float64), floor, None)) for p in probas])


def fit_stacker(X, y, params: FusionParams = FusionParams()) -> dict:
    """Fitted multinomial logistic regression as plain arrays: ``coef`` (k', d) or (1, d) for two
    classes, ``intercept``, ``fitted_classes`` (sorted labels present in ``y``)."""
    from sklearn.linear_model import LogisticRegression

    labels = sorted(set(np.asarray(y, dtype=str)))
    if len(labels) == 1:  # a fold of a tiny cohort with one class left: that class, always
        return {"coef": np.zeros((1, np.shape(X)[1])).tolist(), "intercept": [0.0], "fitted_classes": labels}
    lr = LogisticRegression(C=params.C, max_iter=params.max_iter)
    lr.fit(np.asarray(X, dtype=np.float64), np.asarray(y, dtype=str))
    return {"coef": lr.coef_.tolist(), "intercept": lr.intercept_.tolist(),
            "fitted_classes": [str(c) for c in lr.classes_]}  # fmt: skip


def stacker_proba(stacker: dict, X, classes: list[str]) -> np.ndarray:
    """(n, len(classes)) probabilities of the saved stacker (numpy only: the served path and the
    evaluation share it); classes absent from training get 0."""
    X = np.asarray(X, dtype=np.float64)
    W, b = np.asarray(stacker["coef"], dtype=np.float64), np.asarray(stacker["intercept"], dtype=np.float64)
    scores = X @ W.T + b
    if len(stacker["fitted_classes"]) == 2:  # binary: one row of coefficients for the second class
        p1 = 1.0 / (1.0 + np.exp(-scores[:, 0]))
        raw = np.column_stack([1.0 - p1, p1])
    else:
        e = np.exp(scores - scores.max(axis=1, keepdims=True))
        raw = e / e.sum(axis=1, keepdims=True)
    out = np.zeros((len(X), len(classes)))
    out[:, [classes.index(c) for c in stacker["fitted_classes"]]] = raw
    return out


def _member_table(member: Member, path: Path, classes: list[str], what: str) -> pd.DataFrame:
    from sts.trust.calibration import proba_columns
    from sts.trust.metrics import read_predictions

    frame, member_classes, _ = read_predictions(path)
    if member_classes != classes:
        raise ValueError(f"{path}: classes {member_classes} differ from the fusion's {classes}")
    if frame["specimen_id"].duplicated().any():
        raise ValueError(f"{path}: duplicate specimen ids in the {what} predictions of {member.name}")
    _, proba = proba_columns(frame)
    out = frame[["specimen_id", "label"]].copy()
    out[member.name] = list(proba)
    return out


def join_members(members: list[Member], which: str, cells: pd.DataFrame, classes: list[str]):
    """Cells of ``cells`` (specimen_id, label, split) that every member predicted in its
    ``which`` table ('oof' or 'predictions'): (joined table, excluded rows with the reason)."""
    joined, excluded = cells.copy(), []
    for m in members:
        table = _member_table(m, getattr(m, which), classes, which)
        merged = joined.merge(table, on="specimen_id", how="left", suffixes=("", "_m"), indicator=True)
        missing = merged["_merge"] == "left_only"
        if (merged.loc[~missing, "label"] != merged.loc[~missing, "label_m"]).any():
            raise ValueError(f"{getattr(m, which)}: labels differ from the manifest's")
        for r in merged[missing].to_dict("records"):
            excluded.append({"specimen_id": r["specimen_id"], "split": r["split"], "label": r["label"],
                             "reason": f"no {'out-of-fold' if which == 'oof' else 'holdout'} prediction of "
                                       f"{m.name}"})  # fmt: skip
        joined = merged[~missing].drop(columns=["label_m", "_merge"])
    return joined.reset_index(drop=True), excluded


def fit_fusion(members: list[Member], manifest_csv, out_dir, classes, params: FusionParams = FusionParams(),
               scheme: str = "study") -> dict:  # fmt: skip
    """Fit the stacker on the members' out-of-fold predictions of the training cells, its own
    out-of-fold predictions per manifest fold, score the holdout, save the model; return metrics."""
    from sts.trust.calibration import check_training_rows
    from sts.fusion.model import save_fusion
    from sts.io.atomic import write_csv_atomic
    from sts.trust.metrics import predictions_frame, write_evaluation
    from sts.io.text import spreadsheet_safe

    if len(members) < 2:
        raise ValueError(f"fusion needs at least two members, got {[m.name for m in members]}")
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate member names {names}")
    classes = [str(c) for c in classes]
    out = Path(out_dir)
    manifest = pd.read_csv(manifest_csv, dtype={"specimen_id": str, "label": str}, keep_default_na=False)
    usable = manifest[manifest["status"] == "ok"]
    cells = usable[["specimen_id", "label", "split", "fold"]]

    for m in members:  # refuse a member whose out-of-fold table holds a holdout cell
        check_training_rows(pd.read_csv(m.oof, dtype={"specimen_id": str})["specimen_id"], manifest,
                            f"out-of-fold predictions of {m.name} ({m.oof})")  # fmt: skip
    train, excl_train = join_members(members, "oof", cells[cells["split"] == "train"], classes)
    check_training_rows(train["specimen_id"], manifest, "fusion training rows")
    X = features([np.vstack(train[n]) for n in names])
    y = train["label"].to_numpy(str)
    stacker = fit_stacker(X, y, params)
    log.info("stacker fitted on %d training cells (%d features), classes %s", len(y), X.shape[1],
             stacker["fitted_classes"])  # fmt: skip

    oof = np.zeros((len(y), len(classes)))
    for k in sorted(train["fold"].unique()):
        rows = (train["fold"] == k).to_numpy()
        oof[rows] = stacker_proba(fit_stacker(X[~rows], y[~rows], params), X[rows], classes)
    oof_frame = predictions_frame(train["specimen_id"], y, [classes[i] for i in oof.argmax(axis=1)], oof, classes)
    oof_frame.insert(1, "fold", train["fold"].astype(int).to_numpy())
    write_csv_atomic(out / "oof.csv", oof_frame)

    test, excl_test = join_members(members, "predictions", cells[cells["split"] == "test"], classes)
    if not len(test):
        raise ValueError("no holdout cell was predicted by every member")
    proba = stacker_proba(stacker, features([np.vstack(test[n]) for n in names]), classes)
    pred = [classes[i] for i in proba.argmax(axis=1)]
    metrics = write_evaluation(out, test["specimen_id"], test["label"], pred, proba, classes,
                               title=f"fusion ({', '.join(names)}), holdout")  # fmt: skip
    excluded = pd.DataFrame(excl_train + excl_test, columns=["specimen_id", "split", "label", "reason"])
    write_csv_atomic(out / "excluded.csv", spreadsheet_safe(excluded.drop_duplicates("specimen_id")))  # users open it
    from sklearn.metrics import balanced_accuracy_score

    cv = float(balanced_accuracy_score(y, oof_frame["predicted"]))
    save_fusion(out / "model.json", members, classes, stacker, params, n_train=len(y), cv_balanced_accuracy=cv,
                floor=FEATURE_FLOOR, scheme=scheme)
    log.info("fusion: out-of-fold balanced accuracy %.4f; holdout %.4f (%d cells); %d cells excluded", cv,
             metrics["balanced_accuracy"], len(test), len(excluded))  # fmt: skip
    return metrics


def fit_fusion_files(names, models, oofs, predictions, manifest_csv, out_dir, classes, scheme: str = "study") -> dict:
    """Rule ``fusion``: ``fit_fusion`` over the members given as parallel lists of their name, model,
    out-of-fold and holdout prediction files; ``scheme``: the class scheme, in model.json."""
    members = [Member(*m) for m in zip(names, models, oofs, predictions)]
    return fit_fusion(members, manifest_csv, out_dir, classes, scheme=scheme)
