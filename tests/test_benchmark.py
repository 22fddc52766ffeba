"""The baseline's benchmark (issue 29): scores with bootstrap intervals checked against scikit-learn and a
per-class reference written out here, and `sts baseline-published --scheme inhibitory --cv` end to end
on the real published tables (a small search: the full benchmark is a command, docs/baseline.md)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import REPO
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, recall_score

from sts.trust.uncertainty import BootstrapSettings, encode, scores, scores_with_intervals, stratified_resamples

CLASSES = ["Lamp5", "Pvalb", "Sst", "Vip"]


def holdout(n=300, accuracy=0.8, seed=1):
    rng = np.random.default_rng(seed)
    y = rng.choice(CLASSES, n, p=[0.15, 0.2, 0.45, 0.2])
    return y, np.where(rng.random(n) < accuracy, y, rng.choice(CLASSES, n))


def reference(y, pred) -> dict:
    """Accuracy, macro-F1 and recall per class, written out (no scikit-learn)."""
    recall, f1 = [], []
    for c in CLASSES:
        tp, n_true, n_pred = np.sum((y == c) & (pred == c)), np.sum(y == c), np.sum(pred == c)
        recall.append(tp / n_true if n_true else 0.0)
        f1.append(2 * tp / (n_true + n_pred) if n_true + n_pred else 0.0)
    return {"accuracy": np.mean(y == pred), "macro_f1": np.mean(f1), "recall": recall}


def test_scores_with_intervals_against_sklearn_and_a_reference():
    y, pred = holdout()
    settings = BootstrapSettings(n_resamples=300, seed=3)
    got = scores_with_intervals(y, pred, CLASSES, settings)
    assert got["n_cells"] == 300 and got["n_resamples"] == 300 and got["seed"] == 3
    assert got["accuracy"]["value"] == pytest.approx(accuracy_score(y, pred))
    assert got["balanced_accuracy"]["value"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert got["macro_f1"]["value"] == pytest.approx(f1_score(y, pred, average="macro"))
    recall = recall_score(y, pred, labels=CLASSES, average=None)
    assert [got["recall"][c]["value"] for c in CLASSES] == pytest.approx(list(recall))
    # The intervals: quantiles of the same resamples scored by the written-out reference and, for the
    # balanced accuracy, by scikit-learn.
    codes, pred_codes = encode(y, pred, CLASSES)
    idx = stratified_resamples(codes, 300, np.random.default_rng(3))
    ref = [reference(y[i], pred[i]) for i in idx]
    for m in ("accuracy", "macro_f1"):
        low, high = np.quantile([r[m] for r in ref], [0.025, 0.975])
        assert (got[m]["low"], got[m]["high"]) == pytest.approx((low, high))
    for j, c in enumerate(CLASSES):
        low, high = np.quantile([r["recall"][j] for r in ref], [0.025, 0.975])
        assert (got["recall"][c]["low"], got["recall"][c]["high"]) == pytest.approx((low, high))
    ba = [balanced_accuracy_score(y[i], pred[i]) for i in idx]
    assert (got["balanced_accuracy"]["low"], got["balanced_accuracy"]["high"]) == pytest.approx(
        tuple(np.quantile(ba, [0.025, 0.975])))
    # resample by resample, the vectorised scores are scikit-learn's (a class missing from a
    # resample's predictions included: zero_division 0)
    fast = scores(codes, pred_codes, len(CLASSES), idx[:50])
    for row, i in enumerate(idx[:50]):
        assert fast["accuracy"][row] == pytest.approx(accuracy_score(y[i], pred[i]))
        assert fast["macro_f1"][row] == pytest.approx(f1_score(y[i], pred[i], labels=CLASSES, average="macro",
                                                               zero_division=0))  # fmt: skip
        assert fast["recall"][row] == pytest.approx(recall_score(y[i], pred[i], labels=CLASSES, average=None,
                                                                 zero_division=0))  # fmt: skip
    few = scores(*encode(["Lamp5", "Sst", "Sst"], ["Sst", "Sst", "Sst"], CLASSES), len(CLASSES))
    assert few["macro_f1"][0] == pytest.approx(f1_score(["Lamp5", "Sst", "Sst"], ["Sst"] * 3, labels=CLASSES,
                                                        average="macro", zero_division=0))  # fmt: skip
    assert list(few["recall"][0]) == [0.0, 0.0, 1.0, 0.0]
    for m in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert got[m]["low"] <= got[m]["value"] <= got[m]["high"] and got[m]["high"] - got[m]["low"] > 0.01
    perfect = scores_with_intervals(y, y, CLASSES, settings)
    assert perfect["macro_f1"] == {"value": 1.0, "low": 1.0, "high": 1.0, "std": 0.0}
    with pytest.raises(ValueError, match="not among classes"):
        scores_with_intervals(["Lamp5", "Sncg"], ["Lamp5", "Lamp5"], CLASSES)


@pytest.mark.slow
def test_inhibitory_benchmark_end_to_end(tmp_path):
    """A 1-trial search (2 inner folds) and a nested 2-fold CV: the outputs, not the figures."""
    from sts.cli import main

    out = tmp_path / "inhibitory"
    args = ["baseline-published", str(REPO / "resources" / "paper"), str(out), "--scheme", "inhibitory",
            "--trials", "1", "--folds", "2", "--cv", "2", "--top-k", "2"]  # fmt: skip
    assert main(args) == 0
    bench = json.loads((out / "benchmark.json").read_text())
    assert bench["scheme"] == "inhibitory" and bench["classes"] == CLASSES and bench["n_features"] == 16
    cv_name, holdout_name = list(bench["evaluations"])
    assert cv_name == "2-fold CV (nested)" and holdout_name.startswith("holdout")
    cv = pd.read_csv(out / "cv_predictions.csv", dtype={"label": str, "predicted": str})
    preds = pd.read_csv(out / "predictions.csv")
    assert bench["evaluations"][cv_name]["n_cells"] == len(cv) == len(preds) + sum(bench["counts"]["train"].values())
    assert sorted(cv["fold"].unique()) == [0, 1]
    got = bench["evaluations"][cv_name]
    assert got["accuracy"]["value"] == pytest.approx(accuracy_score(cv["label"], cv["predicted"]))
    assert got["macro_f1"]["value"] == pytest.approx(f1_score(cv["label"], cv["predicted"], average="macro"))
    assert got["accuracy"]["value"] > 0.8  # four well-separated subclasses, even with LightGBM's defaults
    table = (out / "benchmark.md").read_text()
    assert "| 2-fold CV (nested) |" in table and "recall Vip" in table and "scheme inhibitory" in table.lower()
    assert json.loads((out / "features.json").read_text())["label_scheme"] == "inhibitory"
    excluded = pd.read_csv(out / "excluded.csv")
    assert (excluded["reason"] != "").all() and excluded["dataset"].eq("Clamp").any()
