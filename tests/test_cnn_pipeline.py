"""Tiny end-to-end deep-learning stage through the command line (`sts pack | tune | train | evaluate |
explain`, the functions of sts.cnn.stages that the rules run): tuning (killed, then resumed), the best
trial's fold embeddings, final fit with its out-of-fold OOD threshold, holdout evaluation checked
against scikit-learn, saliency maps on the scalogram's shape."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from cnn_data import CLASSES, N_FREQS, N_TIMES, write_cohort
from sts.cli import main
from sts.cnn.pack import load_packed
from sts.cnn.study import data_key
from sts.cnn.tune import TuneSettings, finished, open_study, tune

SPACE = {"batch_size": [8], "learning_rate": {"low": 5e-4, "high": 3e-3}, "patience": {"low": 2, "high": 3}}
SETTINGS = TuneSettings(arch="resnet18", n_trials=2, max_epochs=2, seed=0, space=SPACE, pruner_startup_trials=1,
                        pruner_warmup_epochs=0, device="cpu")  # fmt: skip
PREPARATION = {"sweeps": {"window_s": 1.2, "fs_hz": 4000, "plus_pa": 40}, "scalogram": {"wavelet": "mexh"}}


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    root = tmp_path_factory.mktemp("dlstage")
    manifest, scal_dir = write_cohort(root, per_class=8)
    assert main(["pack", str(manifest), str(scal_dir), str(root / "packed.h5"), "--size", "32", "--classes",
                 *CLASSES]) == 0  # fmt: skip
    return root


@pytest.fixture(scope="module")
def tuned(stage):
    """`sts tune` killed (SIGKILL) after its first trial, then resumed in-process."""
    out = stage / "tuning"
    cmd = [sys.executable, "-m", "sts.cli", "tune", str(stage / "packed.h5"), str(out), "--arch", "resnet18",
           "--trials", "2", "--max-epochs", "2", "--space", json.dumps(SPACE), "--device", "cpu", "--threads", "1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "trial 0 finished" in line:
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "".join(lines[-20:])
    cli_settings = TuneSettings(**{**SETTINGS.__dict__, "pruner_startup_trials": 5, "pruner_warmup_epochs": 5})
    before = open_study(out, cli_settings, data_key(load_packed(stage / "packed.h5")))
    assert len(finished(before)) == 1
    first = before.trials[0].value
    best = tune(load_packed(stage / "packed.h5"), out, cli_settings, threads=1)
    return out, best, first, cli_settings


def test_tuning_resumes_and_writes_its_outputs(tuned):
    out, best, first, settings = tuned
    study = open_study(out, settings, data_key(load_packed(out.parent / "packed.h5")))
    done = finished(study)
    assert len(done) == 2 and study.trials[0].value == first  # the killed run's trial was kept
    trials = pd.read_csv(out / "trials.csv")  # a trial it was killed in is failed (and retried)
    assert set(trials["state"]) <= {"COMPLETE", "PRUNED", "FAIL"} and (trials["state"] != "FAIL").sum() == 2
    assert {"param_batch_size", "param_learning_rate", "epochs_run"} <= set(trials.columns)
    search = json.loads((out / "search.json").read_text())
    assert search["complete"] + search["pruned"] == 2 and search["epochs_saved_by_pruning"] >= 0
    assert best == json.loads((out / "best_params.json").read_text())
    assert set(best["params"]) == set(settings.full_space)
    assert 5e-4 <= best["params"]["learning_rate"] <= 3e-3 and best["params"]["batch_size"] == 8
    assert len(best["fold_scores"]) == 3 and best["cv_balanced_accuracy"] == pytest.approx(np.mean(best["fold_scores"]))
    assert 1 <= best["final_epochs"] <= 2


def test_a_second_call_with_the_same_settings_runs_no_trial(tuned, stage):
    out, _, _, settings = tuned
    key = data_key(load_packed(stage / "packed.h5"))
    n = len(open_study(out, settings, key).trials)
    tune(load_packed(stage / "packed.h5"), out, settings, threads=1)
    assert len(open_study(out, settings, key).trials) == n


@pytest.fixture(scope="module")
def model_dir(tuned, stage):
    out = stage / "model"
    assert main(["train", str(stage / "packed.h5"), str(tuned[0] / "best_params.json"), str(out), "--arch", "resnet18",
                 "--device", "cpu", "--threads", "1", "--preparation", json.dumps(PREPARATION)]) == 0  # fmt: skip
    # no --ood-folds: the search's ood_folds.npz beside best_params.json (test_ood_threshold_is_the_quantile_of_the_out_of_fold_scores)
    return out


def test_train_refuses_another_architectures_parameters(tuned, stage, tmp_path):
    with pytest.raises(ValueError, match="best parameters of 'resnet18' given to train 'mobilenet_v2'"):
        main(["train", str(stage / "packed.h5"), str(tuned[0] / "best_params.json"), str(tmp_path), "--arch",
              "mobilenet_v2", "--device", "cpu"])  # fmt: skip
    assert not list(tmp_path.iterdir())


def test_model_file_carries_what_prediction_needs(model_dir, tuned):
    meta = torch.load(model_dir / "model.pt", weights_only=True)
    assert meta["arch"] == "resnet18" and meta["classes"] == CLASSES and meta["input_size"] == [32, 32]
    assert meta["normalisation"] == {"imagenet": True, "log": False, "magnitude": True, "scaling": "image"}
    assert meta["preparation"] == PREPARATION
    assert len(meta["history"]) == tuned[1]["final_epochs"]
    assert (model_dir / "training_curves.png").stat().st_size > 0 and not (model_dir / "checkpoint.pt").exists()
    ood = meta["ood"]  # the detector on the final network's training embeddings, as tensors
    assert ood["method"] == "knn-embedding" and ood["quantile"] == 0.99 and isinstance(ood["train"], torch.Tensor)
    assert ood["train"].shape == (ood["n_train"], 512) and ood["threshold"] > 0
    assert ood["threshold_source"] == "out_of_fold" and ood["n_threshold"] == ood["n_train"]  # every training cell


def test_fold_embeddings_are_the_best_trials_fold_networks(tuned, stage):
    """ood_folds.npz: per manifest fold, its validation cells and the other training cells, embedded
    by the fold's network: refitting fold 0 with the best trial's parameters and seed gives its
    score, and the pooled features of that network (torchvision's layers up to the head) its rows."""
    from sts.cnn.train import TrainParams, fit
    from sts.cnn.tune import cv_folds

    out, best, _, settings = tuned
    packed = load_packed(stage / "packed.h5")
    with np.load(out / "ood_folds.npz", allow_pickle=False) as z:
        saved = {k: z[k] for k in z.files}
    assert str(saved["arch"]) == "resnet18" and int(saved["trial"]) == best["trial"] and int(saved["n_folds"]) == 3
    train = (packed.split == "train")
    for k in range(3):
        assert set(saved[f"valid_id_{k}"]) == set(packed.specimen_id[train & (packed.fold == k)])
        assert set(saved[f"train_id_{k}"]) == set(packed.specimen_id[train & (packed.fold != k)])
    train_idx, valid_idx = cv_folds(packed)[0]
    params = TrainParams(**best["params"], max_epochs=settings.max_epochs, seed=settings.seed, device="cpu",
                         recalibrate_bn=settings.recalibrate_bn)  # fmt: skip
    result = fit("resnet18", packed.images, packed.y, len(CLASSES), train_idx, valid_idx, params, threads=1)
    assert result.best_score == best["fold_scores"][0]
    from sts.cnn.models import build_model

    net = build_model("resnet18", len(CLASSES), best["params"].get("dropout", 0.0), 32)
    net.load_state_dict(result.state_dict)
    body = torch.nn.Sequential(*list(net.children())[:-1]).eval()  # everything but fc
    with torch.no_grad():
        for idx, key in ((train_idx, "train_0"), (valid_idx, "valid_0")):
            pooled = body(torch.from_numpy(packed.images[idx].astype(np.float32))).flatten(1).numpy()
            np.testing.assert_allclose(saved[key], pooled, rtol=1e-3, atol=1e-4)


def test_ood_threshold_is_the_quantile_of_the_out_of_fold_scores(model_dir, tuned):
    """Independent of sts.trust.ood: scikit-learn's NearestNeighbors on the saved fold embeddings."""
    from sklearn.neighbors import NearestNeighbors
    from sklearn.preprocessing import normalize

    ood = torch.load(model_dir / "model.pt", weights_only=True)["ood"]
    scores = []
    with np.load(tuned[0] / "ood_folds.npz", allow_pickle=False) as z:
        for k in range(int(z["n_folds"])):
            nn = NearestNeighbors(n_neighbors=ood["k"]).fit(normalize(z[f"train_{k}"]))
            scores.append(nn.kneighbors(normalize(z[f"valid_{k}"]))[0].mean(axis=1))
    scores = np.concatenate(scores)
    assert ood["n_threshold"] == len(scores) and ood["k"] == 5
    assert ood["threshold"] == pytest.approx(np.quantile(scores, ood["quantile"]), rel=1e-5)


def test_fold_embeddings_of_other_data_or_none(tuned, stage, tmp_path):
    """sts train checks the file before the fit: another architecture's or other cells' is refused;
    one without folds (a search whose best trial kept none) leaves the leave-one-out threshold."""
    from sts.cnn import fold_embeddings
    from sts.cnn.final import read_folds

    packed = load_packed(stage / "packed.h5")
    emb = fold_embeddings.load(tuned[0] / "ood_folds.npz")
    with pytest.raises(ValueError, match="fold embeddings of 'resnet18', not of 'densenet121'"):
        read_folds(tuned[0] / "ood_folds.npz", "densenet121", packed, tuned[1])
    fewer = fold_embeddings.FoldEmbeddings(emb.arch, emb.trial, emb.folds[:2], emb.ids[:2])
    fold_embeddings.save(tmp_path / "fewer.npz", fewer)
    with pytest.raises(ValueError, match="fewer.npz: the folds' validation cells are not the packed file's 18"):
        read_folds(tmp_path / "fewer.npz", "resnet18", packed, tuned[1])
    fold_embeddings.save_empty(tmp_path / "none.npz", "resnet18")
    assert read_folds(tmp_path / "none.npz", "resnet18", packed, tuned[1]) is None
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz: not a fold-embeddings file"):
        read_folds(tmp_path / "bad.npz", "resnet18", packed, tuned[1])


def test_holdout_metrics_match_sklearn(model_dir, stage):
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

    from sts.trust.metrics import read_predictions

    packed = load_packed(stage / "packed.h5")
    assert main(["evaluate", str(model_dir / "model.pt"), str(stage / "packed.h5"), str(model_dir), "--device", "cpu",
                 "--threads", "1"]) == 0  # fmt: skip
    metrics = json.loads((model_dir / "metrics.json").read_text())
    preds, classes, proba = read_predictions(model_dir / "predictions.csv")
    assert classes == CLASSES and set(preds["specimen_id"].astype(str)) == set(packed.specimen_id[packed.split == "test"])
    assert np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert list(preds["predicted"]) == [CLASSES[i] for i in proba.argmax(axis=1)]
    y, p = preds["label"], preds["predicted"]
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, p))
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y, p))
    assert metrics["weighted_f1"] == pytest.approx(f1_score(y, p, average="weighted"))
    assert metrics["confusion_matrix"] == confusion_matrix(y, p, labels=CLASSES).tolist()
    assert metrics["classes"] == CLASSES and set(metrics["per_class"]) == set(CLASSES)
    ood = pd.read_csv(model_dir / "ood_holdout.csv", dtype={"specimen_id": str})
    assert list(ood["specimen_id"]) == list(preds["specimen_id"].astype(str)) and ood["ood_score"].notna().all()
    assert list(ood["predicted"]) == list(p) and ood["in_distribution"].dtype == bool


@pytest.mark.parametrize("method", ["gradient", "integrated_gradients"])
def test_saliency_has_the_scalogram_shape(model_dir, stage, method):
    import h5py

    out = stage / f"saliency_{method}"
    assert main(["explain", str(model_dir / "model.pt"), str(stage / "packed.h5"), str(out), "--method", method,
                 "--ig-steps", "4", "--device", "cpu", "--threads", "1"]) == 0  # fmt: skip
    with h5py.File(out / "saliency.h5") as f:
        sal, n_cells = f["saliency"][()], list(f.attrs["n_cells"])
        assert json.loads(f.attrs["classes"]) == CLASSES and f.attrs["method"] == method
        assert f.attrs["times_ms"][-1] == pytest.approx((N_TIMES - 1) / 4.0)
    assert sal.shape == (len(CLASSES), 2, N_FREQS, N_TIMES) and sal.dtype == np.float32
    for c, n in enumerate(n_cells):
        if n:
            assert np.isfinite(sal[c]).all() and (sal[c] >= 0).all() and sal[c].max() > 0
        else:
            assert np.isnan(sal[c]).all()
    assert sum(n_cells) > 0 and (out / "saliency.png").stat().st_size > 0
