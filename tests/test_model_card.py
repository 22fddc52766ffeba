"""Model cards (``sts.report.model_card``) on small hand-made inputs: counts, metrics, OOD, calibration."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

CLASSES = ["Pvalb", "Sst"]


@pytest.fixture
def inputs(tmp_path):
    from sts.trust.metrics import evaluate

    rows = [(f"c{i}", "clamp" if i % 2 else "seq", cls, "ok", "", split)
            for i, (cls, split) in enumerate([("Pvalb", "train")] * 3 + [("Sst", "train")] * 2
                                             + [("Pvalb", "test"), ("Sst", "test"), ("Sst", "test")])]  # fmt: skip
    rows += [("x1", "seq", "Sst", "excluded", "no sweep at rheobase+40 pA (nearest 30 pA)", ""),
             ("x2", "seq", "Pvalb", "excluded", "no sweep at rheobase+40 pA (nearest 55.5 pA)", ""),
             ("x3", "clamp", "Pvalb", "excluded", "unreadable NWB file", "")]  # fmt: skip
    manifest = tmp_path / "manifest.csv"
    columns = ["specimen_id", "dataset", "label", "status", "reason", "split"]
    pd.DataFrame(rows, columns=columns).to_csv(manifest, index=False)
    truth, pred = ["Pvalb", "Sst", "Sst"], ["Pvalb", "Sst", "Pvalb"]
    metrics = evaluate(truth, pred, np.eye(2)[[0, 1, 0]], CLASSES)
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    return tmp_path, manifest, metrics


def test_lightgbm_card_counts_metrics_and_ood(inputs):
    from sts.trust.ood import KnnNovelty
    from sts.report.model_card import build_card, to_markdown, write_card

    tmp_path, manifest, metrics = inputs
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 2))
    meta = {"features": ["f1", "f2"], "classes": CLASSES, "n_train": 5, "seed": 0, "best_params": {"num_leaves": 7},
            "feature_params": {"dvdt_cutoff_mv_ms": 20.0}, "imputation": "none", "ood": KnnNovelty.fit(X).to_dict()}
    (tmp_path / "model.json").write_text(json.dumps(meta))
    holdout = np.vstack([X[:2], [[50.0, 50.0]]])  # the third holdout cell lies far from every training cell
    pd.DataFrame({"specimen_id": ["c5", "c6", "c7"], "f1": holdout[:, 0], "f2": holdout[:, 1]}).to_csv(
        tmp_path / "features.csv", index=False)
    card = build_card("lightgbm", "lightgbm", tmp_path / "model.json", tmp_path / "features.csv", manifest=manifest,
                      metrics=tmp_path / "metrics.json", confusion_png=None, cohort="synthetic", ood_holdout=None)
    md = to_markdown(card)
    assert "Cohort `synthetic`: 11 cells, 8 usable (clamp: 4, seq: 4), 3 excluded." in md
    assert "| Pvalb | 3 | 1 |" in md and "| Sst | 2 | 2 |" in md and "| total | 5 | 3 |" in md
    assert "| no sweep at rheobase+N pA (nearest N pA) | 2 |" in md and "| unreadable NWB file | 1 |" in md
    ci = metrics["bootstrap"]["balanced_accuracy"]
    assert f"| balanced accuracy | {metrics['balanced_accuracy']:.3f} | {ci['low']:.3f} | {ci['high']:.3f} |" in md
    assert "| Sst | 1 | 1 |" in md  # confusion matrix row: one Sst cell called Pvalb, one right
    assert "Holdout cells flagged out of distribution: 1 of 3" in md
    assert "dvdt_cutoff_mv_ms=20" in md and "Not calibrated" in md and "synthetic demo" in md
    assert "class scheme: study" in md  # saved before class schemes: read as the study's
    write_card(card, tmp_path / "card.md", tmp_path / "card.html")
    assert (tmp_path / "card.md").read_text() == md and "<table" in (tmp_path / "card.html").read_text()


def test_cnn_card_reads_model_pt_and_calibration(inputs):
    import torch

    from sts.trust.ood import EmbeddingNovelty
    from sts.report.model_card import build_card, to_markdown

    tmp_path, manifest, _ = inputs
    ood = EmbeddingNovelty.fit(np.random.default_rng(0).random((5, 8)))
    torch.save({"arch": "resnet18", "classes": CLASSES, "label_scheme": "inhibitory", "input_size": [32, 32], "image_dtype": "float16",
                "normalisation": {"log": True}, "cv_balanced_accuracy": 0.61, "ood": ood.to_state(),
                "train_params": {"learning_rate": 0.001, "epochs": 4, "weights": "none"},
                "preparation": {"sweeps": {"window_s": 1.2}, "scalogram": {"n_freqs": 180}}}, tmp_path / "model.pt")
    pd.DataFrame({"specimen_id": ["c5", "c6", "c7"], "in_distribution": [True, False, False]}).to_csv(
        tmp_path / "ood.csv", index=False)
    (tmp_path / "calibration.json").write_text(json.dumps({"method": "temperature", "temperature": 1.5,
                                                           "holdout": {"ece_before": 0.2, "ece_after": 0.05},
                                                           "reliability": {"before": [0.1] * 15}}))
    card = build_card("cnn", "resnet18", tmp_path / "model.pt", manifest=manifest, metrics=tmp_path / "metrics.json",
                      confusion_png="results/models/resnet18/confusion_matrix.png", cohort="allen",
                      ood_holdout=tmp_path / "ood.csv", calibration=tmp_path / "calibration.json")
    md = to_markdown(card)
    assert "window_s=1.2" in md and "n_freqs=180" in md and "input_size=32x32" in md and "epochs: 4" in md
    assert f"score <= {ood.threshold:.4g}" in md and "the 5 training cells'" in md
    assert "Holdout cells flagged out of distribution: 2 of 3" in md
    assert "temperature: 1.5" in md and "holdout.ece_after: 0.05" in md and "Not calibrated" not in md
    assert "class scheme: inhibitory" in md
    assert "reliability" not in md  # the bins are the reliability figure's
    assert "synthetic demo" not in md and "`results/models/resnet18/confusion_matrix.png`" in md
    assert "expect more holdout cells above it" in md  # a leave-one-out threshold is too tight
    rng = np.random.default_rng(1)  # a model trained since issue 29: the threshold from out-of-fold scores
    oof = EmbeddingNovelty.fit(rng.random((5, 8)), folds=[(rng.random((4, 8)), rng.random((3, 8)))] * 2)
    meta = torch.load(tmp_path / "model.pt", weights_only=True)
    torch.save({**meta, "ood": oof.to_state()}, tmp_path / "model.pt")
    md = to_markdown(build_card("cnn", "resnet18", tmp_path / "model.pt", manifest=manifest,
                                metrics=tmp_path / "metrics.json"))  # fmt: skip
    assert f"score <= {oof.threshold:.4g}" in md and "the 6 training cells' out-of-fold scores" in md
    assert "expect more holdout cells above it" not in md


def test_fusion_card(inputs):
    from sts.report.model_card import build_card, to_markdown

    tmp_path, manifest, _ = inputs
    (tmp_path / "fusion.json").write_text(json.dumps({
        "classes": CLASSES, "members": [{"name": "resnet18", "kind": "cnn", "path": "../models/resnet18/model.pt"},
                                        {"name": "lightgbm", "kind": "lightgbm", "path": "../baseline/model/model.json"}],
        "stacker": {"kind": "multinomial logistic regression", "C": 1.0, "coef": [[0.1]]}, "n_train": 5,
        "features": {"kind": "log_probability"}, "params": {"c_grid": [0.1, 1]}, "cv_balanced_accuracy": 0.7,
        "fitted_on": "out-of-fold predictions"}))  # fmt: skip
    md = to_markdown(build_card("fusion", "fusion", tmp_path / "fusion.json", manifest=manifest, cohort="synthetic",
                                metrics=tmp_path / "metrics.json", ood_holdout=None))
    assert "members: resnet18 (cnn, ../models/resnet18/model.pt), lightgbm (lightgbm" in md
    assert "stacker: kind=multinomial logistic regression, C=1" in md and "coef" not in md
    assert "| total | 5 | 3 |" in md and "No out-of-distribution detector" in md and "Not calibrated" in md
