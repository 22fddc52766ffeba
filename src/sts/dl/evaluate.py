"""Holdout evaluation of a saved CNN, in the format shared with the baseline (sts.metrics)."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def evaluate_model(
    model_path: str | Path, packed, out_dir: str | Path, device: str = "auto", threads: int | None = None
) -> dict:
    """Predict every holdout cell once; write metrics.json, predictions.csv, confusion_matrix.png."""
    import torch

    from sts.dl.final import load_model
    from sts.dl.train import predict_proba, select_device
    from sts.metrics import write_evaluation

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
    proba = predict_proba(model, packed.images, idx, dev)
    pred = [packed.classes[i] for i in proba.argmax(axis=1)]
    metrics = write_evaluation(out_dir, packed.specimen_id[idx], packed.label[idx], pred, proba, packed.classes,
                               title=f"{meta['arch']}, holdout")  # fmt: skip
    log.info("%s holdout: balanced accuracy %.4f, weighted F1 %.4f, accuracy %.4f (n=%d)", meta["arch"],
             *(metrics[k] for k in ("balanced_accuracy", "weighted_f1", "accuracy", "n_test")))  # fmt: skip
    return metrics
