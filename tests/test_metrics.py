"""sts.trust.metrics: scores, files written, and their agreement with scikit-learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import check_against_sklearn
from sts.trust.metrics import evaluate, write_evaluation

CLASSES = ["Excitatory", "Pvalb", "Sst", "Vip/Lamp5"]


@pytest.fixture
def fake_predictions():
    rng = np.random.default_rng(3)
    n = 200
    y = rng.choice(CLASSES, n, p=[0.15, 0.2, 0.35, 0.3])
    logits = rng.normal(size=(n, 4)) + 2.0 * (np.asarray(CLASSES)[None, :] == y[:, None])
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pred = np.asarray(CLASSES)[proba.argmax(axis=1)]
    return np.arange(1000, 1000 + n), y, pred, proba


def test_write_evaluation_matches_sklearn(tmp_path, fake_predictions):
    ids, y, pred, proba = fake_predictions
    written = write_evaluation(tmp_path, ids, y, pred, proba, CLASSES)
    metrics = check_against_sklearn(tmp_path)
    assert written == metrics
    assert set(metrics) >= {"balanced_accuracy", "weighted_f1", "accuracy", "per_class", "confusion_matrix"}
    assert "p_Vip/Lamp5" in pd.read_csv(tmp_path / "predictions.csv").columns
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_evaluate_checks_inputs(fake_predictions):
    ids, y, pred, proba = fake_predictions
    with pytest.raises(ValueError, match="shapes"):
        evaluate(y, pred, proba[:, :3], CLASSES, ids)
    with pytest.raises(ValueError, match="duplicate specimen"):
        evaluate(y, pred, proba, CLASSES, np.zeros(len(y), int))
    with pytest.raises(ValueError, match="not among classes"):
        evaluate(y, pred, proba, ["a", "b", "c", "d"], ids)


def test_absent_class_scores_zero(tmp_path):
    y = ["Pvalb", "Sst", "Sst"]
    pred = ["Pvalb", "Sst", "Pvalb"]
    proba = np.array([[0, 0.9, 0.1, 0], [0, 0.2, 0.8, 0], [0, 0.6, 0.4, 0]])
    metrics = write_evaluation(tmp_path, [1, 2, 3], y, pred, proba, CLASSES)
    assert metrics["per_class"]["Excitatory"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert metrics["confusion_matrix"][2] == [0, 1, 1, 0]
    check_against_sklearn(tmp_path)
