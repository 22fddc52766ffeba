"""Bootstrap uncertainty of holdout scores (balanced accuracy, weighted F1; and, for the baseline's
benchmark, ``scores_with_intervals``: accuracy, balanced accuracy, macro-F1, per-class recall).

Method: class-stratified bootstrap with percentile intervals. Each of ``n_resamples``
resamples draws, within every true class, as many holdout cells as that class has, with
replacement; so every resample keeps the holdout's class counts (the support weights of the
weighted F1 and the set of classes averaged by the balanced accuracy never change). A
score's ``confidence`` interval is the pair of (1 - confidence)/2 and (1 + confidence)/2
quantiles of its resampled values (numpy's linear interpolation). The draws come from
``numpy.random.default_rng(seed)``: the same cells and seed give the same interval.

``paired_difference`` scores two models on the *same* resampled cells and takes the
percentile interval of their difference; because both models see the same hard and easy
cells, it is narrower than combining the two models' separate intervals when their errors
are correlated. It takes any two models' per-cell predictions (e.g. best CNN vs LightGBM,
or a fusion model vs the best single model).

The intervals describe the holdout's sampling variability only (which cells were held
out), not that of training (another seed or training set). With a class of a single cell,
that cell is drawn every time: its contribution looks certain, so the interval is too narrow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

METRICS = ("balanced_accuracy", "weighted_f1")
METHOD = "class-stratified bootstrap of the holdout cells, percentile interval"
_CHUNK_CELLS = 2_000_000  # resampled cells scored at once: bounds memory on large holdouts


@dataclass(frozen=True)
class BootstrapSettings:
    """Resamples, confidence level and seed of every bootstrap interval."""

    n_resamples: int = 2000
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self):
        if self.n_resamples < 1:
            raise ValueError(f"n_resamples must be positive, got {self.n_resamples}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must lie in (0, 1), got {self.confidence}")

    def describe(self) -> dict:
        """The settings and method, stored beside the intervals."""
        return {"method": METHOD, **asdict(self)}


def encode(y_true: Sequence, y_pred: Sequence, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Labels as integer codes in ``classes`` order (both arrays of shape (n,))."""
    index = {str(c): i for i, c in enumerate(classes)}
    try:
        true_codes = np.array([index[str(v)] for v in y_true], dtype=np.int64)
        return true_codes, np.array([index[str(v)] for v in y_pred], dtype=np.int64)
    except KeyError as err:
        raise ValueError(f"label {err.args[0]!r} not among classes {list(classes)}") from None


def stratified_resamples(true_codes: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of shape (n_resamples, n): in every row, the slots of class c's cells hold
    cells of class c drawn with replacement, so each row keeps every class's count."""
    true_codes = np.asarray(true_codes)
    out = np.empty((n_resamples, len(true_codes)), dtype=np.int64)
    for c in np.unique(true_codes):
        members = np.flatnonzero(true_codes == c)
        out[:, members] = members[rng.integers(0, len(members), size=(n_resamples, len(members)))]
    return out


def scores(true_codes: np.ndarray, pred_codes: np.ndarray, n_classes: int, idx: np.ndarray | None = None) -> dict:
    """Balanced accuracy and weighted F1 of each row of ``idx`` (cells of one resample), as
    scikit-learn computes them (``balanced_accuracy_score``; ``f1_score(average='weighted',
    zero_division=0)``): arrays of shape (n_rows,); and ``accuracy``, ``macro_f1`` (``f1_score(
    average='macro', labels=all classes, zero_division=0)``) and ``recall`` (n_rows, n_classes;
    ``recall_score(average=None, zero_division=0)``). ``idx=None`` scores the cells as given."""
    true_codes, pred_codes = np.asarray(true_codes), np.asarray(pred_codes)
    if idx is None:
        idx = np.arange(len(true_codes))[None, :]
    out = {m: np.empty(len(idx)) for m in (*METRICS, "accuracy", "macro_f1")}
    out["recall"] = np.empty((len(idx), n_classes))
    k = n_classes
    step = max(1, _CHUNK_CELLS // max(1, idx.shape[1]))
    for start in range(0, len(idx), step):
        block = idx[start : start + step]
        rows = np.arange(len(block))[:, None] * (k * k)
        cm = np.bincount((rows + true_codes[block] * k + pred_codes[block]).ravel(), minlength=len(block) * k * k)
        cm = cm.reshape(len(block), k, k).astype(float)
        tp, support, predicted = np.diagonal(cm, axis1=1, axis2=2), cm.sum(axis=2), cm.sum(axis=1)
        present = support > 0  # balanced accuracy averages the recall of the classes present
        recall = np.divide(tp, support, out=np.zeros_like(tp), where=present)
        out["balanced_accuracy"][start : start + step] = recall.sum(axis=1) / present.sum(axis=1)
        denom = support + predicted  # 2 tp + fp + fn
        f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
        out["weighted_f1"][start : start + step] = (support * f1).sum(axis=1) / support.sum(axis=1)
        out["accuracy"][start : start + step] = tp.sum(axis=1) / support.sum(axis=1)
        out["macro_f1"][start : start + step] = f1.mean(axis=1)
        out["recall"][start : start + step] = recall
    return out


def _interval(values: np.ndarray, confidence: float) -> dict:
    alpha = (1 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return {"low": float(low), "high": float(high), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}


def bootstrap_intervals(
    y_true: Sequence, y_pred: Sequence, classes: Sequence[str], settings: BootstrapSettings = BootstrapSettings()
) -> dict:
    """Intervals of one model's holdout scores: the settings and method, then per metric
    ``{"low", "high", "std"}`` (std: standard deviation of the resampled scores)."""
    true_codes, pred_codes = encode(y_true, y_pred, classes)
    if not len(true_codes):
        raise ValueError("no holdout cells to resample")
    idx = stratified_resamples(true_codes, settings.n_resamples, np.random.default_rng(settings.seed))
    resampled = scores(true_codes, pred_codes, len(classes), idx)
    return {**settings.describe(), **{m: _interval(resampled[m], settings.confidence) for m in METRICS}}


def paired_difference(
    y_true: Sequence, pred_a: Sequence, pred_b: Sequence, classes: Sequence[str],
    settings: BootstrapSettings = BootstrapSettings(),
) -> dict:  # fmt: skip
    """Model A minus model B on the same cells: for each metric, the point estimates
    ``a``, ``b``, ``difference`` (a - b) and the paired bootstrap interval of the difference
    (``low``, ``high``, ``std``), both models scored on the same resampled cells.

    ``y_true``, ``pred_a`` and ``pred_b`` are aligned per cell, shape (n,).
    """
    true_codes, codes_a = encode(y_true, pred_a, classes)
    _, codes_b = encode(y_true, pred_b, classes)
    if not len(true_codes):
        raise ValueError("no cells in common to compare")
    k = len(classes)
    point_a, point_b = scores(true_codes, codes_a, k), scores(true_codes, codes_b, k)
    idx = stratified_resamples(true_codes, settings.n_resamples, np.random.default_rng(settings.seed))
    res_a, res_b = scores(true_codes, codes_a, k, idx), scores(true_codes, codes_b, k, idx)
    out = {**settings.describe(), "n_cells": int(len(true_codes))}
    for m in METRICS:
        a, b = float(point_a[m][0]), float(point_b[m][0])
        out[m] = {"a": a, "b": b, "difference": a - b, **_interval(res_a[m] - res_b[m], settings.confidence)}
    return out


SCORES = ("accuracy", "balanced_accuracy", "macro_f1")  # with per-class recall: ``scores_with_intervals``
SCORED_METHOD = "class-stratified bootstrap of the scored cells, percentile interval"  # holdout or out-of-fold


def sklearn_scores(true_codes: np.ndarray, pred_codes: np.ndarray, n_classes: int) -> dict:
    """Accuracy, balanced accuracy, macro-F1 and per-class recall (an array, classes in code order)
    of integer-coded labels, by scikit-learn."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, recall_score

    codes = list(range(n_classes))
    return {
        "accuracy": accuracy_score(true_codes, pred_codes),
        "balanced_accuracy": balanced_accuracy_score(true_codes, pred_codes),
        "macro_f1": f1_score(true_codes, pred_codes, labels=codes, average="macro", zero_division=0),
        "recall": recall_score(true_codes, pred_codes, labels=codes, average=None, zero_division=0),
    }


def scores_with_intervals(
    y_true: Sequence, y_pred: Sequence, classes: Sequence[str], settings: BootstrapSettings = BootstrapSettings()
) -> dict:
    """Accuracy, balanced accuracy, macro-F1 and each class's recall of one set of predictions,
    each ``{"value", "low", "high", "std"}``: scikit-learn's score of the cells as given, and the
    percentile interval of its values over the class-stratified resamples of the cells (module
    docstring; scored at once by ``scores``, which computes scikit-learn's values); with the
    settings, method and ``n_cells``."""
    true_codes, pred_codes = encode(y_true, y_pred, classes)
    if not len(true_codes):
        raise ValueError("no cells to resample")
    k = len(classes)
    idx = stratified_resamples(true_codes, settings.n_resamples, np.random.default_rng(settings.seed))
    point, resampled = sklearn_scores(true_codes, pred_codes, k), scores(true_codes, pred_codes, k, idx)
    out = {**settings.describe(), "method": SCORED_METHOD, "n_cells": int(len(true_codes))}
    for m in SCORES:
        out[m] = {"value": float(point[m]), **_interval(resampled[m], settings.confidence)}
    out["recall"] = {str(c): {"value": float(point["recall"][j]), **_interval(resampled["recall"][:, j],
                                                                               settings.confidence)}
                     for j, c in enumerate(classes)}  # fmt: skip
    return out
