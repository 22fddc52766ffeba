"""End-to-end: the Snakemake workflow on .test/config.yaml in a temporary directory.

One full run is shared by the tests below; each incremental check is a dry run with a
changed config and reads which rules Snakemake would run.
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

from conftest import DEFECT_REASONS, REPO

pytestmark = pytest.mark.slow
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]


def smk(workdir: Path, *args: str, config: dict | None = None, check=True) -> subprocess.CompletedProcess:
    cfg = workdir / "config.yaml"
    if config is not None:
        cfg.write_text(yaml.safe_dump(config))
    cmd = SNAKEMAKE + ["--directory", str(workdir), "--configfile", str(cfg), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


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
    return {"cnn_pack": 1, **{r: len(archs) for r in ("cnn_tune", "cnn_train", "cnn_evaluate", "cnn_explain")}}


@pytest.fixture(scope="module")
def base_config():
    return yaml.safe_load((REPO / ".test" / "config.yaml").read_text())


@pytest.fixture(scope="module")
def run(tmp_path_factory, base_config):
    workdir = tmp_path_factory.mktemp("workflow")
    smk(workdir, "--cores", "2", config=base_config)
    return workdir


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
            assert f["scalogram"].shape == (2, 180, 4800) and f["scalogram"].dtype == "float32"
            assert f.attrs["wavelet"] == "mexh" and f.attrs["fs_hz"] == 4000
            assert f.attrs["freqs_hz"][0] == 20 and f.attrs["freqs_hz"][-1] == 200
    assert (run / "logs" / "select_sweeps").is_dir()


def test_baseline_outputs_match_manifest_holdout(run):
    from sts.metrics import read_predictions

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
    assert jobs == {"scalogram": n_cells, "manifest": 1, "baseline": 1, "all": 1, **cnn_jobs(base_config)}


def test_changing_split_seed_reruns_only_manifest(run, base_config):
    cfg = yaml.safe_load(yaml.safe_dump(base_config))
    cfg["split"]["seed"] = 43
    assert planned_jobs(run, cfg) == {"manifest": 1, "baseline": 1, "all": 1, **cnn_jobs(base_config)}


def test_touching_one_nwb_reruns_only_that_cell(run, base_config):
    nwb = sorted((run / "results" / "nwb").glob("*.nwb"))[3]
    os.utime(nwb)
    try:
        assert planned_jobs(run, base_config) == {
            "select_sweeps": 1, "scalogram": 1, "manifest": 1, "ep_features": 1, "ep_features_table": 1,
            "baseline": 1, "all": 1, **cnn_jobs(base_config),
        }
    finally:
        smk(run, "--cores", "2", config=base_config)


def test_published_baseline_replaces_computed_features(run, base_config):
    from conftest import SHARED

    cfg = yaml.safe_load(yaml.safe_dump(base_config))
    cfg["baseline"].update(features="published", reference_dir=str(SHARED / "reference"))
    try:
        assert planned_jobs(run, cfg) == {"baseline_published": 1, "all": 1}
        cfg["baseline"]["reference_dir"] = None
        proc = smk(run, "--dry-run", config=cfg, check=False)
        assert proc.returncode != 0 and "baseline.reference_dir is not set" in proc.stdout + proc.stderr
    finally:  # later tests run with the run folder's config.yaml
        (run / "config.yaml").write_text(yaml.safe_dump(base_config))


def test_kill_9_then_resume_gives_same_results(run, base_config):
    results = run / "results"
    before = (results / "manifest.csv").read_bytes()
    victims = sorted(results.glob("sweeps/*.h5"))[:12]
    reference = {}
    for p in victims:
        with h5py.File(results / "scalograms" / p.name) as f:
            reference[p.name] = f["scalogram"][()] if "scalogram" in f else None
    for p in victims:
        p.unlink()
    cfg = run / "config.yaml"
    proc = subprocess.Popen(
        SNAKEMAKE + ["--directory", str(run), "--configfile", str(cfg), "--cores", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and sum((results / "sweeps" / p.name).exists() for p in victims) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert sum((results / "sweeps" / p.name).exists() for p in victims) < len(victims), "run finished before kill"
    smk(run, "--unlock")
    smk(run, "--cores", "2", "--rerun-incomplete")
    assert (results / "manifest.csv").read_bytes() == before
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
        (lambda c: c.update(colour="blue"), "colour"),
        (lambda c: c["scalogram"].update(n_freqs="many"), "many"),
        (lambda c: c["split"].update(test_fraction=1.5), "1.5"),
        (lambda c: c.update(cohort="martian"), "martian"),
        (lambda c: c["cnn"].update(architectures=["resnet18", "vgg16"]), "vgg16"),
        (lambda c: c["cnn"].update(architectures=["inception_v3"]), "inception_v3 needs inputs of at least 75 px"),
    ],
)
def test_bad_config_is_rejected(tmp_path, base_config, edit, message):
    cfg = yaml.safe_load(yaml.safe_dump(base_config))
    edit(cfg)
    proc = smk(tmp_path, "--dry-run", config=cfg, check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


def test_cnn_outputs(run, base_config):
    import json

    import torch

    from sts.metrics import read_predictions

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
        meta = torch.load(models / "model.pt", weights_only=False)
        assert meta["arch"] == arch and meta["classes"] == classes
        assert meta["input_size"] == [base_config["cnn"]["input_size"]] * 2
        assert meta["preparation"] == {"sweeps": base_config["sweeps"], "scalogram": base_config["scalogram"]}
        with h5py.File(models / "saliency.h5") as f:
            assert f["saliency"].shape == (len(classes), 2, 180, 4800)
        for png in ("confusion_matrix.png", "training_curves.png", "saliency.png"):
            assert (models / png).stat().st_size > 0


def test_changing_one_architecture_reruns_only_it(run, base_config):
    cfg = yaml.safe_load(yaml.safe_dump(base_config))
    cfg["cnn"]["overrides"] = {"resnet18": {"max_epochs": 2}}
    per_arch = {"cnn_tune": 1, "cnn_train": 1, "cnn_evaluate": 1, "cnn_explain": 1, "all": 1}
    assert planned_jobs(run, cfg) == per_arch
    cfg["cnn"]["overrides"] = {"resnet18": {"input_size": 40}}
    assert planned_jobs(run, cfg) == {"cnn_pack": 1, **per_arch}
    cfg = yaml.safe_load(yaml.safe_dump(base_config))
    cfg["cnn"]["seed"] = 1
    assert planned_jobs(run, cfg) == {k: 2 for k in per_arch if k != "all"} | {"all": 1}
