"""Temperature scaling: recovers a known temperature, lowers ECE; scores against independent
computations; holdout cells refused as fit rows; the sidecar is tied to its model file."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sts.trust import calibration as cal


def overconfident(n=4000, k=4, t_true=2.5, seed=0):
    """Labels drawn from softmax(z); the 'model' reports softmax(z * t_true): over-confident by t_true."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, size=(n, k))
    p_true = cal.softmax(z)
    y = np.array([rng.choice(k, p=p) for p in p_true])
    return cal.softmax(z * t_true), y


def ece_loop(proba, y, n_bins=15):
    """ECE written out bin by bin (right-closed bins, as in Guo et al.)."""
    conf, pred = proba.max(axis=1), proba.argmax(axis=1)
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        sel = (conf > lo) & (conf <= hi) if b else (conf >= lo) & (conf <= hi)
        if sel.any():
            total += sel.sum() / len(y) * abs((pred[sel] == y[sel]).mean() - conf[sel].mean())
    return total


def test_temperature_recovers_a_known_temperature_and_lowers_ece():
    proba, y = overconfident()
    t = cal.fit_temperature(cal.logits(proba), y)
    assert t == pytest.approx(2.5, rel=0.08)
    after = cal.apply_temperature(proba, t)
    before_s, after_s = cal.probabilistic_scores(proba, y), cal.probabilistic_scores(after, y)
    print(f"T {t:.3f}; ECE {before_s['ece']:.4f} -> {after_s['ece']:.4f}")
    assert after_s["ece"] < 0.5 * before_s["ece"]
    assert after_s["log_loss"] < before_s["log_loss"] and after_s["brier"] < before_s["brier"]
    assert (after.argmax(axis=1) == proba.argmax(axis=1)).all()  # the predicted class never changes


def test_scores_match_independent_computations():
    from sklearn.metrics import log_loss

    proba, y = overconfident(500, k=3, seed=1)
    assert cal.ece(proba, y) == pytest.approx(ece_loop(proba, y), abs=1e-12)
    onehot = np.eye(3)[y]
    assert cal.brier(proba, y) == pytest.approx(((proba - onehot) ** 2).sum(axis=1).mean(), abs=1e-12)
    assert cal.probabilistic_scores(proba, y)["log_loss"] == pytest.approx(
        -np.log(proba[np.arange(len(y)), y]).mean(), rel=1e-9)
    assert cal.probabilistic_scores(proba, y)["log_loss"] == pytest.approx(log_loss(y, proba))
    # NLL at T minimum: derivative ~ 0 (independent check of the optimiser)
    z = cal.logits(proba)
    t = cal.fit_temperature(z, y)
    assert cal.nll(z, y, t) <= min(cal.nll(z, y, t * 1.01), cal.nll(z, y, t / 1.01))


def frames(n_fit=60, n_hold=20, seed=2):
    classes = ["A", "B", "C"]
    proba, y = overconfident(n_fit + n_hold, k=3, seed=seed)
    table = pd.DataFrame({"specimen_id": [f"c{i}" for i in range(len(y))], "label": [classes[i] for i in y]})
    for j, c in enumerate(classes):
        table[f"p_{c}"] = proba[:, j]
    manifest = table[["specimen_id"]].assign(split=["train"] * n_fit + ["test"] * n_hold, status="ok")
    return table.iloc[:n_fit].reset_index(drop=True), table.iloc[n_fit:].reset_index(drop=True), manifest


def test_no_holdout_cell_among_the_fit_rows():
    oof, holdout, manifest = frames()
    result, after = cal.calibrate(oof, holdout, manifest)
    assert result.n_fit == len(oof) and after.shape == (len(holdout), 3)
    leaked = pd.concat([oof, holdout.iloc[[0]]], ignore_index=True)
    with pytest.raises(ValueError, match="not training cells"):
        cal.calibrate(leaked, holdout, manifest)


def test_sidecar_is_tied_to_its_model_file(tmp_path):
    oof, holdout, manifest = frames()
    result, _ = cal.calibrate(oof, holdout, manifest)
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights v1")
    cal.write_calibration(tmp_path / "calibration.json", result, model)
    assert cal.load_temperature(model, ["A", "B", "C"]) == pytest.approx(result.temperature)
    doc = json.loads((tmp_path / "calibration.json").read_text())
    assert set(doc["holdout"]) == {"before", "after"} and set(doc["holdout"]["after"]) == {"ece", "brier", "log_loss"}
    with pytest.raises(ValueError, match="classes"):
        cal.load_temperature(model, ["A", "B"])
    model.write_bytes(b"weights v2")  # refit model, stale calibration
    with pytest.raises(ValueError, match="sha256"):
        cal.load_temperature(model, ["A", "B", "C"])
    assert cal.load_temperature(tmp_path / "other" / "model.pt", ["A"]) is None


def test_constant_predictions_keep_temperature_one():
    """A model that gives every cell the same probabilities has a flat likelihood in T: T stays 1."""
    proba = np.tile([0.25, 0.25, 0.25, 0.25], (30, 1))
    y = np.arange(30) % 4
    assert cal.fit_temperature(cal.logits(proba), y) == 1.0
