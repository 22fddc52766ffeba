"""Fusion: fitted on out-of-fold training rows only, served by ``sts predict`` from the raw files with
the evaluation step's probabilities, calibrated when its calibration.json is there.

Members: the LightGBM baseline of lgbm_data (its holdout cells are five raw files; its
out-of-fold table comes from ``sts.baseline.oof`` on the manifest's folds) and an untrained
MobileNetV2 at 32 px (its out-of-fold rows are synthetic: only the stacker's plumbing is at
stake here; trained members are checked end to end in test_workflow.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cnn_data import save_untrained_model
from lgbm_data import CLASSES
from sts.cli import main

PREPARATION = {
    "sweeps": {"window_s": 1.0, "fs_hz": 2000, "plus_pa": 40, "tolerance_pa": 5, "dvdt_cutoff_mv_ms": 20},
    "scalogram": {"wavelet": "mexh", "fmin_hz": 30, "fmax_hz": 150, "n_freqs": 40},
}


def save_cnn(path, size=32):
    return save_untrained_model(path, PREPARATION, CLASSES, size=size, scalogram_dtype=None)


@pytest.fixture(scope="module")
def fused(lgbm_baseline, tmp_path_factory):
    from sts.baseline.oof import out_of_fold
    from sts.fusion.stack import Member, fit_fusion
    from sts.io.atomic import write_csv_atomic
    from sts.trust.metrics import predictions_frame
    from sts.serve.predict import load_predictor

    files, lgbm_out, features_csv = lgbm_baseline
    root = tmp_path_factory.mktemp("fusion")
    manifest_csv = features_csv.parent / "manifest.csv"
    manifest = pd.read_csv(manifest_csv, dtype={"specimen_id": str}, keep_default_na=False)
    out_of_fold(features_csv, manifest_csv, lgbm_out / "best_params.json", root / "lgbm_oof.csv", CLASSES)

    (root / "cnn").mkdir()
    cnn = save_cnn(root / "cnn" / "model.pt")
    rng = np.random.default_rng(0)  # out-of-fold CNN rows: noisy, leaning to the true class
    train = manifest[manifest["split"] == "train"]
    logits = rng.normal(0, 1, (len(train), len(CLASSES))) + 1.5 * np.eye(len(CLASSES))[
        [CLASSES.index(c) for c in train["label"]]]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    write_csv_atomic(root / "cnn_oof.csv", predictions_frame(train["specimen_id"], train["label"],
                     [CLASSES[i] for i in proba.argmax(axis=1)], proba, CLASSES))  # fmt: skip
    predictor = load_predictor(cnn, "cpu", 1, calibrate=False)  # the CNN's holdout table, from the files
    labels = dict(zip(manifest["specimen_id"], manifest["label"]))
    rows = [(sid, predictor.prepare(path, None, sid)) for sid, path in files.items()]
    rows = [(sid, predictor.classify(p)[0]) for sid, p in rows if p.status == "ok"]
    p = np.vstack([r[1] for r in rows])
    write_csv_atomic(root / "cnn_predictions.csv", predictions_frame(
        [r[0] for r in rows], [labels[r[0]] for r in rows], [CLASSES[i] for i in p.argmax(axis=1)], p, CLASSES))
    members = [Member("mobilenet_v2", cnn, root / "cnn_oof.csv", root / "cnn_predictions.csv"),
               Member("lightgbm", lgbm_out / "model" / "model.json", root / "lgbm_oof.csv",
                      lgbm_out / "predictions.csv")]  # fmt: skip
    fit_fusion(members, manifest_csv, root / "out", CLASSES)
    return files, root, members, manifest, manifest_csv


def test_lightgbm_oof_uses_the_manifest_folds_and_training_cells_only(fused):
    from sts.trust.metrics import read_predictions

    _, root, _, manifest, _ = fused
    oof, classes, proba = read_predictions(root / "lgbm_oof.csv")
    train = manifest[manifest["split"] == "train"]
    assert classes == CLASSES and np.allclose(proba.sum(axis=1), 1)
    assert sorted(oof["specimen_id"]) == sorted(train["specimen_id"])  # every training cell once, no holdout
    assert dict(zip(oof["specimen_id"], oof["fold"])) == dict(zip(train["specimen_id"], train["fold"]))


def test_no_holdout_cell_in_the_fusion_training_rows(fused, tmp_path):
    from sts.fusion.stack import Member, fit_fusion

    _, root, members, manifest, manifest_csv = fused
    holdout = set(manifest.loc[manifest["split"] == "test", "specimen_id"])
    fit_rows = pd.read_csv(root / "out" / "oof.csv", dtype={"specimen_id": str})["specimen_id"]
    assert len(fit_rows) and not set(fit_rows) & holdout
    leaky = pd.read_csv(members[0].oof, dtype={"specimen_id": str})
    leaky = pd.concat([leaky, pd.read_csv(members[0].predictions, dtype={"specimen_id": str}).iloc[:1]])
    leaky.to_csv(tmp_path / "leaky.csv", index=False)
    leaky_member = Member("mobilenet_v2", members[0].model, tmp_path / "leaky.csv", members[0].predictions)
    with pytest.raises(ValueError, match="not training cells"):
        fit_fusion([leaky_member, members[1]], manifest_csv, tmp_path / "x", CLASSES)


def test_served_fusion_equals_the_evaluation_calibrated_or_not(fused, tmp_path):
    from sts.trust.calibration import apply_temperature, calibrate, write_calibration
    from sts.trust.metrics import read_predictions

    files, root, _, _, manifest_csv = fused
    model = root / "out" / "model.json"
    evaluated, classes, proba = read_predictions(root / "out" / "predictions.csv")
    oof = pd.read_csv(root / "out" / "oof.csv", dtype={"specimen_id": str}, keep_default_na=False)
    cal, _ = calibrate(oof, evaluated, pd.read_csv(manifest_csv, dtype={"specimen_id": str}))
    write_calibration(root / "out" / "calibration.json", cal, model)
    (tmp_path / "bad.nwb").write_text("not an NWB file\n")
    args = ["predict", "--model", str(model), "--device", "cpu", "--threads", "1"]
    try:
        assert main([*args, "--out", str(tmp_path / "cal.csv"), *map(str, files.values()), str(tmp_path / "bad.nwb")],
                    warm=False) == 0  # fmt: skip
        one = evaluated["specimen_id"].iloc[0]
        assert main([*args, "--uncalibrated", "--out", str(tmp_path / "raw.csv"), str(files[one])], warm=False) == 0
    finally:
        (root / "out" / "calibration.json").unlink()
    served = pd.read_csv(tmp_path / "cal.csv", dtype={"specimen_id": str}, keep_default_na=False)
    ok = served[served["status"] == "ok"].set_index("specimen_id")
    assert sorted(ok.index) == sorted(evaluated["specimen_id"])
    p_cols = [f"p_{c}" for c in classes]
    got, want = ok.loc[evaluated["specimen_id"], p_cols].to_numpy(float), apply_temperature(proba, cal.temperature)
    print(f"T {cal.temperature:.3f}; max |served - evaluated| calibrated fusion probability over {len(evaluated)} "
          f"cells: {np.abs(got - want).max():.3g}")  # fmt: skip
    assert np.abs(got - want).max() <= 1e-4
    assert ok["calibrated"].astype(str).str.lower().eq("true").all()
    members = ("mobilenet_v2", "lightgbm")
    assert {f"{c}_{m}" for m in members for c in ("predicted", "ood_score", "in_distribution")} <= set(served.columns)
    for _, row in ok.iterrows():  # a flag from any member flags the file; members without a verdict abstain
        verdicts = [str(row[f"in_distribution_{m}"]) for m in members if str(row[f"in_distribution_{m}"]) != ""]
        assert str(row["in_distribution"]) == (str(all(v == "True" for v in verdicts)) if verdicts else "")
    bad = served.set_index("specimen_id").loc["bad"]
    assert bad["status"] == "excluded" and bad["reason"].startswith("mobilenet_v2: ")
    raw = pd.read_csv(tmp_path / "raw.csv", dtype={"specimen_id": str}, keep_default_na=False).iloc[0]
    assert str(raw["calibrated"]).lower() == "false"
    assert np.abs(raw[p_cols].to_numpy(float) - proba[0]).max() <= 1e-4


def test_a_refitted_member_invalidates_the_fusion(fused, tmp_path):
    import json
    import shutil

    from sts.fusion.model import FusionFileError, load_fusion

    _, root, _, _, _ = fused
    copy = tmp_path / "f"
    shutil.copytree(root / "out", copy / "out")
    shutil.copytree(root / "cnn", copy / "cnn")
    doc = json.loads((copy / "out" / "model.json").read_text())
    doc["members"][1]["path"] = str((root / "out" / doc["members"][1]["path"]).resolve())
    (copy / "out" / "model.json").write_text(json.dumps(doc))
    assert [m["name"] for m in load_fusion(copy / "out" / "model.json").members] == ["mobilenet_v2", "lightgbm"]
    save_cnn(copy / "cnn" / "model.pt", size=40)
    with pytest.raises(FusionFileError, match="changed since the fusion was fitted"):
        load_fusion(copy / "out" / "model.json")
