"""Report figures and tables (sts.report) and the cross-dataset evaluation (sts.report.cross_dataset).

The end-to-end checks (the HTML report of a workflow run, the cross-dataset table of the .test
config) are in test_workflow.py; these cover the pieces on small inputs.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

from sts.report.cross_dataset import check_direction, cnn_cross, gather, lgbm_cross
from sts.trust.metrics import read_predictions
from sts.report.comparison import comparison_table
from sts.report.scalograms import candidate_cells, pick_examples, write_class_examples
from sts.report.shap_top import top_features
from sts.report.tables import html_table

CLASSES = ["Pvalb", "Sst", "Vip/Lamp5"]


def manifest_rows(n_per: int, datasets=("clamp", "seq"), classes=CLASSES) -> pd.DataFrame:
    rows = [{"specimen_id": f"{ds}{c}{i}", "dataset": ds, "label": cls, "status": "ok", "reason": "", "split": "train"}
            for ds in datasets for c, cls in enumerate(classes) for i in range(n_per)]  # fmt: skip
    return pd.DataFrame(rows)


def test_examples_alternate_datasets_and_skip_excluded_cells():
    m = manifest_rows(4)
    m.loc[m["specimen_id"] == "clamp00", ["status", "reason"]] = ["excluded", "no spiking sweep"]
    picked = pick_examples(m, "Pvalb", n=3, seed=1)
    assert picked["dataset"].tolist() == ["clamp", "seq", "clamp"]
    assert set(picked["label"]) == {"Pvalb"} and "clamp00" not in set(picked["specimen_id"])
    assert pick_examples(m, "Pvalb", n=3, seed=1).equals(picked)  # seeded
    assert len(pick_examples(m, "Pvalb", n=10)) == 7  # all usable cells when fewer than asked
    among = candidate_cells(m, ["Pvalb"], per_dataset=2, seed=0)
    assert len(among) == 4 and all(s.startswith(("clamp0", "seq0")) for s in among)
    assert set(pick_examples(m, "Pvalb", n=10, among=among)["specimen_id"]) <= set(among)


def test_example_figure_reads_scalogram_and_sweeps(tmp_path):
    m = manifest_rows(2, datasets=("seq",))
    (tmp_path / "scal").mkdir()
    (tmp_path / "sweeps").mkdir()
    rng = np.random.default_rng(0)
    for sid in m["specimen_id"]:
        with h5py.File(tmp_path / "scal" / f"{sid}.h5", "w") as f:
            f["scalogram"] = rng.normal(size=(2, 12, 400)).astype(np.float32)
            f.attrs.update(freqs_hz=np.linspace(20, 200, 12), fs_hz=4000.0, amplitudes_pa=[50.0, 90.0], n_spikes=[1, 5])
        with h5py.File(tmp_path / "sweeps" / f"{sid}.h5", "w") as f:
            f["traces_mv"] = rng.normal(-60, 5, size=(2, 400)).astype(np.float32)
    m.to_csv(tmp_path / "manifest.csv", index=False)
    png = tmp_path / "Vip-Lamp5.png"
    shown = write_class_examples(tmp_path / "manifest.csv", "Vip/Lamp5", png, tmp_path / "scal", tmp_path / "sweeps")
    assert sorted(shown) == ["seq20", "seq21"] and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "sweeps" / "seq20.h5").unlink()
    with pytest.raises(ValueError, match="cell seq20"):
        write_class_examples(tmp_path / "manifest.csv", "Vip/Lamp5", png, tmp_path / "scal", tmp_path / "sweeps")


def test_top_features_per_class():
    table = pd.DataFrame({"A": [0.1, 0.5, 0.3, 0.0], "B": [0.9, 0.0, 0.2, 0.4]}, index=["f1", "f2", "f3", "f4"])
    top = top_features(table.rename_axis("feature"), k=2)
    assert top[top["class"] == "A"]["feature"].tolist() == ["f2", "f3"]
    assert top[top["class"] == "B"]["feature"].tolist() == ["f1", "f4"]
    assert top["rank"].tolist() == [1, 2, 1, 2] and top["mean_abs_shap"].tolist() == [0.5, 0.3, 0.9, 0.4]


def test_comparison_reads_metrics_and_marks_the_best_cnn(tmp_path):
    def metrics(name, ba, f1):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"balanced_accuracy": ba, "weighted_f1": f1, "accuracy": 0.5, "n_test": 9}))
        return path

    cnns = {"a": metrics("a", 0.55, 0.5), "b": metrics("b", 0.65, 0.4)}
    table = comparison_table(metrics("lgbm", 0.7, 0.6), cnns, cv_scores={"a": 0.8, "b": 0.6})
    # the best CNN is the one with the best CV score (a), not the best holdout score (b)
    assert table["model"].tolist() == ["LightGBM (EP features)", "a", "b", "best CNN (a)"]
    assert table["balanced_accuracy"].tolist() == [0.7, 0.55, 0.65, 0.55]
    assert table["cv_balanced_accuracy"].tolist()[1:] == [0.8, 0.6, 0.8]
    assert table["published_weighted_f1"].iloc[0] == 0.890 and table["published_balanced_accuracy"].iloc[-1] == 0.905
    assert table.iloc[1:3][["published_balanced_accuracy", "published_weighted_f1"]].isna().all().all()
    assert table["balanced_accuracy_low"].isna().all()  # metrics.json without intervals: empty columns
    assert "best CNN" not in " ".join(comparison_table(None, cnns)["model"])  # never chosen by the holdout
    (tmp_path / "a.json").write_text(json.dumps({"weighted_f1": 0.5}))
    with pytest.raises(ValueError, match="a.json"):
        comparison_table(None, {"a": tmp_path / "a.json"})


def test_comparison_shows_intervals_and_the_paired_difference(tmp_path):
    """Intervals from each metrics.json in the table, the HTML and the figure's error bars; the
    paired table compares the best CNN by CV with LightGBM on their shared cells."""
    from matplotlib.container import ErrorbarContainer

    from sts.trust.metrics import evaluate, predictions_frame
    from sts.report.comparison import plot_comparison, write_comparison
    from sts.trust.uncertainty import paired_difference

    rng = np.random.default_rng(0)
    ids = np.array([f"c{i}" for i in range(60)])
    y = rng.choice(CLASSES, 60)
    preds = {"lgbm": np.where(rng.random(60) < 0.6, y, rng.choice(CLASSES, 60))}
    for arch, acc in (("a", 0.8), ("b", 0.5)):
        preds[arch] = np.where(rng.random(60) < acc, y, preds["lgbm"])
    paths = {}
    for name, pred in preds.items():
        keep = slice(0, 58) if name == "lgbm" else slice(None)  # two cells without EP features
        proba = np.eye(3)[[CLASSES.index(p) for p in pred[keep]]]
        (tmp_path / name).mkdir()  # what write_evaluation writes, without the confusion-matrix figure
        frame = predictions_frame(ids[keep], y[keep], pred[keep], proba, CLASSES)
        frame.to_csv(tmp_path / name / "predictions.csv", index=False)
        paths[name] = tmp_path / name / "metrics.json"
        paths[name].write_text(json.dumps(evaluate(y[keep], pred[keep], proba, CLASSES)))
    for arch, cv in (("a", 0.6), ("b", 0.7)):
        (tmp_path / arch / "best_params.json").write_text(json.dumps({"cv_balanced_accuracy": cv}))
    out = {k: tmp_path / "report" / f"{k}" for k in ("c.csv", "c.html", "c.png", "p.csv", "p.html")}
    table = write_comparison(paths["lgbm"], {"a": paths["a"], "b": paths["b"]}, out["c.csv"], out["c.html"],
                             out["c.png"], {a: tmp_path / a / "best_params.json" for a in "ab"}, out["p.csv"],
                             out["p.html"])  # fmt: skip
    page = out["c.html"].read_text()
    for name, row in zip(["lgbm", "a", "b"], table.itertuples()):
        ci = json.loads(paths[name].read_text())["bootstrap"]
        ba = ci["balanced_accuracy"]
        assert (row.balanced_accuracy_low, row.balanced_accuracy_high) == (ba["low"], ba["high"])
        assert (row.weighted_f1_low, row.weighted_f1_high) == (ci["weighted_f1"]["low"], ci["weighted_f1"]["high"])
        assert f"{row.balanced_accuracy_low:.3f}" in page and f"{row.weighted_f1_high:.3f}" in page
    assert table["model"].iloc[-1] == "best CNN (b)"  # CV 0.7 beats a's 0.6, whatever the holdout says
    fig = plot_comparison(table)
    bars = [c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2 and all(len(c.lines[2][0].get_segments()) == len(table) for c in bars)

    paired = pd.read_csv(out["p.csv"])
    assert paired["comparison"].unique().tolist() == ["best CNN (b) - LightGBM"]
    assert paired["metric"].tolist() == ["balanced_accuracy", "weighted_f1"]
    assert (paired["n_cells"] == 58).all() and (paired["n_only_a"] == 2).all() and (paired["n_only_b"] == 0).all()
    expected = paired_difference(y[:58], preds["b"][:58], preds["lgbm"][:58], CLASSES)
    for row in paired.itertuples():
        assert (row.difference, row.low, row.high) == pytest.approx(
            [expected[row.metric][k] for k in ("difference", "low", "high")])  # fmt: skip
        assert row.low <= row.difference <= row.high
    assert "best CNN (b) - LightGBM" in out["p.html"].read_text()
    assert out["c.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    none = write_comparison(paths["lgbm"], {}, *(tmp_path / "none" / k for k in ("c.csv", "c.html", "c.png")),
                            paired_csv=tmp_path / "none" / "p.csv")  # fmt: skip
    assert len(none) == 1 and pd.read_csv(tmp_path / "none" / "p.csv")["reason"].eq("no CNN in this run").all()


def test_html_table_formats_numbers_and_escapes_text():
    page = html_table(pd.DataFrame({"model": ["<b>x"], "n": [3], "score": [0.12345], "gap": [np.nan]}), "T", "note")
    assert "&lt;b&gt;x" in page and '<td class="num">3</td>' in page and ">0.123<" in page and "<td></td>" in page


def test_check_direction_reasons():
    assert check_direction(["Pvalb", "Sst", "Sst"], 5, "clamp", "seq", ["Pvalb", "Sst"], 1) == ""
    assert "Pvalb (1)" in check_direction(["Pvalb", "Sst", "Sst"], 5, "clamp", "seq", ["Pvalb", "Sst"], 2)
    assert check_direction([], 5, "clamp", "seq", ["Pvalb"], 1) == "no usable clamp cells to train on"
    assert check_direction(["Pvalb"], 0, "clamp", "seq", ["Pvalb"], 1) == "no usable seq cells to test on"


def feature_cells(n_per: int, seed: int = 0, missing: tuple = ()) -> pd.DataFrame:
    """Cells whose two features separate the classes (plus noise); ``missing``: (dataset, class) pairs left out."""
    rng = np.random.default_rng(seed)
    m = manifest_rows(n_per)
    m = m[[(d, c) not in missing for d, c in zip(m["dataset"], m["label"])]].reset_index(drop=True)
    code = m["label"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    return m.assign(f1=code + rng.normal(0, 0.2, len(m)), f2=-code + rng.normal(0, 0.2, len(m)))


def test_lgbm_cross_both_directions_and_a_reason(tmp_path):
    params = {"n_estimators": 20, "min_child_samples": 2, "num_leaves": 4}
    rows = lgbm_cross(feature_cells(6), ["f1", "f2"], params, CLASSES, tmp_path / "ok", n_jobs=1)
    assert rows[["train_dataset", "test_dataset", "n_train", "n_test"]].values.tolist() == [
        ["clamp", "seq", 18, 18], ["seq", "clamp", 18, 18]]  # fmt: skip
    for r in rows.itertuples():
        folder = tmp_path / "ok" / f"{r.train_dataset}_to_{r.test_dataset}"
        preds, _, _ = read_predictions(folder / "predictions.csv")
        assert set(preds["specimen_id"].str[: len(r.test_dataset)]) == {r.test_dataset}
        assert r.balanced_accuracy == pytest.approx(balanced_accuracy_score(preds["label"], preds["predicted"]))
        assert r.weighted_f1 == pytest.approx(f1_score(preds["label"], preds["predicted"], average="weighted"))
        assert r.balanced_accuracy > 0.9  # the features carry the class in both datasets
    few = feature_cells(6, missing=(("seq", "Sst"),))
    rows = lgbm_cross(few, ["f1", "f2"], params, CLASSES, tmp_path / "few", n_jobs=1)
    assert rows["reason"].tolist() == ["", "seq has fewer than 2 usable cells of Sst (0)"]
    assert np.isnan(rows["balanced_accuracy"].iloc[1]) and not (tmp_path / "few" / "seq_to_clamp").exists()
    table = gather([tmp_path / "ok" / "rows.csv", tmp_path / "few" / "rows.csv"])
    assert len(table) == 4 and table["reason"].tolist()[:3] == ["", "", ""]


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")  # clamp has no Sst cell to test
def test_cnn_cross_trains_on_one_dataset_and_tests_on_the_other(tmp_path):
    import torch
    from cnn_data import write_cohort

    from sts.cnn.pack import load_packed, pack

    manifest, scal_dir = write_cohort(tmp_path, per_class=6)
    m = pd.read_csv(manifest, keep_default_na=False)
    m["dataset"] = np.where(np.arange(len(m)) % 2, "clamp", "seq")
    m.loc[(m["dataset"] == "clamp") & (m["label"] == "Sst"), "dataset"] = "seq"  # clamp has no Sst cell
    m.to_csv(manifest, index=False)
    pack(manifest, scal_dir, tmp_path / "packed.h5", 32, classes=CLASSES)
    best = {"arch": "mobilenet_v2", "params": {"batch_size": 8, "learning_rate": 1e-3}, "final_epochs": 1}
    rows = cnn_cross(load_packed(tmp_path / "packed.h5"), manifest, "mobilenet_v2", best, tmp_path / "out",
                     device="cpu", threads=1)  # fmt: skip
    ok = m[m["status"] == "ok"]
    n = ok["dataset"].value_counts()
    assert rows[["train_dataset", "n_train", "n_test"]].values.tolist() == [["clamp", n["clamp"], n["seq"]],
                                                                             ["seq", n["seq"], n["clamp"]]]  # fmt: skip
    assert rows["reason"].iloc[0] == "clamp has fewer than 2 usable cells of Sst (0)"
    preds, _, _ = read_predictions(tmp_path / "out" / "seq_to_clamp" / "predictions.csv")
    assert set(preds["specimen_id"]) == set(ok.loc[ok["dataset"] == "clamp", "specimen_id"])
    score = balanced_accuracy_score(preds["label"], preds["predicted"])
    assert rows["balanced_accuracy"].iloc[1] == pytest.approx(score)
    model = torch.load(tmp_path / "out" / "seq_to_clamp" / "model.pt", weights_only=True)
    assert model["history"][0]["epoch"] == 1 and model["classes"] == CLASSES


def test_comparison_with_fusion_and_calibration(tmp_path):
    """A fusion row, calibration columns from each calibration.json, and the paired rows fusion minus
    the best single member by out-of-fold CV score (b here, whatever the holdout says) and minus each."""
    from sts.trust.metrics import evaluate, predictions_frame
    from sts.report.comparison import write_comparison

    rng = np.random.default_rng(1)
    ids, y = np.array([f"c{i}" for i in range(40)]), rng.choice(CLASSES, 40)
    paths, oofs, cals = {}, {}, {}
    for name, acc, oof_acc in (("lightgbm", 0.7, 0.5), ("a", 0.8, 0.6), ("b", 0.5, 0.9), ("fusion", 0.9, 0.9)):
        pred = np.where(rng.random(40) < acc, y, rng.choice(CLASSES, 40))
        proba = np.eye(3)[[CLASSES.index(p) for p in pred]] * 0.7 + 0.1
        (tmp_path / name).mkdir()
        predictions_frame(ids, y, pred, proba, CLASSES).to_csv(tmp_path / name / "predictions.csv", index=False)
        paths[name] = tmp_path / name / "metrics.json"
        paths[name].write_text(json.dumps(evaluate(y, pred, proba, CLASSES)))
        oof_pred = np.where(rng.random(40) < oof_acc, y, rng.choice(CLASSES, 40))
        predictions_frame([f"t{i}" for i in range(40)], y, oof_pred, proba, CLASSES).to_csv(
            tmp_path / name / "oof.csv", index=False)
        oofs[name] = tmp_path / name / "oof.csv"
        cals[name] = tmp_path / name / "calibration.json"
        scores = {"ece": 0.2, "brier": 0.5, "log_loss": 0.9}
        cals[name].write_text(json.dumps({"temperature": 1.5, "holdout": {"before": scores, "after": {
            k: v / 2 for k, v in scores.items()}}}))  # fmt: skip
    out = {k: tmp_path / "report" / k for k in ("c.csv", "c.html", "c.png", "p.csv", "p.html")}
    table = write_comparison(paths["lightgbm"], {"a": paths["a"], "b": paths["b"]}, out["c.csv"], out["c.html"],
                             out["c.png"], None, out["p.csv"], out["p.html"], fusion=paths["fusion"],
                             calibrations=cals, oofs={k: oofs[k] for k in ("a", "b", "lightgbm")})  # fmt: skip
    rows = table.set_index("model")
    assert rows.loc["fusion", "family"] == "fusion" and rows.loc["fusion", "ece_calibrated"] == 0.1
    assert rows.loc["LightGBM (EP features)", "temperature"] == 1.5 and rows["oof_balanced_accuracy"].notna().sum() == 3
    paired = pd.read_csv(out["p.csv"])
    assert paired["comparison"].unique().tolist() == ["best CNN - LightGBM", "fusion - best single model (b)",
                                                      "fusion - a", "fusion - b", "fusion - LightGBM"]  # fmt: skip
    assert (paired.loc[paired["comparison"] != "best CNN - LightGBM", "n_cells"] == 40).all()
