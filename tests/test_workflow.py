"""End-to-end: the Snakemake workflow on .test/config.yaml in a temporary directory.

One full run is shared by the tests below, which only read it: each incremental check is a
dry run with a changed config (written beside the folder) and reads which rules Snakemake
would run. A test that changes a run (touches, deletes, adds a target) works on its own copy
(``own_run``), so the tests pass in any order and alone.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pandas as pd
import pytest
import yaml

from conftest import DEFECT_REASONS, REPO, SNAKEMAKE, copy_run, smk, start_run

pytestmark = pytest.mark.slow


def planned_jobs(workdir: Path, config: dict) -> dict[str, int]:
    """Rule -> number of jobs a dry run would execute."""
    out = smk(workdir, "--dry-run", config=config).stdout
    stats = out.split("Job stats:")[-1] if "Job stats:" in out else ""
    return {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)\s*$", stats, re.M) if m[0] != "total"}


def cnn_jobs(config: dict) -> dict[str, int]:
    """The deep-learning jobs that re-run when everything upstream of the packed images changed."""
    archs = config.get("cnn", {}).get("architectures", [])
    if not archs:
        return {}
    rules = ("cnn_tune", "cnn_tune_gather", "cnn_train", "cnn_evaluate", "cnn_explain")  # one tuning worker
    return {"cnn_pack": 1, **{r: len(archs) for r in rules}}


def report_jobs(config: dict, cells: bool = False, baseline: bool = False, archs=()) -> dict[str, int]:
    """Report and cross-dataset jobs downstream of a change: to the cells (everything), the
    baseline's results, or some CNN architectures' results."""
    cross = config.get("cross_dataset", {})
    all_archs = config.get("cnn", {}).get("architectures", [])
    archs = all_archs if cells else list(archs)
    cross_archs = [a for a in archs if a in (cross.get("architectures") or all_archs)]
    jobs = {"report_comparison": 1}
    if cells:
        jobs["report_scalograms"] = 1
    if cells or baseline:
        jobs["report_shap"] = 1
    # Fusion and calibration: the baseline's out-of-fold refits, each changed model's calibration, and
    # the fusion (of every CNN and LightGBM on computed features) with its own calibration.
    lgbm = config.get("baseline", {}).get("features", "computed") == "computed"
    calibrate = len(archs)
    if lgbm and (cells or baseline):
        jobs["baseline_oof"] = 1
        calibrate += 1
    fused = len(all_archs) + lgbm >= 2
    if fused:
        jobs["fusion"] = 1
        calibrate += 1
    if calibrate:
        jobs["calibrate"] = calibrate
        jobs["report_model_card"] = calibrate  # one card per changed served model, with its calibration
    if cross.get("enabled"):
        if cells or baseline:
            jobs["cross_dataset_lgbm"] = 1
        if cross_archs:
            jobs["cross_dataset_cnn"] = len(cross_archs)
        if cells or baseline or cross_archs:
            jobs["cross_dataset_table"] = 1
    return jobs


@pytest.fixture(scope="module")
def base_config():
    return yaml.safe_load((REPO / ".test" / "config.yaml").read_text())


@pytest.fixture(scope="module")
def run(tmp_path_factory, base_config):
    """The finished run of .test/config.yaml; tests only read it."""
    return start_run(tmp_path_factory.mktemp("workflow"), base_config)


@pytest.fixture
def own_run(run, tmp_path):
    """A private copy of the finished run, for a test that changes it."""
    return copy_run(run, tmp_path / "run")


def test_manifest_and_outputs(run, base_config):
    from sts.synth import make_cohort

    s = base_config["synthetic"]
    cohort = make_cohort(s["n_cells"], s["seed"], s["defect_fraction"])
    manifest = pd.read_csv(run / "results" / "manifest.csv", dtype={"specimen_id": str}, keep_default_na=False)
    assert list(manifest.columns[:7]) == ["specimen_id", "dataset", "label", "status", "reason", "split", "fold"]
    assert set(manifest["specimen_id"]) == set(cohort["specimen_id"])
    by_id = manifest.set_index("specimen_id")
    for defect, reason in DEFECT_REASONS.items():
        ids = cohort.loc[cohort["defect"] == defect, "specimen_id"]
        assert len(ids), defect
        for sid in ids:
            assert by_id.loc[sid, "status"] == "excluded" and reason in by_id.loc[sid, "reason"], (defect, sid)
    ok = manifest[manifest["status"] == "ok"]
    assert len(ok) >= 0.7 * len(manifest)
    assert set(ok["split"]) == {"train", "test"}
    for sid in ok["specimen_id"]:
        with h5py.File(run / "results" / "scalograms" / f"{sid}.h5") as f:
            assert f["scalogram"].shape == (2, 180, 4800) and f["scalogram"].dtype == "float16"
            assert f["scalogram"].chunks == (1, 180, 4800) and f["scalogram"].compression is None
            assert f.attrs["wavelet"] == "mexh" and f.attrs["fs_hz"] == 4000
            assert f.attrs["freqs_hz"][0] == 20 and f.attrs["freqs_hz"][-1] == 200
    assert (run / "logs" / "select_sweeps").is_dir()


def test_baseline_outputs_match_manifest_holdout(run):
    from sts.trust.metrics import read_predictions

    manifest = pd.read_csv(run / "results" / "manifest.csv", dtype={"specimen_id": str}, keep_default_na=False)
    base = run / "results" / "baseline"
    preds, classes, proba = read_predictions(base / "predictions.csv")
    excluded = pd.read_csv(base / "excluded.csv", dtype={"specimen_id": str})
    holdout = set(manifest.loc[manifest["split"] == "test", "specimen_id"])
    assert set(preds["specimen_id"].astype(str)) | set(excluded.loc[excluded["split"] == "test", "specimen_id"]) == holdout
    assert (abs(proba.sum(axis=1) - 1) < 1e-6).all()
    shap = pd.read_csv(base / "shap_mean_abs.csv")
    assert shap.shape[1] == len(classes) + 1 and len(shap) > 5


def test_nothing_left_to_do(run, base_config):
    assert planned_jobs(run, base_config) == {}


def test_changing_frequencies_reruns_scalograms_not_selection(run, base_config):
    cfg = yaml.safe_load(yaml.safe_dump(base_config))
    cfg["scalogram"]["fmax_hz"] = 150
    jobs = planned_jobs(run, cfg)
    n_cells = len(list((run / "results" / "sweeps").glob("*.h5")))
    assert jobs == {"scalogram": n_cells, "manifest": 1, "baseline": 1, "all": 1, **cnn_jobs(base_config),
                    **report_jobs(base_config, cells=True)}  # fmt: skip


def test_changing_compression_reruns_scalograms_not_selection(run, base_config):
    """scalogram.compression goes through the rule's params; the model's preparation leaves it out."""
    cfg = yaml.safe_load(yaml.safe_dump(base_config))
    assert "compression" not in cfg["scalogram"]  # the schema's default, none
    n_cells = len(list((run / "results" / "sweeps").glob("*.h5")))
    cfg["scalogram"]["compression"] = "none"
    assert planned_jobs(run, cfg) == {}
    cfg["scalogram"]["compression"] = "gzip"
    assert planned_jobs(run, cfg) == {"scalogram": n_cells, "manifest": 1, "baseline": 1, "all": 1,
                                      **cnn_jobs(base_config), **report_jobs(base_config, cells=True)}  # fmt: skip


def test_changing_trials_per_gpu_reruns_nothing(run, base_config):
    """cnn.trials_per_gpu is how a search runs (a resource of cnn_tune), not what it finds."""
    cfg = yaml.safe_load(yaml.safe_dump(base_config))
    cfg["cnn"]["trials_per_gpu"] = 2
    assert planned_jobs(run, cfg) == {}


def test_changing_split_seed_reruns_only_manifest(run, base_config):
    cfg = yaml.safe_load(yaml.safe_dump(base_config))
    cfg["split"]["seed"] = 43
    assert planned_jobs(run, cfg) == {"manifest": 1, "baseline": 1, "all": 1, **cnn_jobs(base_config),
                                      **report_jobs(base_config, cells=True)}  # fmt: skip


def test_touching_one_nwb_reruns_only_that_cell(own_run, base_config):
    nwb = sorted((own_run / "results" / "nwb").glob("*.nwb"))[3]
    data = nwb.read_bytes()
    nwb.unlink()  # rewritten rather than touched: a file of its own, not the shared run's (hard link)
    nwb.write_bytes(data)
    assert planned_jobs(own_run, base_config) == {
        "select_sweeps": 1, "scalogram": 1, "manifest": 1, "ep_features": 1, "ep_features_table": 1,
        "baseline": 1, "all": 1, **cnn_jobs(base_config), **report_jobs(base_config, cells=True),
    }


def test_published_baseline_replaces_computed_features(run, base_config):
    cfg = yaml.safe_load(yaml.safe_dump(base_config))
    cfg["baseline"].update(features="published", reference_dir=str(REPO / "resources" / "paper"))
    assert planned_jobs(run, cfg) == {"baseline_published": 1, "all": 1, **report_jobs(cfg, baseline=True)}
    cfg["baseline"]["reference_dir"] = None
    proc = smk(run, "--dry-run", config=cfg, check=False)
    assert proc.returncode != 0 and "baseline.reference_dir is not set" in proc.stdout + proc.stderr


def test_kill_9_then_resume_gives_same_results(own_run):
    """12 cells' sweeps and scalograms lost; the run remaking them and the manifest killed while it
    runs, then resumed. (Their files are named as targets: Snakemake does not remake a lost
    intermediate file while what was made from it is up to date.)"""
    run, results = own_run, own_run / "results"
    before = (results / "manifest.csv").read_bytes()
    victims = sorted(results.glob("sweeps/*.h5"))[:12]
    reference = {}
    for p in victims:
        with h5py.File(results / "scalograms" / p.name) as f:
            reference[p.name] = f["scalogram"][()] if "scalogram" in f else None
    for p in victims:
        p.unlink()
        (results / "scalograms" / p.name).unlink()
    cfg = run / "config.yaml"
    targets = [f"results/scalograms/{p.name}" for p in victims] + ["results/manifest.csv"]
    proc = subprocess.Popen(
        SNAKEMAKE + ["--directory", str(run), "--configfile", str(cfg), "--cores", "2", *targets],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and sum((results / "sweeps" / p.name).exists() for p in victims) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sum((results / "sweeps" / p.name).exists() for p in victims)
    assert 0 < done < len(victims), f"{done} of {len(victims)} cells remade before the kill"
    smk(run, "--unlock")
    smk(run, "--cores", "2", "--rerun-incomplete", *targets)
    assert (results / "manifest.csv").read_bytes() == before
    assert all((results / "sweeps" / p.name).exists() for p in victims)
    for name, arr in reference.items():
        with h5py.File(results / "scalograms" / name) as f:
            if arr is None:
                assert "scalogram" not in f
            else:
                assert (f["scalogram"][()] == arr).all()
    assert not list(results.rglob(".*.tmp*")), "temporary files left behind"


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda c: c["cnn"].update(architectures=["mobilenet_v2", "inception_v3"]),
         "inception_v3 needs inputs of at least 75 px"),
        (lambda c: c["cross_dataset"].update(architectures=["densenet121"]), "are not in cnn.architectures"),
    ],
    ids=["inception_v3_too_small", "cross_dataset_arch_not_trained"],
)
def test_bad_config_is_rejected(tmp_path, base_config, edit, message):
    """What the schema cannot say stops the DAG build (schema rejections: test_config_checks.py)."""
    cfg = yaml.safe_load(yaml.safe_dump(base_config))
    edit(cfg)
    proc = smk(tmp_path, "--dry-run", config=cfg, check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


def test_cnn_outputs(run, base_config):
    import json

    import numpy as np
    import torch

    from sts.trust.metrics import read_predictions

    manifest = pd.read_csv(run / "results" / "manifest.csv", dtype={"specimen_id": str}, keep_default_na=False)
    holdout = set(manifest.loc[(manifest["status"] == "ok") & (manifest["split"] == "test"), "specimen_id"])
    classes = base_config["classes"]
    for arch in base_config["cnn"]["architectures"]:
        models, tuning = run / "results" / "models" / arch, run / "results" / "tuning" / arch
        best = json.loads((tuning / "best_params.json").read_text())
        assert best["arch"] == arch and len(best["fold_scores"]) == base_config["split"]["n_folds"]
        assert len(pd.read_csv(tuning / "trials.csv")) == base_config["cnn"]["trials"]
        metrics = json.loads((models / "metrics.json").read_text())
        assert metrics["classes"] == classes and metrics["n_test"] == len(holdout)
        preds, pred_classes, _ = read_predictions(models / "predictions.csv")
        assert pred_classes == classes and set(preds["specimen_id"].astype(str)) == holdout
        meta = torch.load(models / "model.pt", weights_only=True)
        assert meta["arch"] == arch and meta["classes"] == classes
        assert meta["input_size"] == [base_config["cnn"]["input_size"]] * 2
        assert meta["preparation"] == {"sweeps": base_config["sweeps"], "scalogram": base_config["scalogram"]}
        assert meta["scalogram_dtype"] == meta["image_dtype"] == "float16"  # what sts predict rounds to
        n_train = len(manifest[(manifest["status"] == "ok") & (manifest["split"] == "train")])
        with np.load(tuning / "ood_folds.npz", allow_pickle=False) as folds:  # the best trial's, made into the threshold
            assert int(folds["trial"]) == best["trial"] and int(folds["n_folds"]) == base_config["split"]["n_folds"]
        assert meta["ood"]["threshold_source"] == "out_of_fold" and meta["ood"]["n_threshold"] == n_train
        with h5py.File(models / "saliency.h5") as f:
            assert f["saliency"].shape == (len(classes), 2, 180, 4800)
        for png in ("confusion_matrix.png", "training_curves.png", "saliency.png"):
            assert (models / png).stat().st_size > 0


def test_changing_one_architecture_reruns_only_it(run, base_config):
    cfg = yaml.safe_load(yaml.safe_dump(base_config))
    cfg["cnn"]["overrides"] = {"resnet18": {"max_epochs": 2}}
    per_arch = {"cnn_tune": 1, "cnn_tune_gather": 1, "cnn_train": 1, "cnn_evaluate": 1, "cnn_explain": 1, "all": 1,
                **report_jobs(cfg, archs=["resnet18"])}  # fmt: skip
    assert planned_jobs(run, cfg) == per_arch
    cfg["cnn"]["overrides"] = {"resnet18": {"input_size": 40}}
    assert planned_jobs(run, cfg) == {"cnn_pack": 1, **per_arch}
    cfg = yaml.safe_load(yaml.safe_dump(base_config))
    cfg["cnn"]["seed"] = 1
    every = report_jobs(cfg, archs=cfg["cnn"]["architectures"])
    assert planned_jobs(run, cfg) == {k: 2 for k in per_arch if k.startswith("cnn_")} | every | {"all": 1}


def test_predict_reproduces_the_holdout_evaluation(run, base_config, tmp_path):
    """Train/serve parity: `sts predict` on the holdout cells' raw NWB files, prepared from the saved
    model alone (each CNN's model.pt, the LightGBM model, the fusion running every member), gives the
    evaluation step's probabilities, temperature-scaled by the calibration.json beside the model, and
    its predictions."""
    import numpy as np

    from sts.trust.metrics import read_predictions

    manifest = pd.read_csv(run / "results" / "manifest.csv", dtype={"specimen_id": str}, keep_default_na=False)
    holdout = manifest.loc[(manifest["status"] == "ok") & (manifest["split"] == "test"), "specimen_id"]
    files = [str(run / "results" / "nwb" / f"{sid}.nwb") for sid in holdout]
    models = {arch: run / "results" / "models" / arch / "model.pt" for arch in base_config["cnn"]["architectures"]}
    models |= {"lightgbm": run / "results" / "baseline" / "model", "fusion": run / "results" / "fusion" / "model.json"}
    spread = []
    for name, model in models.items():
        out = tmp_path / f"{name}.csv"
        cmd = [sys.executable, "-m", "sts.cli", "predict", "--model", str(model), "--out", str(out), "--device", "cpu",
               *files]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True)
        folder = model if model.is_dir() else model.parent
        evaluated, classes, proba = read_predictions(folder / "predictions_calibrated.csv")
        served = pd.read_csv(out, dtype={"specimen_id": str}).set_index("specimen_id")
        served = served.loc[evaluated["specimen_id"].astype(str)]
        assert (served["status"] == "ok").all() and served["calibrated"].all(), name
        p_cols = [f"p_{c}" for c in classes]
        assert [c for c in served.columns if c.startswith("p_")] == p_cols
        diff = np.abs(served[p_cols].to_numpy() - proba).max()
        print(f"{name}: max |served - evaluated| calibrated probability {diff:.3g} ({len(evaluated)} cells)")
        assert diff <= 1e-4, name
        assert served["predicted"].tolist() == evaluated["predicted"].tolist(), name
        if name in base_config["cnn"]["architectures"]:  # the CNNs' own out-of-distribution scores
            ood = pd.read_csv(folder / "ood_holdout.csv", dtype={"specimen_id": str}).set_index("specimen_id")
            assert np.abs(served["ood_score"] - ood.loc[served.index, "ood_score"]).max() <= 1e-3, name
        spread.append(proba.std(axis=0).max())
    assert max(spread) > 1e-3, "every model gives the same probabilities to all cells: parity says little"


def test_fusion_and_calibration_never_fit_on_holdout_cells(run, base_config):
    """The fusion's training rows and every calibration's fit rows are training cells; the holdout
    scores cover exactly the holdout cells every member predicted."""
    import json

    manifest = pd.read_csv(run / "results" / "manifest.csv", dtype={"specimen_id": str}, keep_default_na=False)
    ok = manifest[manifest["status"] == "ok"]
    train, holdout = set(ok.loc[ok["split"] == "train", "specimen_id"]), set(ok.loc[ok["split"] == "test", "specimen_id"])
    oof = {a: run / f"results/tuning/{a}/oof_best.csv" for a in base_config["cnn"]["architectures"]}
    oof |= {"lightgbm": run / "results/baseline/oof.csv", "fusion": run / "results/fusion/oof.csv"}
    folders = {a: run / f"results/models/{a}" for a in base_config["cnn"]["architectures"]}
    folders |= {"lightgbm": run / "results/baseline/model", "fusion": run / "results/fusion"}
    for name, path in oof.items():
        fit_ids = set(pd.read_csv(path, dtype={"specimen_id": str})["specimen_id"])
        assert fit_ids and fit_ids <= train and not fit_ids & holdout, name
        cal = json.loads((folders[name] / "calibration.json").read_text())
        assert cal["n_fit"] == len(fit_ids) and cal["temperature"] > 0, name
        assert set(cal["holdout"]) == {"before", "after"}, name
    fused = pd.read_csv(run / "results/fusion/predictions.csv", dtype={"specimen_id": str})
    excluded = pd.read_csv(run / "results/fusion/excluded.csv", dtype={"specimen_id": str})
    assert set(fused["specimen_id"]) == holdout - set(excluded["specimen_id"])
    model = json.loads((run / "results/fusion/model.json").read_text())
    assert [m["name"] for m in model["members"]] == [*base_config["cnn"]["architectures"], "lightgbm"]


def test_predict_target(own_run, base_config):
    """config predict: {inputs, model} adds one job writing results/predictions/{arch}.csv and figures."""
    import shutil

    run = own_run
    manifest = pd.read_csv(run / "results" / "manifest.csv", dtype={"specimen_id": str}, keep_default_na=False)
    ok = manifest.loc[manifest["status"] == "ok", "specimen_id"].iloc[:2].tolist()
    bad = manifest.loc[manifest["reason"].str.contains("no long-square sweeps"), "specimen_id"].iloc[:1].tolist()
    new = run / "new_cells"
    new.mkdir(exist_ok=True)
    for sid in ok + bad:
        shutil.copy(run / "results" / "nwb" / f"{sid}.nwb", new / f"{sid}.nwb")
    cfg = yaml.safe_load(yaml.safe_dump(base_config))
    cfg["predict"] = {"inputs": "new_cells", "model": "resnet18"}
    assert planned_jobs(run, cfg) == {"predict": 1, "all": 1}
    smk(run, "--cores", "2", config=cfg)
    table = pd.read_csv(run / "results" / "predictions" / "resnet18.csv", dtype={"specimen_id": str})
    assert table["specimen_id"].tolist() == sorted(ok + bad)
    assert dict(zip(table["specimen_id"], table["status"])) == {**{s: "ok" for s in ok}, bad[0]: "excluded"}
    figures = sorted(p.name for p in (run / "results" / "predictions" / "resnet18_figures").glob("*.png"))
    assert figures == sorted(f"{s}.png" for s in ok)
    assert (run / "logs" / "predict" / "resnet18.log").exists()
    cfg["predict"]["model"] = "densenet121"  # an architecture name, but nothing trains it
    cfg.pop("cnn")
    proc = smk(run, "--dry-run", config=cfg, check=False)
    assert proc.returncode != 0 and "no cnn: block" in proc.stdout + proc.stderr


def test_report_html_has_every_figure_and_the_metrics(run, base_config, tmp_path):
    """`snakemake --report` embeds every category's files; the comparison table is the metrics.json files."""
    import base64
    import json

    from sts.baseline.explain import class_filename

    smk(run, "--report", str(tmp_path / "report.html"))  # beside the run, which stays as it was
    html = (tmp_path / "report.html").read_text()
    categories = json.loads(re.search(r"var categories = (\{.*?\});\n", html).group(1))
    results = json.loads(re.search(r"var results = (\{.*?\});\n", html).group(1))
    archs = base_config["cnn"]["architectures"]
    assert set(categories) == {"Data", "Baseline", "Comparison", "Fusion", "Calibration", "Model cards",
                               *(f"CNN {a}" for a in archs)}  # fmt: skip
    assert categories["Fusion"] == {"Holdout": ["results/fusion/confusion_matrix.png"]}
    folders = [*(f"results/models/{a}" for a in archs), "results/baseline/model", "results/fusion"]
    assert categories["Calibration"] == {d: [f"{d}/reliability.png"] for d in folders}
    assert categories["Model cards"] == {m: [f"results/report/model_cards/{m}.html"] for m in ["lightgbm", *archs, "fusion"]}
    assert sorted(categories["Data"]["Example scalograms"]) == sorted(
        f"results/report/scalograms/{class_filename(c)}.png" for c in base_config["classes"]
    )
    assert categories["Baseline"] == {"Holdout": ["results/baseline/confusion_matrix.png"],
                                      "SHAP": ["results/report/shap_top5.html", "results/report/shap_top5.png"]}  # fmt: skip
    for arch in archs:
        assert categories[f"CNN {arch}"] == {
            "Training": [f"results/models/{arch}/training_curves.png"],
            "Holdout": [f"results/models/{arch}/confusion_matrix.png"],
            "Saliency": [f"results/models/{arch}/saliency.png"],
        }
    assert set(categories["Comparison"]) == {"Holdout scores", "Cross-dataset"}
    embedded = {path: base64.b64decode(r["data_uri"].split("base64,", 1)[1]) for path, r in results.items()}
    for path, data in embedded.items():  # self-contained: every file's bytes are in the HTML
        assert data == (run / path).read_bytes(), path

    table = pd.read_csv(run / "results" / "report" / "comparison.csv", float_precision="round_trip")
    expected = {"LightGBM (EP features)": "results/baseline/metrics.json",
                **{a: f"results/models/{a}/metrics.json" for a in archs}}  # fmt: skip
    rows = table.set_index("model")
    page = embedded["results/report/comparison.html"].decode()
    for model, path in expected.items():
        metrics = json.loads((run / path).read_text())
        assert rows.loc[model, "metrics_file"] == path
        for key in ("balanced_accuracy", "weighted_f1", "accuracy", "n_test"):
            assert rows.loc[model, key] == metrics[key], (model, key)
        for key in ("balanced_accuracy", "weighted_f1"):  # the bootstrap interval stored with the scores
            ci = metrics["bootstrap"][key]
            assert (rows.loc[model, f"{key}_low"], rows.loc[model, f"{key}_high"]) == (ci["low"], ci["high"])
        assert f"{metrics['balanced_accuracy']:.3f}" in page and f"{metrics['weighted_f1']:.3f}" in page
    cv = {a: json.loads((run / f"results/tuning/{a}/best_params.json").read_text())["cv_balanced_accuracy"]
          for a in archs}  # fmt: skip
    best = max(archs, key=cv.get)  # by CV, never by the holdout
    assert rows.loc[f"best CNN ({best})", "balanced_accuracy"] == rows.loc[best, "balanced_accuracy"]
    paired = pd.read_csv(run / "results" / "report" / "paired_difference.csv")
    comparisons = paired["comparison"].unique().tolist()
    assert comparisons[0] == f"best CNN ({best}) - LightGBM" and comparisons[1].startswith("fusion - best single model")
    assert comparisons[2:] == [f"fusion - {m}" for m in [*archs, "LightGBM"]]
    assert rows.loc["fusion", "metrics_file"] == "results/fusion/metrics.json"
    assert rows[["ece", "ece_calibrated", "temperature"]].notna().all().all()
    assert ((paired["low"] <= paired["difference"]) & (paired["difference"] <= paired["high"])).all()
    assert "results/report/paired_difference.html" in embedded
    assert rows.loc[f"best CNN ({best})", "published_balanced_accuracy"] == 0.905
    assert rows.loc["LightGBM (EP features)", "published_weighted_f1"] == 0.890
    shap = pd.read_csv(run / "results" / "report" / "shap_top5.csv")
    mean_abs = pd.read_csv(run / "results" / "baseline" / "shap_mean_abs.csv").set_index("feature")
    for cls, top in shap.groupby("class"):
        assert top["feature"].tolist() == mean_abs[cls].nlargest(5).index.tolist()


def test_cross_dataset_table(run, base_config):
    """Both directions per model; scores recomputed by scikit-learn from the saved predictions."""
    from sklearn.metrics import balanced_accuracy_score, f1_score

    from sts.trust.metrics import read_predictions

    table = pd.read_csv(run / "results" / "cross_dataset.csv", keep_default_na=False, na_values=[""])
    archs = base_config["cross_dataset"].get("architectures") or base_config["cnn"]["architectures"]
    models = ["lightgbm", *archs]
    assert list(zip(table["model"], table["train_dataset"], table["test_dataset"])) == [
        (m, a, b) for m in models for a, b in (("clamp", "seq"), ("seq", "clamp"))
    ]
    manifest = pd.read_csv(run / "results" / "manifest.csv", dtype={"specimen_id": str}, keep_default_na=False)
    ok = manifest[manifest["status"] == "ok"]
    usable = {ds: set(ok.loc[ok["dataset"] == ds, "specimen_id"]) for ds in ("clamp", "seq")}
    computed = table[table["reason"].fillna("") == ""]
    assert set(computed["model"]) >= set(archs), table
    for r in table.itertuples(index=False):
        if r.model != "lightgbm":  # CNNs use every usable cell (LightGBM: those with EP features)
            assert (r.n_train, r.n_test) == (len(usable[r.train_dataset]), len(usable[r.test_dataset]))
        folder = run / "results" / "cross_dataset" / r.model / f"{r.train_dataset}_to_{r.test_dataset}"
        if isinstance(r.reason, str) and r.reason:
            assert pd.isna(r.balanced_accuracy) and not folder.exists()
            continue
        preds, classes, _ = read_predictions(folder / "predictions.csv")
        assert len(preds) == r.n_test and set(preds["specimen_id"]) <= usable[r.test_dataset]
        assert r.balanced_accuracy == pytest.approx(balanced_accuracy_score(preds["label"], preds["predicted"]))
        assert r.weighted_f1 == pytest.approx(
            f1_score(preds["label"], preds["predicted"], labels=classes, average="weighted", zero_division=0)
        )
