import pandas as pd

from sts.baseline.computed import join_features


def test_join_keeps_split_and_lists_cells_without_features(tmp_path):
    (tmp_path / "m.csv").write_text(
        "specimen_id,dataset,label,status,reason,split,fold\n"
        "1,seq,Sst,ok,,train,0\n2,seq,Pvalb,ok,,test,-1\n3,seq,Sst,ok,,train,1\n"
        "4,seq,Sst,excluded,label Unsure,,-1\n5,seq,Pvalb,ok,,test,-1\n"
    )
    (tmp_path / "f.csv").write_text(
        "specimen_id,dataset,label,status,reason,avg_isi,tau,empty\n"
        "1,seq,Sst,ok,,10.5,20,\n2,seq,Pvalb,ok,,,15,\n3,seq,Sst,excluded,no spiking sweep in x.nwb,,,\n"
        "4,seq,Sst,ok,,1,1,\n"
    )
    rows, excluded, columns = join_features(tmp_path / "f.csv", tmp_path / "m.csv")
    assert list(rows["specimen_id"]) == ["1", "2"] and list(rows["split"]) == ["train", "test"]
    assert columns == ["avg_isi", "tau"]  # all-NaN column dropped; NaN values kept, not imputed
    assert pd.isna(rows.loc[1, "avg_isi"])
    reasons = dict(zip(excluded["specimen_id"], excluded["reason"]))
    assert reasons == {"3": "no spiking sweep in x.nwb", "5": "no EP features for this cell"}


def test_two_classes_and_configured_class_order(tmp_path):
    """LightGBM with 2 classes (a 'multiclass' objective fails there) and metrics in config order."""
    import json

    import numpy as np

    from sts.baseline.computed import load_computed
    from sts.baseline.flow import BaselineSettings, run_baseline
    from sts.metrics import read_predictions

    rng = np.random.default_rng(0)
    n = 120  # LightGBM's default min_child_samples (20) needs more than a few dozen cells
    label = np.array(["Zeta", "Alpha"])[np.arange(n) % 2]
    ids = [f"c{k:03d}" for k in range(n)]
    split = np.where(np.arange(n) < 90, "train", "test")
    pd.DataFrame({"specimen_id": ids, "dataset": "local", "label": label, "status": "ok", "reason": "",
                  "split": split, "fold": np.where(split == "train", np.arange(n) % 3, -1)}).to_csv(
        tmp_path / "m.csv", index=False)  # fmt: skip
    signal = (label == "Zeta") * 3.0 + rng.normal(size=n)
    pd.DataFrame({"specimen_id": ids, "dataset": "local", "label": label, "status": "ok", "reason": "",
                  "f_good": signal, "f_noise": rng.normal(size=n)}).to_csv(tmp_path / "f.csv", index=False)  # fmt: skip
    metrics = run_baseline(load_computed(tmp_path / "f.csv", tmp_path / "m.csv"), tmp_path / "out",
                           BaselineSettings(trials=2, jobs=1), classes=["Zeta", "Alpha"])  # fmt: skip
    assert metrics["classes"] == ["Zeta", "Alpha"] and metrics["n_test"] == 30
    assert metrics["balanced_accuracy"] >= 0.8  # the feature separates the classes
    preds, classes, proba = read_predictions(tmp_path / "out" / "predictions.csv")
    assert classes == ["Zeta", "Alpha"] and preds["specimen_id"].tolist() == ids[90:]
    zeta = (preds["label"] == "Zeta").to_numpy()
    assert proba[zeta, 0].mean() > proba[~zeta, 0].mean()  # columns follow the configured order
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["per_class"]["Zeta"]["support"] == 15
