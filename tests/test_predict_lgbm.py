"""``sts predict`` with the LightGBM baseline's saved fit: served = evaluated, tampering refused, no pickle.

The cohort is small on purpose (``lgbm_data``): five synthetic cells through the workflow's own
feature path are the holdout, jittered copies of their feature rows the training cells.
"""

from __future__ import annotations

import json
import pickle
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest

from conftest import rename_long_squares
from lgbm_data import CLASSES
from sts.cli import main


def is_allen_v1(path) -> bool:
    with h5py.File(path, "r") as f:
        return "acquisition/timeseries" in f


def predict(model, *inputs, out, extra=()):
    return main(["predict", "--model", str(model), "--out", str(out), "--threads", "1", *extra,
                 *map(str, inputs)], warm=False)  # fmt: skip


def test_served_probabilities_equal_the_evaluation(lgbm_baseline, tmp_path):
    """From each holdout cell's raw file, the served probabilities are predictions.csv's."""
    from sts.trust.metrics import read_predictions

    files, out, features_csv = lgbm_baseline
    (tmp_path / "bad.nwb").write_text("not an NWB file\n")
    csv = tmp_path / "served.csv"
    assert predict(out / "model", *files.values(), tmp_path / "bad.nwb", out=csv) == 0
    served = pd.read_csv(csv, dtype={"specimen_id": str}, keep_default_na=False).set_index("specimen_id")
    p_cols = [f"p_{c}" for c in CLASSES]
    assert list(served.columns) == ["file", "status", "reason", "predicted", *p_cols, "rheobase_pa", "second_pa",
                                    "second_offset_pa", "rheobase_sweep", "second_sweep", "ood_score",
                                    "in_distribution", "calibrated", "scheme"]  # fmt: skip
    assert (served["scheme"] == "study").all()
    evaluated, classes, proba = read_predictions(out / "predictions.csv")
    assert classes == CLASSES and sorted(evaluated["specimen_id"]) == sorted(files)
    got = served.loc[evaluated["specimen_id"], p_cols].astype(float).to_numpy()
    diff = float(np.abs(got - proba).max())
    print(f"max |served - evaluated| probability over {len(files)} cells: {diff:.3g}")
    assert diff < 1e-6
    assert (served.loc[evaluated["specimen_id"], "predicted"].to_numpy() == evaluated["predicted"].to_numpy()).all()
    assert (got[:, CLASSES.index("Unseen")] == 0).all()
    assert len(np.unique(proba.round(4), axis=0)) == len(files)  # a real model: every cell its own probabilities
    table = pd.read_csv(features_csv, dtype={"specimen_id": str}).set_index("specimen_id")
    ok = served.loc[list(files)]
    assert (ok["status"] == "ok").all() and (ok["in_distribution"] == "True").all()
    np.testing.assert_array_equal(ok["rheobase_pa"].astype(float), table.loc[list(files), "threshold_i_long_square"])
    assert (ok["second_pa"] == "").all() and (ok["rheobase_sweep"] != "").all()
    bad = served.loc["bad"]
    assert bad["status"] == "excluded" and "unreadable NWB file" in bad["reason"] and bad["p_Pvalb"] == ""


def test_saved_model_files(lgbm_baseline):
    from sts.baseline.features import FeatureParams

    _, out, _ = lgbm_baseline
    meta = json.loads((out / "model" / "model.json").read_text())
    assert meta["format"] == "sts-lightgbm-baseline" and meta["classes"] == CLASSES
    assert meta["fitted_classes"] == sorted(CLASSES[:4])
    assert FeatureParams.from_dict(meta["feature_params"]) == FeatureParams()
    assert (out / "model" / "model.txt").read_text().startswith("tree\n")  # LightGBM model text
    assert not list((out / "model").glob(".*"))  # no temporary files left


def _tampered(out, tmp_path, edit=None, text=None):
    model = tmp_path / "model"
    shutil.copytree(out / "model", model)
    meta = json.loads((model / "model.json").read_text())
    if edit:
        edit(meta)
        (model / "model.json").write_text(json.dumps(meta))
    if text:
        (model / "model.txt").write_text(text((model / "model.txt").read_text()))
    return model


@pytest.mark.parametrize("case, message", [
    ("reordered features", "differ from the booster's"),
    ("foreign feature", "not EP features that sts computes"),
    ("edited booster", "sha256 differs"),
    ("unknown feature parameter", "unknown keys ['window_s']"),
    ("class missing", "fitted_classes"),
    ("not ours", "not a LightGBM model written by the sts baseline"),
    ("scheme not a name", "label_scheme must be a scheme name"),
])  # fmt: skip
def test_tampered_model_is_refused(lgbm_baseline, tmp_path, case, message):
    from sts.baseline.saved import ModelFileError, load_model

    files, out, _ = lgbm_baseline
    edits = {
        "reordered features": lambda m: m["features"].reverse(),
        "foreign feature": lambda m: m["features"].__setitem__(0, "ap_width_published"),
        "unknown feature parameter": lambda m: m["feature_params"].update(window_s=1.0),
        "class missing": lambda m: m["classes"].remove("Sst"),
        "not ours": lambda m: m.pop("format"),
        "scheme not a name": lambda m: m.update(label_scheme={"study": 1}),
    }
    if case == "edited booster":
        model = _tampered(out, tmp_path, text=lambda t: t.replace("learning_rate: 0.1", "learning_rate: 0.2"))
    else:
        model = _tampered(out, tmp_path, edit=edits[case])
    with pytest.raises(ModelFileError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_model(model)
    with pytest.raises(SystemExit) as err:  # the command says why, before reading any recording
        predict(model, next(iter(files.values())), out=tmp_path / "o.csv")
    assert message in str(err.value.code) and not (tmp_path / "o.csv").exists()


def test_a_model_saved_before_schemes_reads_as_study(lgbm_baseline, tmp_path):
    from sts.baseline.saved import load_model

    _, out, _ = lgbm_baseline
    assert json.loads((out / "model" / "model.json").read_text())["label_scheme"] == "study"
    old = _tampered(out, tmp_path, edit=lambda m: m.pop("label_scheme"))
    assert load_model(old).scheme == "study"
    newer = _tampered(out, tmp_path / "b", edit=lambda m: m.update(label_scheme="inhibitory"))
    assert load_model(newer).scheme == "inhibitory"


def test_model_txt_and_non_standard_json_are_refused(lgbm_baseline, tmp_path):
    from sts.baseline.saved import ModelFileError, load_model

    _, out, _ = lgbm_baseline
    with pytest.raises(ModelFileError, match="give the LightGBM model's folder or its model.json"):
        load_model(out / "model" / "model.txt")
    model = _tampered(out, tmp_path)
    text = (model / "model.json").read_text()
    (model / "model.json").write_text(text.replace('"seed": 0', '"seed": NaN'))
    with pytest.raises(ModelFileError, match="non-standard JSON constant NaN"):
        load_model(model)


def test_loading_and_predicting_never_unpickle(lgbm_baseline, monkeypatch):
    from sts.baseline.saved import load_model

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling attempted")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    _, out, features_csv = lgbm_baseline
    saved = load_model(out / "model" / "model.json")
    X = pd.read_csv(features_csv).loc[:2, saved.features].to_numpy(float)
    proba = saved.predict_proba(X)
    assert proba.shape == (3, len(CLASSES)) and np.allclose(proba.sum(axis=1), 1)
    assert saved.ood.score(X).shape == (3,)


def test_figures_draw_the_sweeps_probabilities_and_features_and_say_what_is_not_drawn(lgbm_baseline, tmp_path,
                                                                                       drawn_figures, caplog):
    """One figure per classified file: the rheobase and hero sweeps as recorded in the file, the
    probabilities, the features in training SDs; no scalogram or saliency, said in the figure and
    logged; without training statistics, no feature panel (said too)."""
    from dataclasses import replace

    from sts.recordings import open_recording
    from sts.serve.lgbm import LgbmPredictor
    from sts.serve.predict import predict_files

    files, out, _ = lgbm_baseline
    first, second = list(files.values())[:2]
    figures = tmp_path / "figures"
    (tmp_path / "bad.nwb").write_text("not an NWB file\n")
    with caplog.at_level("WARNING", logger="sts"):
        assert predict(out / "model", first, second, tmp_path / "bad.nwb", out=tmp_path / "o.csv",
                       extra=["--figures", str(figures)]) == 0  # fmt: skip
    names = [f"{first.stem}.png", f"{second.stem}.png"]
    assert sorted(p.name for p in figures.iterdir()) == sorted(names) == sorted(drawn_figures)
    assert "not drawn: scalograms and saliency" in caplog.text
    assert "bad.nwb excluded (no figure)" in caplog.text
    table = pd.read_csv(tmp_path / "o.csv").set_index("specimen_id")
    for path, name in zip((first, second), names):
        row, drawn = table.loc[path.stem], drawn_figures[name]
        assert drawn["titles"][0].startswith(f"rheobase (sweep {int(row['rheobase_sweep'])}, ")
        assert drawn["titles"][1].startswith("hero (sweep ")
        assert drawn["titles"][2:] == ["class probabilities", drawn["titles"][3]]
        assert drawn["titles"][3].startswith("LightGBM baseline: EP features; OOD score")
        assert not any("CWT" in t or "saliency" in t for t in drawn["titles"])
        assert "not drawn: scalograms and saliency" in drawn["suptitle"]
        with open_recording(path) as rec:  # the drawn rheobase trace is a stretch of the file's own response
            response = rec.load(int(row["rheobase_sweep"]))[1]
        trace = drawn["lines"][0]
        starts = np.flatnonzero(response == trace[0])
        assert len(trace) < len(response) and any(np.array_equal(response[i : i + len(trace)], trace) for i in starts)
    plain = LgbmPredictor(out / "model")
    plain.saved = replace(plain.saved, ood=None)  # a model saved without training statistics
    predict_files(plain, [first], tmp_path / "p.csv", figures_dir=tmp_path / "plain")
    drawn = drawn_figures[names[0]]
    assert (tmp_path / "plain" / names[0]).exists() and drawn["titles"][2:] == ["class probabilities"]
    assert "not drawn: the features in training SDs" in drawn["suptitle"]


def test_any_square_step_and_nothing_readable(lgbm_baseline, tmp_path):
    files, out, _ = lgbm_baseline
    # A lab's protocol name on an Allen cell's ladder: excluded as saved; --any-square-step or the
    # name serve the very row of the original file.
    allen = next(f for f in files.values() if is_allen_v1(f))
    assert rename_long_squares(allen, tmp_path / allen.name) >= 8
    assert predict(out / "model", allen, out=tmp_path / "ref.csv") == 0
    reference = pd.read_csv(tmp_path / "ref.csv").drop(columns="file")
    assert reference["status"].tolist() == ["ok"]
    assert predict(out / "model", tmp_path / allen.name, out=tmp_path / "o.csv") == 0
    assert "no long-square sweeps" in pd.read_csv(tmp_path / "o.csv")["reason"][0]
    for extra in (["--any-square-step"], ["--long-square-names", "IV steps"]):
        assert predict(out / "model", tmp_path / allen.name, out=tmp_path / "o.csv", extra=extra) == 0
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "o.csv").drop(columns="file"), reference)
    (tmp_path / "bad.nwb").write_bytes(b"\x89HDF\r\n")
    with pytest.raises(SystemExit) as err:  # nothing readable: an error, the reasons still written
        predict(out / "model", tmp_path / "bad.nwb", out=tmp_path / "o.csv")
    assert "none of the 1 input files could be read" in str(err.value.code)
    assert pd.read_csv(tmp_path / "o.csv")["status"].tolist() == ["excluded"]


def test_ood_score_flags_far_cells():
    from sts.trust.ood import KnnNovelty

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 6)) * [1, 10, 100, 1, 1, 1]
    X[::7, 2] = np.nan  # undefined features are imputed with the training median
    ood = KnnNovelty.fit(X)
    own = ood.score(np.where(np.isnan(X), ood.medians, X))
    assert (own > ood.threshold).mean() <= 0.01  # the threshold: 99th percentile of leave-one-out scores
    far = np.array([[8, 0, 0, 0, 0, 0], [0, 0, np.nan, 0, 0, 0]], dtype=float)
    scores = ood.score(far)
    assert scores[0] > ood.threshold > scores[1]
    back = KnnNovelty.from_dict(json.loads(json.dumps(ood.to_dict())), 6)
    np.testing.assert_array_equal(back.score(far), scores)
    with pytest.raises(ValueError, match="do not match"):
        KnnNovelty.from_dict(ood.to_dict(), 5)


def test_workflow_predict_target_serves_the_baseline(tmp_path):
    """config predict.model: lightgbm plans `predict` on the baseline's saved fit (dry run)."""
    import yaml

    from conftest import REPO, smk

    cfg = yaml.safe_load((REPO / ".test" / "config.yaml").read_text())
    cfg["predict"] = {"inputs": "new_cells", "model": "lightgbm", "figures": False}
    (tmp_path / "new_cells").mkdir()
    (tmp_path / "new_cells" / "cell.nwb").write_bytes(b"")
    out = smk(tmp_path, "--dry-run", config=cfg).stdout
    job = out[out.index("rule predict:") :].split("\n\n")[0]
    # the calibration.json beside the model: the served probabilities are calibrated
    assert "input: results/baseline/model/model.json, results/baseline/model/calibration.json, new_cells/cell.nwb" in job
    assert "output: results/predictions/lightgbm.csv" in job
