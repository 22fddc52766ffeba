"""sts.trust.uncertainty: class-stratified bootstrap intervals and paired differences, checked
against an independent resampling loop (per-class scores checked against scikit-learn)."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

from sts.trust.metrics import write_evaluation
from sts.trust.uncertainty import (
    BootstrapSettings,
    bootstrap_intervals,
    encode,
    paired_difference,
    scores,
    stratified_resamples,
)

CLASSES = ["Excitatory", "Pvalb", "Sst", "Vip/Lamp5"]


def fake_holdout(n=150, accuracy=0.7, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.choice(CLASSES, n, p=[0.4, 0.25, 0.2, 0.15])
    pred = np.where(rng.random(n) < accuracy, y, rng.choice(CLASSES, n))
    return y, pred


def reference_scores(y, pred):
    """Balanced accuracy and weighted F1 written out per class (checked against scikit-learn below)."""
    recalls, f1s, weights = [], [], []
    for c in CLASSES:
        tp, n_true, n_pred = np.sum((y == c) & (pred == c)), np.sum(y == c), np.sum(pred == c)
        if n_true:
            recalls.append(tp / n_true)
        f1s.append(2 * tp / (n_true + n_pred) if n_true + n_pred else 0.0)
        weights.append(n_true)
    return np.mean(recalls), np.average(f1s, weights=weights)


def reference_interval(y, pred, n_resamples, seed, confidence=0.95):
    """Written apart from sts.trust.uncertainty: a loop that resamples each class by hand."""
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(y == c) for c in np.unique(y)]
    values = []
    for _ in range(n_resamples):
        idx = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
        values.append(reference_scores(y[idx], pred[idx]))
    q = [(1 - confidence) / 2, (1 + confidence) / 2]
    return dict(zip(("balanced_accuracy", "weighted_f1"), np.quantile(np.array(values), q, axis=0).T))


def test_intervals_match_an_independent_bootstrap():
    y, pred = fake_holdout()
    ours = bootstrap_intervals(y, pred, CLASSES, BootstrapSettings(n_resamples=4000, seed=1))
    assert reference_scores(y, pred) == pytest.approx(
        (balanced_accuracy_score(y, pred), f1_score(y, pred, labels=CLASSES, average="weighted"))
    )
    ref = reference_interval(y, pred, 2000, seed=99)
    for metric in ("balanced_accuracy", "weighted_f1"):
        # Monte-Carlo error of a 2.5 % quantile here is ~0.003 per side; the bounds lie ~0.07 apart
        assert [ours[metric]["low"], ours[metric]["high"]] == pytest.approx(ref[metric], abs=0.015), metric
        assert ours[metric]["high"] - ours[metric]["low"] > 0.05
    assert ours["n_resamples"] == 4000 and ours["confidence"] == 0.95 and "stratified" in ours["method"]
    assert bootstrap_intervals(y, pred, CLASSES, BootstrapSettings(n_resamples=4000, seed=1)) == ours  # seeded


def test_point_scores_are_sklearns():
    y, pred = fake_holdout(n=40, accuracy=0.4, seed=5)
    y[y == "Vip/Lamp5"] = "Sst"
    pred[:3] = "Vip/Lamp5"  # predicted, absent from the truth: no recall, F1 weight 0 (as scikit-learn)
    got = scores(*encode(y, pred, CLASSES), len(CLASSES))
    f1 = f1_score(y, pred, labels=CLASSES, average="weighted", zero_division=0)
    assert got["balanced_accuracy"][0] == pytest.approx(balanced_accuracy_score(y, pred))
    assert got["weighted_f1"][0] == pytest.approx(f1)


def test_stratified_resamples_keep_class_counts():
    y, _ = fake_holdout(n=60)
    codes, _ = encode(y, y, CLASSES)
    idx = stratified_resamples(codes, 300, np.random.default_rng(0))
    assert idx.shape == (300, 60)
    assert (codes[idx] == codes[None, :]).all()  # each slot keeps its class, so every count is kept
    counts = np.stack([np.bincount(codes[row], minlength=4) for row in idx])
    assert (counts == np.bincount(codes, minlength=4)).all()
    assert len({tuple(row) for row in idx}) > 290 and any(len(set(row)) < 60 for row in idx)  # with replacement


def test_paired_difference_is_narrower_than_unpaired_on_correlated_predictions():
    y, pred_b = fake_holdout(n=150, accuracy=0.6, seed=2)
    rng = np.random.default_rng(3)
    wrong = np.flatnonzero(pred_b != y)
    pred_a = pred_b.copy()
    fix = rng.choice(wrong, size=len(wrong) // 3, replace=False)
    pred_a[fix] = y[fix]  # A = B with a third of B's errors fixed: strongly correlated
    settings = BootstrapSettings(n_resamples=2000, seed=0)
    paired = paired_difference(y, pred_a, pred_b, CLASSES, settings)
    ci_a, ci_b = (bootstrap_intervals(y, p, CLASSES, settings) for p in (pred_a, pred_b))
    for metric in ("balanced_accuracy", "weighted_f1"):
        d = paired[metric]
        score = balanced_accuracy_score if metric == "balanced_accuracy" else partial(f1_score, average="weighted")
        a, b = score(y, pred_a), score(y, pred_b)
        assert (d["a"], d["b"], d["difference"]) == pytest.approx((a, b, a - b))
        assert d["low"] <= d["difference"] <= d["high"] and d["low"] > 0  # A is better beyond the noise
        # unpaired: independent draws for each model, half-widths combined in quadrature
        unpaired = np.hypot(ci_a[metric]["high"] - ci_a[metric]["low"], ci_b[metric]["high"] - ci_b[metric]["low"])
        assert d["high"] - d["low"] < 0.6 * unpaired, metric
    assert paired["n_cells"] == 150
    same = paired_difference(y, pred_b, pred_b, CLASSES, settings)["balanced_accuracy"]
    assert same["low"] == same["high"] == same["difference"] == 0.0


def test_metrics_json_carries_the_intervals(tmp_path):
    y, pred = fake_holdout(n=31)
    proba = np.eye(4)[[CLASSES.index(p) for p in pred]]
    written = write_evaluation(tmp_path, [f"c{i}" for i in range(31)], y, pred, proba, CLASSES)
    stored = json.loads((tmp_path / "metrics.json").read_text())
    assert stored == written
    ci = stored["bootstrap"]
    assert ci["n_resamples"] >= 1000 and ci["confidence"] == 0.95 and isinstance(ci["seed"], int)
    for metric in ("balanced_accuracy", "weighted_f1"):
        assert ci[metric]["low"] <= stored[metric] <= ci[metric]["high"]
        assert ci[metric] == pytest.approx(bootstrap_intervals(y, pred, CLASSES)[metric])
    with pytest.raises(ValueError, match="confidence"):
        BootstrapSettings(confidence=95)
