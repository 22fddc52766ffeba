"""The LightGBM baseline's feature source on the EP features computed per cell (``results/baseline/features.csv``).

Cells follow the manifest's split (holdout = its ``test`` cells). A cell usable in the
manifest whose features could not be computed is listed in ``excluded.csv`` with the
reason, never imputed; features undefined for a cell (e.g. avg_isi with one spike) stay
NaN, which LightGBM routes natively.

``sts.baseline.flow.run_baseline`` saves the final fit on these features for ``sts predict``
(``model/``: ``model.txt`` + ``model.json``, ``sts.baseline.saved``), with the feature
parameters that made ``features.csv``.
"""

from __future__ import annotations

import logging

import pandas as pd

from sts.baseline.flow import FeatureCells, Split

log = logging.getLogger(__name__)

META = ["specimen_id", "dataset", "label", "status", "reason"]


def join_features(features_csv, manifest_csv) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(usable rows with split, excluded rows with reason, feature columns)."""
    feats = pd.read_csv(features_csv, dtype={"specimen_id": str})
    manifest = pd.read_csv(manifest_csv, dtype={"specimen_id": str}, keep_default_na=False)
    usable = manifest[manifest["status"] == "ok"][["specimen_id", "label", "split"]]
    merged = usable.merge(feats.drop(columns=["label"]), on="specimen_id", how="left", validate="one_to_one")
    missing = merged["status"].isna()
    failed = merged["status"].fillna("ok") != "ok"
    excluded = merged.loc[missing | failed, ["specimen_id", "label", "split"]].copy()
    excluded["reason"] = merged.loc[missing | failed, "reason"].fillna("no EP features for this cell")
    excluded.loc[missing[missing | failed].values, "reason"] = "no EP features for this cell"
    rows = merged[~(missing | failed)]
    columns = [c for c in feats.columns if c not in META and rows[c].notna().any()]
    return rows.reset_index(drop=True), excluded.reset_index(drop=True), columns


def load_computed(features_csv, manifest_csv, feature_params=None) -> FeatureCells:
    """The cells of ``join_features`` as a feature source for ``sts.baseline.flow.run_baseline``;
    ``feature_params``: the ``FeatureParams`` that made ``features_csv`` (default: those
    ``sts ep-features`` uses)."""
    from sts.baseline.features import FeatureParams

    rows, excluded, columns = join_features(features_csv, manifest_csv)
    if len(excluded):
        log.warning("%d usable cells have no EP features: %s", len(excluded), excluded["reason"].value_counts().to_dict())

    def side(name: str) -> Split:
        part = rows[rows["split"] == name].reset_index(drop=True)
        return Split(part[columns], part["label"], part["specimen_id"], part["dataset"])

    return FeatureCells(side("train"), side("test"), columns, excluded, "computed EP features",
                        feature_params or FeatureParams())  # fmt: skip


def computed_baseline(features_csv, manifest_csv, out_dir, feature_params: dict, trials: int, seed: int, folds: int,
                      jobs: int, classes=None, scheme: str = "study") -> dict:  # fmt: skip
    """Rule ``baseline``: the LightGBM baseline (``sts.baseline.flow.run_baseline``) on the EP features
    computed from the recordings; ``feature_params`` (the config's ``features:`` block) made the table
    and is saved with the model, with the class ``scheme``."""
    from sts.baseline.features import FeatureParams
    from sts.baseline.flow import BaselineSettings, run_baseline
    from sts.settings import from_dict

    settings = BaselineSettings(trials=trials, seed=seed, jobs=jobs, folds=folds)
    features = from_dict(FeatureParams, feature_params, "features")
    return run_baseline(load_computed(features_csv, manifest_csv, features), out_dir, settings, classes=classes,
                        scheme=scheme)
