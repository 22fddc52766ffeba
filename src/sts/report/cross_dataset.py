"""Cross-dataset generalisation: train on one dataset's cells, test on the other's.

Datasets: ``clamp`` (Allen Cell Types patch-clamp cells) and ``seq`` (DANDI 000020
patch-seq cells), from the manifest's ``dataset`` column (the published feature tables'
Clamp/Seq tags for the published-feature baseline). For each direction, clamp -> seq and
seq -> clamp, a model is fitted on every usable cell of the training dataset (both sides of
the holdout split) and scored on every usable cell of the other, with the same code and
tuned parameters as the within-dataset models:

* LightGBM: ``sts.baseline.lgbm.fit_final`` with the baseline's ``best_params.json``;
* each CNN: ``sts.cnn.final.train_final`` with the architecture's tuned ``best_params.json``
  (as many epochs as its final fit), then ``sts.cnn.evaluate.evaluate_model``.

A direction that cannot be run (no cells in a dataset, or a class with fewer than
``min_cells_per_class`` training cells) gets a row with its ``reason`` and no scores.

Per model, ``OUT_DIR/rows.csv`` holds the two rows (COLUMNS); ``OUT_DIR/{train}_to_{test}/``
the direction's ``metrics.json``, ``predictions.csv`` and ``confusion_matrix.png`` (sts.trust.metrics
format; CNNs also ``model.pt``, ``history.csv``, ``training_curves.png``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sts.settings import DEFAULT_DEVICE, CrossDatasetSettings, default

MIN_CELLS_PER_CLASS = default(CrossDatasetSettings, "min_cells_per_class")

log = logging.getLogger(__name__)

DIRECTIONS = (("clamp", "seq"), ("seq", "clamp"))
COLUMNS = ["model", "train_dataset", "test_dataset", "n_train", "n_test", "balanced_accuracy", "weighted_f1",
           "reason"]  # fmt: skip
ROWS_FILE = "rows.csv"


def direction_dir(out_dir: str | Path, train_ds: str, test_ds: str) -> Path:
    return Path(out_dir) / f"{train_ds}_to_{test_ds}"


def check_direction(train_labels: Sequence, n_test: int, train_ds: str, test_ds: str, classes: Sequence[str],
                    min_cells_per_class: int) -> str:  # fmt: skip
    """Why the direction cannot be run, or '' when it can."""
    if len(train_labels) == 0:
        return f"no usable {train_ds} cells to train on"
    if n_test == 0:
        return f"no usable {test_ds} cells to test on"
    counts = pd.Series(list(train_labels)).value_counts()
    few = [f"{c} ({int(counts.get(c, 0))})" for c in classes if counts.get(c, 0) < min_cells_per_class]
    if few:
        return f"{train_ds} has fewer than {min_cells_per_class} usable cells of {', '.join(few)}"
    return ""


def _row(model, train_ds, test_ds, n_train, n_test, metrics=None, reason="") -> dict:
    metrics = metrics or {}
    return {"model": model, "train_dataset": train_ds, "test_dataset": test_ds, "n_train": int(n_train),
            "n_test": int(n_test), "balanced_accuracy": metrics.get("balanced_accuracy", np.nan),
            "weighted_f1": metrics.get("weighted_f1", np.nan), "reason": reason}  # fmt: skip


def _write_rows(out_dir: Path, rows: list[dict]) -> pd.DataFrame:
    from sts.io.atomic import write_csv_atomic

    table = pd.DataFrame(rows, columns=COLUMNS)
    write_csv_atomic(out_dir / ROWS_FILE, table)
    return table


# --- LightGBM ----------------------------------------------------------------------------


def computed_feature_cells(features_csv, manifest_csv) -> tuple[pd.DataFrame, list[str]]:
    """Usable cells with computed EP features and their dataset: (table, feature columns)."""
    from sts.baseline.computed import join_features

    rows, excluded, columns = join_features(features_csv, manifest_csv)
    if len(excluded):
        log.warning("%d usable cells have no EP features and are left out", len(excluded))
    manifest = pd.read_csv(manifest_csv, dtype={"specimen_id": str}, keep_default_na=False)
    rows = rows.drop(columns=["dataset"], errors="ignore").merge(
        manifest[["specimen_id", "dataset"]], on="specimen_id", how="left", validate="one_to_one"
    )
    return rows, columns


def published_feature_cells(reference_dir, classes) -> tuple[pd.DataFrame, list[str]]:
    """The study's cells (both split sides) with published EP features: (table, feature columns)."""
    from sts.baseline.published import load_published

    data = load_published(reference_dir, classes=tuple(classes))
    parts = [
        pd.concat([s.X.reset_index(drop=True), pd.DataFrame({"specimen_id": s.specimen_id.astype(str).to_numpy(),
                   "label": s.y.to_numpy(), "dataset": s.dataset.str.lower().to_numpy()})], axis=1)
        for s in (data.train, data.test)
    ]  # fmt: skip
    return pd.concat(parts, ignore_index=True), list(data.features)


def lgbm_cross(
    cells: pd.DataFrame, features: list[str], params: dict, classes: Sequence[str], out_dir, seed: int = 0,
    n_jobs: int = 2, min_cells_per_class: int = MIN_CELLS_PER_CLASS, model: str = "lightgbm",
) -> pd.DataFrame:
    """Both directions for LightGBM with fixed (tuned) ``params``; returns and writes the rows."""
    import shutil

    from sts.baseline.lgbm import fit_final
    from sts.trust.metrics import write_evaluation

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for train_ds, test_ds in DIRECTIONS:
        train, test = cells[cells["dataset"] == train_ds], cells[cells["dataset"] == test_ds]
        folder = direction_dir(out, train_ds, test_ds)
        reason = check_direction(train["label"], len(test), train_ds, test_ds, classes, min_cells_per_class)
        if reason:
            log.warning("%s %s -> %s skipped: %s", model, train_ds, test_ds, reason)
            shutil.rmtree(folder, ignore_errors=True)
            rows.append(_row(model, train_ds, test_ds, len(train), len(test), reason=reason))
            continue
        log.info("%s: fit on %d %s cells, test on %d %s cells", model, len(train), train_ds, len(test), test_ds)
        fitted = fit_final(train[features], train["label"], params, seed=seed, n_jobs=n_jobs)
        model_classes = [str(c) for c in fitted.classes_]
        proba = fitted.predict_proba(test[features].reset_index(drop=True))
        pred = [model_classes[i] for i in proba.argmax(axis=1)]
        metrics = write_evaluation(folder, test["specimen_id"], test["label"], pred, proba, model_classes,
                                   title=f"{model}, trained on {train_ds}, tested on {test_ds}")  # fmt: skip
        rows.append(_row(model, train_ds, test_ds, len(train), len(test), metrics))
    return _write_rows(out, rows)


# --- CNNs ----------------------------------------------------------------------------------


def packed_datasets(packed, manifest_csv) -> np.ndarray:
    """The dataset of every packed cell (from the manifest), row-aligned with the packed arrays."""
    manifest = pd.read_csv(manifest_csv, dtype={"specimen_id": str}, keep_default_na=False)
    of = dict(zip(manifest["specimen_id"], manifest["dataset"]))
    missing = [s for s in packed.specimen_id if s not in of]
    if missing:
        raise ValueError(f"{manifest_csv}: packed cells {missing[:5]} are not in the manifest")
    return np.array([of[s] for s in packed.specimen_id], dtype=object)


def cnn_cross(packed, manifest_csv, arch: str, best_params: dict, out_dir,
              min_cells_per_class: int = MIN_CELLS_PER_CLASS, device: str = DEFAULT_DEVICE,
              threads: int | None = None, **train_kwargs) -> pd.DataFrame:  # fmt: skip
    """Both directions for one CNN architecture; ``train_kwargs`` go to ``train_final``."""
    import shutil

    from sts.cnn.evaluate import evaluate_model
    from sts.cnn.final import train_final

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    datasets = packed_datasets(packed, manifest_csv)
    rows = []
    for train_ds, test_ds in DIRECTIONS:
        is_train, is_test = datasets == train_ds, datasets == test_ds
        folder = direction_dir(out, train_ds, test_ds)
        reason = check_direction(packed.label[is_train], int(is_test.sum()), train_ds, test_ds, packed.classes,
                                 min_cells_per_class)  # fmt: skip
        if reason:
            log.warning("%s %s -> %s skipped: %s", arch, train_ds, test_ds, reason)
            shutil.rmtree(folder, ignore_errors=True)
            rows.append(_row(arch, train_ds, test_ds, is_train.sum(), is_test.sum(), reason=reason))
            continue
        # The same packed images, with the split replaced: train = one dataset, test = the other.
        view = dataclasses.replace(packed, split=np.where(is_train, "train", np.where(is_test, "test", "unused")))
        log.info("%s: fit on %d %s cells, test on %d %s cells", arch, is_train.sum(), train_ds, is_test.sum(), test_ds)
        model_path = train_final(view, arch, best_params, folder, device=device, threads=threads, **train_kwargs)
        metrics = evaluate_model(model_path, view, folder, device=device, threads=threads)
        rows.append(_row(arch, train_ds, test_ds, is_train.sum(), is_test.sum(), metrics))
    return _write_rows(out, rows)


# --- Table ---------------------------------------------------------------------------------

NOTE = (
    "Each model is fitted on every usable cell of one dataset (clamp: Allen Cell Types patch-clamp; "
    "seq: DANDI 000020 patch-seq) with its tuned parameters and scored on every usable cell of the other. "
    "A row with a reason was not run."
)


def gather(rows_csvs: Iterable[str | Path]) -> pd.DataFrame:
    """All models' rows, in the given order."""
    frames = [pd.read_csv(p, keep_default_na=False, na_values=[""]) for p in rows_csvs]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    table["reason"] = table["reason"].fillna("")
    return table[COLUMNS]


def write_table(rows_csvs: Iterable[str | Path], out_csv, out_html) -> pd.DataFrame:
    from sts.io.atomic import write_csv_atomic, write_text_atomic
    from sts.report.tables import html_table

    table = gather(rows_csvs)
    write_csv_atomic(out_csv, table)
    write_text_atomic(out_html, html_table(table, "Cross-dataset generalisation", NOTE))
    return table


def read_best_params(path) -> dict:
    return json.loads(Path(path).read_text())


def cnn_cross_stage(packed_path, manifest_csv, arch: str, best_params_json, out_dir, **kwargs) -> pd.DataFrame:
    """Rule ``cross_dataset_cnn``: ``cnn_cross`` on the packed file with the architecture's tuned parameters."""
    from sts.cnn.pack import load_packed

    return cnn_cross(load_packed(packed_path), manifest_csv, arch, read_best_params(best_params_json), out_dir,
                     **kwargs)  # fmt: skip


def lgbm_cross_stage(source: str, reference_dir, features_csv, manifest_csv, best_params_json, classes, out_dir,
                     **kwargs) -> pd.DataFrame:  # fmt: skip
    """Rule ``cross_dataset_lgbm``: ``lgbm_cross`` on the published EP features (``source`` 'published') or
    on those computed from the recordings."""
    if source == "published":
        cells, features = published_feature_cells(reference_dir, classes)
    else:
        cells, features = computed_feature_cells(features_csv, manifest_csv)
    return lgbm_cross(cells, features, read_best_params(best_params_json), classes, out_dir, **kwargs)
