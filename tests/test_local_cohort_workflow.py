"""End-to-end: `cohort: local` — a CSV of the users' own files (Allen NWB v1, MIES NWB 2, ABF with
and without a command waveform) with 3 configured classes and bad rows of every kind, through
sweep selection, scalograms, EP features, manifest, LightGBM and one CNN (to their evaluations).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pandas as pd
import pytest
import yaml

from abf_data import FS_HZ, STEP_S, SWEEP_S, simulate_ladder, write_abf1, write_abf1_epochs
from conftest import REPO, smk, start_run

pytestmark = pytest.mark.slow
MODELS = {"FS": "Pvalb", "LTS": "Sst", "RS": "Excitatory"}  # configured class -> synthetic physiology
CLASSES = list(MODELS)
ABF_STEP_PA = 40.0


def nwb_row(cls: str, dataset: str, seed: int, defect: str = "") -> dict:
    """A synthetic cell; the id inside its file is numeric (the CSV's specimen_id is what counts)."""
    return {"specimen_id": str(500_000_000 + seed), "dataset": dataset, "label": cls, "fs_hz": 20000.0, "defect": defect,
            "cell_seed": seed, "model_class": MODELS[cls]}  # fmt: skip


def write_cohort(root: Path) -> tuple[Path, dict[str, str]]:
    """8 usable cells per class (3 NWB v1, 3 MIES NWB 2, an ABF with its command waveform and one
    with the ladder in the CSV), plus bad rows; returns the CSV and the expected reason per bad id.
    (An id given twice and a missing file stop the DAG build instead: tests/test_local_table.py.)"""
    from sts.synth import write_cell

    rows, seed = [], 100
    for folder in ("abf", "bad"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for cls in CLASSES:
        for k in range(3):
            for dataset, folder in (("clamp", "allen"), ("seq", "mies")):
                seed += 1
                write_cell(nwb_row(cls, dataset, seed), root / folder / f"{cls}_{dataset}_{k}.nwb")
                rows.append({"file": f"{folder}/{cls}_{dataset}_{k}.nwb", "label": cls,
                             "specimen_id": f"{cls.lower()}.{dataset}-{k}", "dataset": f"rig {dataset}"})  # fmt: skip
        lad = simulate_ladder(MODELS[cls], seed=seed, first_pa=-80.0, step_pa=ABF_STEP_PA)
        n = int(round(SWEEP_S * FS_HZ))
        hold = int(round(lad.onset_s * FS_HZ)) - n // 64  # pyabf adds 1/64 sweep of holding first
        write_abf1_epochs(root / "abf" / f"{cls}_cmd.abf", lad.responses_mv, hold, int(STEP_S * FS_HZ),
                          lad.amplitudes_pa[0], ABF_STEP_PA)  # fmt: skip
        rows.append({"file": f"abf/{cls}_cmd.abf", "label": cls})  # id: the file stem
        lad = simulate_ladder(MODELS[cls], seed=seed + 1000, first_pa=-80.0, step_pa=ABF_STEP_PA)
        write_abf1(root / "abf" / f"{cls}_plain.abf", lad.responses_mv)
        rows.append({"file": str(root / "abf" / f"{cls}_plain.abf"), "label": cls,  # absolute path
                     "specimen_id": "007" if cls == "FS" else f"{cls}_plain", "first_amplitude_pa": -80.0,
                     "step_pa": ABF_STEP_PA, "onset_s": lad.onset_s, "duration_s": STEP_S})  # fmt: skip
    write_cell(nwb_row("RS", "seq", 7, "no_long_square"), root / "bad" / "nostep.nwb")
    (root / "bad" / "garbage.nwb").write_bytes(b"not an HDF5 file" * 64)
    (root / "bad" / "garbage.abf").write_bytes(b"ABF \x00\x01" * 100)
    write_abf1(root / "bad" / "noprotocol.abf", simulate_ladder("Sst", seed=3).responses_mv)
    rows += [
        {"file": "bad/nostep.nwb", "label": "RS"},
        {"file": "bad/garbage.nwb", "label": "FS", "specimen_id": "garbage_nwb"},
        {"file": "bad/garbage.abf", "label": "LTS"},
        {"file": "bad/noprotocol.abf", "label": "LTS"},
        {"file": "allen/FS_clamp_0.nwb", "label": "Unsure", "specimen_id": "unsure_1"},
        {"file": "allen/LTS_clamp_0.nwb", "label": "LTS", "specimen_id": "../escape"},
    ]
    reasons = {
        "nostep": "no long-square sweeps",
        "garbage_nwb": "unreadable NWB file",
        "garbage": "unreadable ABF file",
        "noprotocol": "no command waveform and no protocol in the CSV row",
        "unsure_1": "label 'Unsure' not in classes",
        "../escape": "unsafe specimen_id '../escape'",
    }
    csv = root / "labels.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv, reasons


@pytest.fixture(scope="module")
def local_config():
    cfg = yaml.safe_load((REPO / ".test" / "config.yaml").read_text())
    for key in ("synthetic", "nwb_dir", "cross_dataset"):  # the cross-dataset table wants clamp/seq cohorts
        cfg.pop(key, None)
    cfg.update(cohort="local", local={"labels": "cells/labels.csv"}, classes=CLASSES)
    cfg["baseline"]["trials"] = 2
    cfg["cnn"].update(architectures=["mobilenet_v2"], input_size=32, trials=1, max_epochs=1)
    return cfg


# What these tests read: the reports, fusion and calibration downstream of them are the same
# code as in test_workflow.py and are not run again here.
TARGETS = ["results/manifest.csv", "results/baseline/metrics.json", "results/models/mobilenet_v2/metrics.json",
           "results/models/mobilenet_v2/saliency.h5"]  # fmt: skip


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, local_config):
    """The run of the local cohort up to the models' evaluation; tests only read it."""
    workdir = tmp_path_factory.mktemp("local_workflow")
    _, reasons = write_cohort(workdir / "cells")
    return start_run(workdir, local_config, *TARGETS), reasons


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"specimen_id": str}, keep_default_na=False)


def test_excluded_rows_and_reasons(local_run):
    run, reasons = local_run
    results = run / "results"
    metadata, manifest = read(results / "metadata.csv"), read(results / "manifest.csv")
    assert {"file", "layout", "status", "reason"} <= set(metadata.columns)
    by_id = manifest.set_index("specimen_id")
    for sid, reason in reasons.items():
        assert by_id.loc[sid, "status"] == "excluded" and reason in by_id.loc[sid, "reason"], (sid, by_id.loc[sid, "reason"])
    ok = manifest[manifest["status"] == "ok"]
    assert set(manifest["specimen_id"]) == set(ok["specimen_id"]) | set(reasons)  # one row per id
    assert len(ok) == 24 and ok.groupby("label").size().to_dict() == {c: 8 for c in CLASSES}
    assert "007" in set(ok["specimen_id"]) and "fs.clamp-0" in set(ok["specimen_id"])
    assert set(ok["split"]) == {"train", "test"} and set(ok.loc[ok["split"] == "train", "fold"]) == {0, 1, 2}
    # Rows excluded at reading time never became jobs; every other row did.
    read_ok = set(metadata.loc[metadata["status"] == "ok", "specimen_id"])
    assert {p.stem for p in (results / "sweeps").glob("*.h5")} == read_ok
    assert {p.stem for p in (results / "baseline" / "features").glob("*.json")} == read_ok
    # ABF cells: rheobase from the command waveform or from the CSV's ladder, on its 40 pA grid.
    abf = ok[ok["source_file"].str.endswith(".abf")]
    rheobase, second = abf["rheobase_pa"].astype(float), abf["second_pa"].astype(float)
    assert len(abf) == 6 and (rheobase % ABF_STEP_PA == 0).all() and (second - rheobase == 40).all()
    feats = read(results / "baseline" / "features.csv").set_index("specimen_id")
    assert (feats.loc[abf["specimen_id"], "status"] == "ok").all()  # ipfx read the ABF files too


def test_models_follow_the_configured_classes(local_run, local_config):
    import torch

    from sts.trust.metrics import read_predictions

    run, _ = local_run
    manifest = read(run / "results" / "manifest.csv")
    holdout = set(manifest.loc[(manifest["status"] == "ok") & (manifest["split"] == "test"), "specimen_id"])
    for folder in (run / "results" / "baseline", run / "results" / "models" / "mobilenet_v2"):
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["classes"] == CLASSES and len(metrics["confusion_matrix"]) == 3
        preds, pred_classes, proba = read_predictions(folder / "predictions.csv")
        assert pred_classes == CLASSES and proba.shape == (len(preds), 3)
        assert set(preds["specimen_id"]) <= holdout and (abs(proba.sum(axis=1) - 1) < 1e-5).all()
    model = torch.load(run / "results" / "models" / "mobilenet_v2" / "model.pt", weights_only=True)
    assert model["classes"] == CLASSES
    with h5py.File(run / "results" / "models" / "mobilenet_v2" / "saliency.h5") as f:
        assert f["saliency"].shape[0] == 3


def test_rerun_is_a_no_op_and_a_small_class_stops_the_dag(local_run, local_config):
    run, _ = local_run
    dry = smk(run, "--dry-run", *TARGETS, config=local_config)
    assert "Nothing to be done" in dry.stdout + dry.stderr
    cfg = yaml.safe_load(yaml.safe_dump(local_config))
    cfg["classes"] = CLASSES + ["Chandelier"]
    proc = smk(run, "--dry-run", *TARGETS, config=cfg, check=False)
    assert proc.returncode != 0 and "Chandelier: 0" in proc.stdout + proc.stderr
