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


def save_cnn(path, size=32, preparation=PREPARATION, arch="mobilenet_v2"):
    return save_untrained_model(path, preparation, CLASSES, size=size, arch=arch, scalogram_dtype=None)


def cnn_member(root, name, files, manifest, seed=0, **model) -> "Member":
    """A CNN member (``save_cnn(**model)``) with synthetic out-of-fold rows (noisy, leaning to the
    true class: only the stacker's plumbing is at stake here) and its holdout table from the files."""
    from sts.fusion.stack import Member
    from sts.io.atomic import write_csv_atomic
    from sts.trust.metrics import predictions_frame
    from sts.serve.predict import load_predictor

    (root / name).mkdir()
    cnn = save_cnn(root / name / "model.pt", **model)
    rng = np.random.default_rng(seed)
    train = manifest[manifest["split"] == "train"]
    logits = rng.normal(0, 1, (len(train), len(CLASSES))) + 1.5 * np.eye(len(CLASSES))[
        [CLASSES.index(c) for c in train["label"]]]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    write_csv_atomic(root / f"{name}_oof.csv", predictions_frame(train["specimen_id"], train["label"],
                     [CLASSES[i] for i in proba.argmax(axis=1)], proba, CLASSES))  # fmt: skip
    predictor = load_predictor(cnn, "cpu", 1, calibrate=False)  # the CNN's holdout table, from the files
    labels = dict(zip(manifest["specimen_id"], manifest["label"]))
    rows = [(sid, predictor.prepare(path, None, sid)) for sid, path in files.items()]
    rows = [(sid, predictor.classify(p)[0]) for sid, p in rows if p.status == "ok"]
    p = np.vstack([r[1] for r in rows])
    write_csv_atomic(root / f"{name}_predictions.csv", predictions_frame(
        [r[0] for r in rows], [labels[r[0]] for r in rows], [CLASSES[i] for i in p.argmax(axis=1)], p, CLASSES))
    return Member(name, cnn, root / f"{name}_oof.csv", root / f"{name}_predictions.csv")


@pytest.fixture(scope="module")
def fused(lgbm_baseline, tmp_path_factory):
    from sts.baseline.oof import out_of_fold
    from sts.fusion.stack import Member, fit_fusion

    files, lgbm_out, features_csv = lgbm_baseline
    root = tmp_path_factory.mktemp("fusion")
    manifest_csv = features_csv.parent / "manifest.csv"
    manifest = pd.read_csv(manifest_csv, dtype={"specimen_id": str}, keep_default_na=False)
    out_of_fold(features_csv, manifest_csv, lgbm_out / "best_params.json", root / "lgbm_oof.csv", CLASSES)
    members = [cnn_member(root, "mobilenet_v2", files, manifest),
               Member("lightgbm", lgbm_out / "model" / "model.json", root / "lgbm_oof.csv",
                      lgbm_out / "predictions.csv")]  # fmt: skip
    fit_fusion(members, manifest_csv, root / "out", CLASSES)
    return files, root, members, manifest, manifest_csv


@pytest.fixture(scope="module")
def mixed(fused):
    """A fusion of four CNNs whose preparations agree at every stage or part way, and LightGBM:
    resnet18 prepares as mobilenet_v2 does (every stage shared), mobilenet_40 at 40 px (its own
    image of the shared CWT), mobilenet_f30 with 30 frequencies (its own CWT of the shared sweeps)."""
    from sts.fusion.stack import fit_fusion

    files, root, members, manifest, manifest_csv = fused
    f30 = {**PREPARATION, "scalogram": {**PREPARATION["scalogram"], "n_freqs": 30}}
    cnns = [cnn_member(root, "resnet18", files, manifest, seed=1, arch="resnet18"),
            cnn_member(root, "mobilenet_40", files, manifest, seed=2, size=40),
            cnn_member(root, "mobilenet_f30", files, manifest, seed=3, preparation=f30)]  # fmt: skip
    fit_fusion([members[0], *cnns, members[1]], manifest_csv, root / "mixed", CLASSES)
    return files, root / "mixed" / "model.json"


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
    shutil.copytree(root / "mobilenet_v2", copy / "mobilenet_v2")
    doc = json.loads((copy / "out" / "model.json").read_text())
    doc["members"][1]["path"] = str((root / "out" / doc["members"][1]["path"]).resolve())
    (copy / "out" / "model.json").write_text(json.dumps(doc))
    assert [m["name"] for m in load_fusion(copy / "out" / "model.json").members] == ["mobilenet_v2", "lightgbm"]
    save_cnn(copy / "mobilenet_v2" / "model.pt", size=40)
    with pytest.raises(FusionFileError, match="changed since the fusion was fitted"):
        load_fusion(copy / "out" / "model.json")


def test_members_share_equal_preparation_stages_and_serve_what_each_makes_alone(mixed, monkeypatch):
    """Each member preparing the file alone (the path before stages were shared) and the fusion's
    shared path give equal arrays and identical probabilities and columns. The four CNN members
    open each file once and compute two CWTs (two distinct scalogram grids); members of equal
    preparation hold the very same arrays. (LightGBM reads the file through ipfx on its own.)"""
    import sts.prep.scalogram_file
    import sts.recordings
    from sts.prep.prepared import Prepared
    from sts.serve.predict import load_predictor

    files, model = mixed
    fusion = load_predictor(model, "cpu", 1, calibrate=False)
    assert list(fusion.members) == ["mobilenet_v2", "resnet18", "mobilenet_40", "mobilenet_f30", "lightgbm"]
    calls = {"open": 0, "cwt": 0}

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(sts.recordings, "open_recording", counted("open", sts.recordings.open_recording))
    monkeypatch.setattr(sts.prep.scalogram_file, "scalogram_of", counted("cwt", sts.prep.scalogram_file.scalogram_of))
    for sid, path in files.items():
        alone = {name: member.prepare(path, None, sid) for name, member in fusion.members.items()}
        assert calls == {"open": 4, "cwt": 4}
        calls.update(open=0, cwt=0)
        shared = fusion.prepare(path, None, sid)
        assert calls == {"open": 1, "cwt": 2} and shared.status == "ok", shared.reason
        calls.update(open=0, cwt=0)
        m = shared.members
        for name, p in alone.items():
            for key in ("traces_mv", "scalogram", "image", "features"):
                a, b = getattr(p, key), getattr(m[name], key)
                assert (a is None and b is None) or np.array_equal(a, b, equal_nan=key == "features"), (name, key)
            assert m[name].attrs == p.attrs
        assert m["resnet18"].image is m["mobilenet_v2"].image
        assert m["mobilenet_40"].scalogram is m["mobilenet_v2"].scalogram and m["mobilenet_40"].image.shape[-1] == 40
        assert m["mobilenet_f30"].traces_mv is m["mobilenet_v2"].traces_mv
        assert m["mobilenet_f30"].scalogram.shape[1] == 30
        old = Prepared(path, sid, "ok", attrs=alone["mobilenet_v2"].attrs, members=alone)
        (p_old, extra_old), (p_new, extra_new) = fusion.classify(old), fusion.classify(shared)
        assert np.array_equal(p_old, p_new) and repr(extra_old) == repr(extra_new)


def test_fusion_figures_show_sweeps_scalograms_every_cnn_saliency_and_every_vote(mixed, tmp_path, drawn_figures,
                                                                                 caplog):
    files, model = mixed
    (tmp_path / "bad.nwb").write_text("not an NWB file\n")
    figures = tmp_path / "figures"
    with caplog.at_level("WARNING", logger="sts"):
        assert main(["predict", "--model", str(model), "--device", "cpu", "--threads", "1", "--out",
                     str(tmp_path / "o.csv"), "--figures", str(figures), *map(str, files.values()),
                     str(tmp_path / "bad.nwb")], warm=False) == 0  # fmt: skip
    table = pd.read_csv(tmp_path / "o.csv", dtype={"specimen_id": str}, keep_default_na=False)
    ok = table[table["status"] == "ok"]
    assert len(ok) == len(files) and "bad.nwb excluded (no figure)" in caplog.text
    assert sorted(p.name for p in figures.iterdir()) == sorted(f"{s}.png" for s in ok["specimen_id"])
    assert sorted(drawn_figures) == sorted(f"{s}.png" for s in ok["specimen_id"])
    assert "--figures with the fusion: sweeps and |CWT| as mobilenet_v2 prepares them" in caplog.text
    cnns = ["mobilenet_v2", "resnet18", "mobilenet_40", "mobilenet_f30"]
    for _, row in ok.iterrows():
        drawn, pred = drawn_figures[f"{row['specimen_id']}.png"], row["predicted"]
        plus = f"rheobase + {float(row['second_pa']) - float(row['rheobase_pa']):g} pA"
        assert drawn["titles"] == [
            f"rheobase ({float(row['rheobase_pa']):g} pA)", f"{plus} ({float(row['second_pa']):g} pA)",
            "|CWT|, rheobase", f"|CWT|, {plus}",
            *(f"{n}: saliency of {pred}, {sweep}" for n in cnns for sweep in ("rheobase", plus)),
            "fused probabilities (bars), each member's own (markers)"]  # fmt: skip
        assert {f"{n}: {row[f'predicted_{n}']}" for n in [*cnns, "lightgbm"]} <= set(drawn["legend"])
        assert f"fusion — predicted {pred}" in drawn["suptitle"] and "no saliency of lightgbm" in drawn["suptitle"]
