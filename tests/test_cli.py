"""Every `sts` command run through the command line (``sts.cli.main``) on tiny data.

Commands tested elsewhere through ``main`` or ``python -m sts.cli``: predict (test_predict,
test_predict_lgbm, test_fusion), tune (test_cnn_pipeline, test_cnn_tune_parallel), pack, train,
evaluate, explain (test_cnn_pipeline), labels patchseq (test_labels_patchseq), baseline-published
(test_baseline_published), acquire cell (test_acquire_safety; here too, with its report).
"""

from __future__ import annotations

import json
import shutil

import h5py
import pandas as pd
import pytest

from sts.cli import main
from sts.prep.sweeps import select_sweeps


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    """`sts synth all`: three defect-free synthetic cells and their table."""
    out = tmp_path_factory.mktemp("synth")
    assert main(["synth", "all", str(out), "--n-cells", "3", "--seed", "3", "--defect-fraction", "0"]) == 0
    return out


def test_synth_commands_write_the_cohort(synth_dir, tmp_path):
    table = pd.read_csv(synth_dir / "metadata.csv", dtype={"specimen_id": str})
    assert len(table) == 3 and {"specimen_id", "dataset", "label", "synthetic_defect"} <= set(table.columns)
    assert sorted(p.stem for p in (synth_dir / "nwb").glob("*.nwb")) == sorted(table["specimen_id"])
    assert main(["synth", "metadata", str(tmp_path / "m.csv"), "--n-cells", "3", "--seed", "3",
                 "--defect-fraction", "0"]) == 0  # fmt: skip
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "m.csv", dtype={"specimen_id": str}), table)
    sid = table["specimen_id"].iloc[0]
    assert main(["synth", "cell", sid, str(tmp_path / "c.nwb"), "--n-cells", "3", "--seed", "3",
                 "--defect-fraction", "0"]) == 0  # fmt: skip
    # the same recording (the files' creation times differ)
    again, written = select_sweeps(tmp_path / "c.nwb"), select_sweeps(synth_dir / "nwb" / f"{sid}.nwb")
    assert again.status == written.status == "ok" and (again.traces_mv == written.traces_mv).all()


def test_per_cell_commands_and_the_feature_table(synth_dir, tmp_path):
    """select-sweeps -> scalogram, and ep-features -> ep-features-aggregate, on one cell."""
    row = pd.read_csv(synth_dir / "metadata.csv", dtype={"specimen_id": str}).iloc[0]
    nwb, sid = synth_dir / "nwb" / f"{row.specimen_id}.nwb", row.specimen_id
    meta = ["--specimen-id", sid, "--dataset", row.dataset, "--label", row.label]
    assert main(["select-sweeps", str(nwb), str(tmp_path / "sw.h5"), *meta]) == 0
    assert main(["scalogram", str(tmp_path / "sw.h5"), str(tmp_path / "sc.h5"), "--n-freqs", "12"]) == 0
    with h5py.File(tmp_path / "sw.h5") as sw, h5py.File(tmp_path / "sc.h5") as sc:
        assert sw.attrs["status"] == "ok" and sw.attrs["label"] == row.label
        assert sc["scalogram"].shape == (2, 12, sw["traces_mv"].shape[1])

    assert main(["ep-features", str(nwb), str(tmp_path / "f" / f"{sid}.json"), *meta]) == 0
    record = json.loads((tmp_path / "f" / f"{sid}.json").read_text())
    assert record["status"] == "ok" and record["label"] == row.label and record["features"]["avg_isi"] > 0
    assert main(["ep-features-aggregate", str(tmp_path / "features.csv"), str(tmp_path / "f" / f"{sid}.json")]) == 0
    table = pd.read_csv(tmp_path / "features.csv", dtype={"specimen_id": str})
    assert list(table["specimen_id"]) == [sid]
    assert table["avg_isi"].iloc[0] == pytest.approx(record["features"]["avg_isi"])


def test_manifest_command(tmp_path):
    """`sts manifest` over a folder of scalogram files: every cell once, split and folds seeded."""
    from cnn_data import CLASSES, write_cohort

    from sts.cohort.manifest import SplitParams, build_manifest

    given, scal_dir = write_cohort(tmp_path, per_class=5)
    metadata = pd.read_csv(given, dtype={"specimen_id": str})
    metadata = metadata[metadata["status"] == "ok"][["specimen_id", "dataset", "label"]]
    first = metadata["specimen_id"].iloc[0]
    shutil.copy(scal_dir / f"{first}.h5", scal_dir / "exc1.h5")  # a cell of a class left out
    metadata.loc[len(metadata)] = ["exc1", "seq", "Excitatory"]
    metadata.to_csv(tmp_path / "metadata.csv", index=False)
    out = tmp_path / "manifest.csv"
    assert main(["manifest", str(tmp_path / "metadata.csv"), str(scal_dir), str(out), "--seed", "5",
                 "--n-folds", "2", "--classes", *CLASSES]) == 0  # fmt: skip
    m = pd.read_csv(out, dtype={"specimen_id": str}, keep_default_na=False).set_index("specimen_id")
    assert sorted(m.index) == sorted(metadata["specimen_id"])
    assert m.loc["exc1", "status"] == "excluded" and "not in classes" in m.loc["exc1", "reason"]
    ok = m[m["status"] == "ok"]
    assert len(ok) == 15 and (ok.groupby("label")["split"].apply(lambda s: (s == "test").sum()) == 1).all()
    assert set(ok.loc[ok["split"] == "train", "fold"].astype(int)) == {0, 1}
    files = sorted(scal_dir.glob("*.h5"))  # the rule's call: the same function, the same split
    same = build_manifest(tmp_path / "metadata.csv", files, tmp_path / "m2.csv", SplitParams(seed=5, n_folds=2), CLASSES)
    assert (tmp_path / "m2.csv").read_text() == out.read_text() and len(same) == len(m)


def test_acquire_commands(acquire_services, tmp_path):
    """allen-cells and dandi-assets listings, one Allen cell's download and the byte report."""
    svc, fast = acquire_services, ["--retries", "2", "--backoff-s", "0.01"]
    url = svc.server.url
    assert main(["acquire", "allen-cells", str(tmp_path / "allen.csv"), "--api", url, *fast]) == 0
    listed = pd.read_csv(tmp_path / "allen.csv", dtype={"specimen__id": str})
    clamp = svc.cells.loc[svc.cells["dataset"] == "clamp", "specimen_id"]
    assert set(clamp) <= set(listed["specimen__id"])
    assert main(["acquire", "dandi-assets", str(tmp_path / "dandi.csv"), "--api", f"{url}/api", *fast]) == 0
    assets = pd.read_csv(tmp_path / "dandi.csv", dtype=str)
    assert sorted(assets["specimen_id"]) == sorted(svc.cells.loc[svc.cells["dataset"] == "seq", "specimen_id"])

    sid = svc.cells.loc[(svc.cells["dataset"] == "clamp") & (svc.cells["defect"] == ""), "specimen_id"].iloc[0]
    assert main(["acquire", "cell", sid, str(tmp_path / f"{sid}.nwb"), "--report", str(tmp_path / "r.json"),
                 "--dataset", "clamp", "--allen-api", url, *fast]) == 0  # fmt: skip
    assert (tmp_path / f"{sid}.nwb").read_bytes() == svc.nwb[sid].read_bytes()
    assert main(["acquire", "report", str(tmp_path / "report.csv"), str(tmp_path / "r.json")]) == 0
    report = pd.read_csv(tmp_path / "report.csv", dtype={"specimen_id": str})
    assert list(report["specimen_id"]) == [sid] and report["status"].iloc[0] == "ok"
    assert report["bytes_fetched"].iloc[0] == svc.nwb[sid].stat().st_size


def test_fetch_weights_saves_torchvisions_state_dict(tmp_path, monkeypatch):
    """`sts fetch-weights` (network in real use: torchvision's download replaced here)."""
    import torch
    import torchvision.models as tvm

    asked = []

    class Weights:
        def get_state_dict(self, progress=True):
            return {"conv.weight": torch.ones(2, 3)}

    monkeypatch.setattr(tvm, "get_weight", lambda name: asked.append(name) or Weights())
    assert main(["fetch-weights", str(tmp_path), "resnet18", "mobilenet_v2"]) == 0
    assert asked == ["ResNet18_Weights.IMAGENET1K_V1", "MobileNet_V2_Weights.IMAGENET1K_V1"]
    for arch in ("resnet18", "mobilenet_v2"):
        assert torch.equal(torch.load(tmp_path / f"{arch}.pth", weights_only=True)["conv.weight"], torch.ones(2, 3))
