"""A small LightGBM baseline fitted by the workflow's own feature path, for the tests of the served
model (test_predict_lgbm.py) and of the fusion (test_fusion.py); conftest's ``lgbm_baseline`` fixture.

Five synthetic cells (NWB v1 and NWB 2, all four classes) go through ``sts ep-features`` ->
aggregate and are the holdout; the training cells are jittered copies of their feature rows, so
the trees split on real feature ranges within seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

CLASSES = ["Pvalb", "Sst", "Vip/Lamp5", "Excitatory", "Unseen"]  # 'Unseen' has no training cells
SPACE = {"min_child_samples": 2, "n_estimators": 20, "num_leaves": 7}  # small trees that do split


def write_baseline(root: Path) -> tuple[dict[str, Path], Path, Path]:
    """(raw files of the holdout cells by specimen_id, the baseline's output folder, its features.csv)."""
    from sts.baseline.computed import load_computed
    from sts.baseline.flow import BaselineSettings, run_baseline
    from sts.baseline.feature_files import aggregate, features_file
    from sts.synth import make_cohort, write_cell

    cohort = make_cohort(12, seed=7, defect_fraction=0.0)
    picks = cohort.groupby("label").head(1)
    picks = pd.concat([picks, cohort[~cohort.index.isin(picks.index)].head(1)])
    assert set(picks["dataset"]) == {"clamp", "seq"} and set(picks["label"]) == set(CLASSES[:4])
    rng = np.random.default_rng(0)
    jsons, manifest, files = [], [], {}
    for row in picks.to_dict("records"):
        sid = row["specimen_id"]
        files[sid] = root / "cells" / f"{sid}.nwb"
        write_cell(row, files[sid])
        rec = features_file(files[sid], root / "feats" / f"{sid}.json", sid, row["dataset"], row["label"])
        assert rec["status"] == "ok", rec["reason"]
        jsons.append(root / "feats" / f"{sid}.json")
        manifest.append((sid, row["dataset"], row["label"], "test"))
        for k in range(12):  # training cells: the holdout cell's features jittered by ~20 %, a quarter mislabelled
            label = row["label"] if k % 4 else CLASSES[(CLASSES.index(row["label"]) + 1 + k % 3) % 4]
            copy = {**rec, "specimen_id": f"t{sid}_{k}", "label": label}
            copy["features"] = {f: (None if v is None else v * (1 + 0.2 * rng.normal())) for f, v in
                                rec["features"].items()}  # fmt: skip
            (root / "feats" / f"t{sid}_{k}.json").write_text(json.dumps(copy))
            jsons.append(root / "feats" / f"t{sid}_{k}.json")
            manifest.append((f"t{sid}_{k}", row["dataset"], label, "train"))
    aggregate(jsons, root / "features.csv")
    m = pd.DataFrame(manifest, columns=["specimen_id", "dataset", "label", "split"])
    m = m.assign(status="ok", reason="", fold=np.where(m["split"] == "train", np.arange(len(m)) % 3, -1))
    m.to_csv(root / "manifest.csv", index=False)
    run_baseline(load_computed(root / "features.csv", root / "manifest.csv"), root / "out",
                 BaselineSettings(trials=1, jobs=1, space=SPACE), classes=CLASSES)  # fmt: skip
    return files, root / "out", root / "features.csv"
