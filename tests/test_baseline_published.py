"""The paper's LightGBM baseline on the published EP features and exact split (resources/paper,
the same tables as ../shared/reference).

End to end through ``sts baseline-published``: a short seeded Optuna search (CV on training
cells only), one holdout evaluation, SHAP. The bar: holdout balanced accuracy >= 0.90 and
weighted F1 >= 0.895 (the paper reports weighted F1 0.890).
"""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from conftest import REPO, check_against_sklearn

REFERENCE = REPO / "resources" / "paper"  # the study's tables, shipped with their attribution
CLASSES = ["Excitatory", "Pvalb", "Sst", "Vip/Lamp5"]
TEST_COUNTS = {"Sst": 386, "Vip/Lamp5": 359, "Pvalb": 213, "Excitatory": 160}
# CI settings: 10 trials (the command's default is 50), the 3 folds of a trial side by side (one
# LightGBM thread each): ~50 s on 2 cores. Measured: 10 trials, holdout balanced accuracy 0.9145 and
# weighted F1 0.9078; 30 trials 0.9163 / 0.9114.
TRIALS = 10
CI_ARGS = ["--trials", str(TRIALS), "--seed", "0", "--jobs", "2"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from sts.cli import main

    out = tmp_path_factory.mktemp("baseline_published")
    assert main(["baseline-published", str(REFERENCE), str(out), *CI_ARGS]) == 0
    return out


def test_load_published_split():
    from sts.baseline.published import load_published

    data = load_published(REFERENCE)
    assert len(data.features) == 16 and "f_i_curve_slope" in data.features
    assert all(c.endswith("long_square") or c in ("adaptation", "avg_isi", "latency", "f_i_curve_slope")
               for c in data.features)  # fmt: skip
    assert data.test.y.value_counts().to_dict() == TEST_COUNTS
    assert len(data.train) == 4472 and data.train.dataset.value_counts().to_dict() == {
        "Seq": 3374,
        "Clamp": 1098,
    }
    assert data.excluded.empty
    assert not set(data.train.specimen_id) & set(data.test.specimen_id)
    assert list(data.test.X.columns) == data.features and data.test.X.dtypes.eq(float).all()


def test_excluded_cells_are_reported(tmp_path):
    from sts.baseline.published import FILES, load_published

    for name in FILES.values():
        shutil.copy(REFERENCE / name, tmp_path / name)
    test = pd.read_csv(REFERENCE / FILES["test"], header=None, skipinitialspace=True)
    extra = pd.DataFrame({0: [111, 222, int(test.iloc[0, 0])], 1: ["Clamp", "Seq", test.iloc[0, 1]]})
    pd.concat([test, extra]).to_csv(tmp_path / FILES["test"], header=False, index=False)
    unsure = int(test.iloc[1, 0])
    labels = pd.read_csv(REFERENCE / FILES["labels"], sep=" ", header=None)
    labels.loc[labels[1] == unsure, 0] = "Unsure"
    labels.to_csv(tmp_path / FILES["labels"], sep=" ", header=False, index=False)
    data = load_published(tmp_path)
    reasons = data.excluded.set_index("specimen_id")["reason"]
    assert reasons[111] == f"not in {FILES['Clamp']}"
    assert reasons[222] == f"not in {FILES['Seq']}"
    assert reasons[int(test.iloc[0, 0])] == "duplicate in split file"
    assert reasons[unsure] == "label Unsure"
    assert (
        len(data.excluded) == 4 and len(data.test) == 1117 and sum(data.summary()["excluded"].values()) == 4
    )


@pytest.mark.slow
def test_holdout_reaches_bar(run_dir):
    metrics = check_against_sklearn(run_dir)
    ba, f1 = metrics["balanced_accuracy"], metrics["weighted_f1"]
    print(f"holdout: balanced accuracy {ba:.4f}, weighted F1 {f1:.4f}")
    assert metrics["classes"] == CLASSES and metrics["n_test"] == 1118
    assert {c: metrics["per_class"][c]["support"] for c in CLASSES} == TEST_COUNTS
    assert ba >= 0.90
    assert f1 >= 0.895


@pytest.mark.slow
def test_search_outputs(run_dir):
    search = json.loads((run_dir / "search.json").read_text())
    assert search["n_trials"] == TRIALS and len(search["trials"]) == TRIALS
    assert 0.85 < search["best_cv_balanced_accuracy"] < 1 and search["wall_s"] > 0
    params = json.loads((run_dir / "best_params.json").read_text())
    assert {"num_leaves", "learning_rate", "n_estimators", "class_weight"} <= set(params)
    features = json.loads((run_dir / "features.json").read_text())
    assert len(features["features"]) == 16 and features["test"] == dict(sorted(TEST_COUNTS.items()))
    assert (run_dir / "excluded.csv").exists()


@pytest.mark.slow
def test_shap_outputs(run_dir):
    table = pd.read_csv(run_dir / "shap_mean_abs.csv", index_col="feature")
    features = json.loads((run_dir / "features.json").read_text())["features"]
    assert list(table.columns) == CLASSES and list(table.index) == features
    assert table.shape == (16, 4) and (table.to_numpy() >= 0).all() and (table.sum() > 0).all()
    for cls in ("Excitatory", "Pvalb", "Sst", "Vip-Lamp5"):
        assert (run_dir / f"shap_beeswarm_{cls}.png").stat().st_size > 5000


@pytest.mark.slow
def test_search_resumes(run_dir, tmp_path):
    """A finished study is reloaded from its journal: no new trials, same best parameters."""
    from sts.baseline.lgbm import search
    from sts.baseline.published import load_published

    data = load_published(REFERENCE)
    shutil.copy(run_dir / "optuna_journal.log", tmp_path / "journal.log")
    name = json.loads((run_dir / "search.json").read_text())["study"]
    result = search(data.train.X, data.train.y, n_trials=TRIALS, seed=0, storage=tmp_path / "journal.log",
                    study_name=name)  # fmt: skip
    assert result.n_trials == TRIALS
    assert result.best_params == json.loads((run_dir / "best_params.json").read_text())
