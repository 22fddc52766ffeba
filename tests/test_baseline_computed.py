import json

import numpy as np
import optuna
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


N_CELLS = 120  # LightGBM's default min_child_samples (20) needs more than a few dozen cells


def two_class_tables(root, seed: int = 0) -> list[str]:
    """A manifest (90 training, 30 holdout cells) and a features table where f_good separates
    the two classes; returns the specimen ids."""
    rng = np.random.default_rng(seed)
    n = N_CELLS
    label = np.array(["Zeta", "Alpha"])[np.arange(n) % 2]
    ids = [f"c{k:03d}" for k in range(n)]
    split = np.where(np.arange(n) < 90, "train", "test")
    pd.DataFrame({"specimen_id": ids, "dataset": "local", "label": label, "status": "ok", "reason": "",
                  "split": split, "fold": np.where(split == "train", np.arange(n) % 3, -1)}).to_csv(
        root / "m.csv", index=False)  # fmt: skip
    signal = (label == "Zeta") * 3.0 + rng.normal(size=n)
    pd.DataFrame({"specimen_id": ids, "dataset": "local", "label": label, "status": "ok", "reason": "",
                  "f_good": signal, "f_noise": rng.normal(size=n)}).to_csv(root / "f.csv", index=False)  # fmt: skip
    return ids


def test_two_classes_and_configured_class_order(tmp_path):
    """LightGBM with 2 classes (a 'multiclass' objective fails there) and metrics in config order."""
    from sts.baseline.computed import load_computed
    from sts.baseline.flow import BaselineSettings, run_baseline
    from sts.trust.metrics import read_predictions

    ids = two_class_tables(tmp_path)
    metrics = run_baseline(load_computed(tmp_path / "f.csv", tmp_path / "m.csv"), tmp_path / "out",
                           BaselineSettings(trials=2, jobs=1), classes=["Zeta", "Alpha"])  # fmt: skip
    assert metrics["classes"] == ["Zeta", "Alpha"] and metrics["n_test"] == 30
    assert metrics["balanced_accuracy"] >= 0.8  # the feature separates the classes
    preds, classes, proba = read_predictions(tmp_path / "out" / "predictions.csv")
    assert classes == ["Zeta", "Alpha"] and preds["specimen_id"].tolist() == ids[90:]
    zeta = (preds["label"] == "Zeta").to_numpy()
    assert proba[zeta, 0].mean() > proba[~zeta, 0].mean()  # columns follow the configured order
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["per_class"]["Zeta"]["support"] == 15


def test_changed_features_start_a_new_search(tmp_path):
    """A re-run in the same folder resumes its own study, but changed features (or search
    settings) start a new one: old trials are never reused for other inputs."""
    from sts.baseline.computed import load_computed
    from sts.baseline.flow import JOURNAL, BaselineSettings, run_baseline

    out, settings = tmp_path / "out", BaselineSettings(trials=2, jobs=1)

    def run(seed: int, s=settings) -> dict:
        two_class_tables(tmp_path, seed)
        run_baseline(load_computed(tmp_path / "f.csv", tmp_path / "m.csv"), out, s)
        return json.loads((out / "search.json").read_text())

    def studies() -> dict[str, int]:
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / JOURNAL)))
        return {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}

    first = run(0)
    assert studies() == {first["study"]: 2}
    again = run(0)  # same inputs: the finished study is reloaded, no new trials
    assert again["study"] == first["study"] and studies() == {first["study"]: 2}
    changed = run(1)  # other feature values: a study of its own, with its own 2 trials
    assert changed["study"] != first["study"] and changed["n_trials"] == 2
    assert studies() == {first["study"]: 2, changed["study"]: 2}
    more = run(1, BaselineSettings(trials=3, jobs=1))  # more trials extend the same study
    assert more["study"] == changed["study"] and studies()[changed["study"]] == 3
    other = run(1, BaselineSettings(trials=2, jobs=1, folds=2))  # other search settings: a new study
    assert other["study"] not in (first["study"], changed["study"])
