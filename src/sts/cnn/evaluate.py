"""Holdout evaluation of a saved CNN, in the format shared with the baseline (sts.trust.metrics).

Beside metrics.json it writes ``ood_holdout.csv`` (``specimen_id, label, predicted, ood_score,
in_distribution``): the model's out-of-distribution flag on its holdout cells, whose share
flagged is the detector's false-alarm rate on unseen cells of the training distribution
(scores empty for a model.pt saved without a detector).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from sts.settings import DEFAULT_DEVICE

log = logging.getLogger(__name__)

OOD_HOLDOUT = "ood_holdout.csv"


def read_ood(meta: dict, model_path, model):
    """The model.pt's ``EmbeddingNovelty``, or None (logged) for a model saved without one."""
    from sts.cnn.embed import embedding_dim
    from sts.trust.ood import EmbeddingNovelty

    if meta.get("ood") is None:
        log.warning("%s: saved without an out-of-distribution detector (trained before it existed): "
                    "ood_score and in_distribution stay empty; re-train to add one", model_path)  # fmt: skip
        return None
    try:
        return EmbeddingNovelty.from_state(meta["ood"], embedding_dim(model))
    except ValueError as err:
        raise ValueError(f"{model_path}: {err}") from err


def evaluate_model(
    model_path: str | Path, packed, out_dir: str | Path, device: str = DEFAULT_DEVICE, threads: int | None = None
) -> dict:
    """Predict every holdout cell once; write metrics.json, predictions.csv, confusion_matrix.png."""
    import torch

    from sts.cnn.final import load_model
    from sts.cnn.embed import proba_and_embeddings
    from sts.cnn.train import select_device
    from sts.io.atomic import write_csv_atomic
    from sts.trust.metrics import write_evaluation

    if threads:
        torch.set_num_threads(threads)
    dev = select_device(device)
    model, meta = load_model(model_path, dev)
    if list(meta["classes"]) != list(packed.classes):
        raise ValueError(f"{model_path}: classes {meta['classes']} differ from the packed file's {packed.classes}")
    if list(meta["input_size"]) != list(packed.input_size):
        raise ValueError(f"{model_path}: input size {meta['input_size']} differs from {packed.input_size}")
    idx = packed.indices("test")
    if not len(idx):
        raise ValueError("no holdout (split 'test') cells in the packed file")
    proba, emb = proba_and_embeddings(model, packed.images, idx, dev)
    pred = [packed.classes[i] for i in proba.argmax(axis=1)]
    metrics = write_evaluation(out_dir, packed.specimen_id[idx], packed.label[idx], pred, proba, packed.classes,
                               title=f"{meta['arch']}, holdout")  # fmt: skip
    ood = read_ood(meta, model_path, model)
    scores = ood.score(emb) if ood is not None else np.full(len(idx), np.nan)
    flags = pd.array([bool(s <= ood.threshold) for s in scores] if ood is not None else [pd.NA] * len(idx),
                     dtype="boolean")  # fmt: skip
    write_csv_atomic(Path(out_dir) / OOD_HOLDOUT, pd.DataFrame({"specimen_id": packed.specimen_id[idx],
                     "label": packed.label[idx], "predicted": pred, "ood_score": scores, "in_distribution": flags}))
    if ood is not None:
        log.info("%s holdout: %d of %d cells above the OOD threshold %.4f (the %g quantile of %s scores)",
                 meta["arch"], int((~flags).sum()), len(idx), ood.threshold, ood.quantile,
                 ood.threshold_source)  # fmt: skip
    log.info("%s holdout: balanced accuracy %.4f, weighted F1 %.4f, accuracy %.4f (n=%d)", meta["arch"],
             *(metrics[k] for k in ("balanced_accuracy", "weighted_f1", "accuracy", "n_test")))  # fmt: skip
    return metrics
