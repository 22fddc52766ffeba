"""Final model: refit with the best parameters on all training cells, save ``model.pt``.

No cells are held out for early stopping: the refit trains for ``final_epochs`` of
best_params.json, the mean over the CV folds of the epoch at which early stopping kept the
best weights. ``model.pt`` carries everything needed to classify a new recording: weights,
arch, classes and their class scheme (``label_scheme``; absent before schemes: study), input size,
normalisation, and the sweep-selection and scalogram parameters
that produced the inputs (``preparation``), and ``ood``: the out-of-distribution detector
(``sts.trust.ood.EmbeddingNovelty``): the final network's embeddings of the training cells as
its reference set, its threshold from the search's out-of-fold embeddings (``ood_folds.npz``,
``sts.cnn.fold_embeddings``; without them, from the training cells' leave-one-out scores),
as tensors and plain values (``weights_only=True`` loads it).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from sts.cnn.safe_torch import plain
from sts.cnn.train import TrainParams, fit
from sts.settings import DEFAULT_DEVICE, SCHEME_KEY, TuneSettings, default

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
CHECKPOINT = "checkpoint.pt"


def train_final(
    packed,
    arch: str,
    best_params: dict,
    out_dir: str | Path,
    seed: int = default(TuneSettings, "seed"),
    weights: str = default(TuneSettings, "weights"),
    weights_path: str | None = None,
    device: str = DEFAULT_DEVICE,
    preparation: dict | None = None,
    threads: int | None = None,
    recalibrate_bn: bool = default(TuneSettings, "recalibrate_bn"),
    scheme: str = "study",
    ood_folds: str | Path | None = None,
) -> Path:
    """Refit and write model.pt, history.csv and training_curves.png to ``out_dir``.
    ``best_params``: best_params.json of ``arch``'s search (its ``arch`` must be ``arch``);
    ``scheme``: the class scheme of the labels (model.pt's ``label_scheme``);
    ``ood_folds``: that search's ood_folds.npz (None: a leave-one-out OOD threshold, logged)."""
    from sts.io.atomic import save_torch_atomic, write_csv_atomic

    if best_params.get("arch") != arch:
        raise ValueError(f"best parameters of {best_params.get('arch')!r} given to train {arch!r}: "
                         f"use the best_params.json of {arch}'s search")  # fmt: skip
    folds = read_folds(ood_folds, arch, packed, best_params)  # checked before the fit
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hp = best_params["params"]
    epochs = int(best_params["final_epochs"])
    params = TrainParams(**hp, max_epochs=epochs, seed=seed, weights=weights, weights_path=weights_path,
                         device=device, recalibrate_bn=recalibrate_bn)  # fmt: skip
    train_idx = packed.indices("train")
    log.info("%s: final fit on %d training cells for %d epochs with %s", arch, len(train_idx), epochs, hp)
    result = fit(arch, packed.images, packed.y, len(packed.classes), train_idx, None, params,
                 checkpoint=out / CHECKPOINT, threads=threads)  # fmt: skip
    history = pd.DataFrame(result.history)
    ood = fit_ood(arch, result.state_dict, len(packed.classes), hp.get("dropout", 0.0), packed, train_idx,
                  weights, device, folds)  # fmt: skip
    model = {
        "state_dict": result.state_dict, "arch": arch, "classes": list(packed.classes), SCHEME_KEY: scheme,
        "input_size": list(packed.input_size), "normalisation": json.loads(packed.norm.to_json()),
        "image_dtype": str(np.asarray(packed.images[:0]).dtype),  # packed storage: inputs were rounded to it
        "scalogram_dtype": packed.scalogram_dtype,  # and before that, the scalograms (sts predict does both)
        "dropout": hp.get("dropout", 0.0), "train_params": {**hp, "epochs": epochs, "seed": seed, "weights": weights},
        "cv_balanced_accuracy": best_params.get("cv_balanced_accuracy"), "preparation": preparation or {},
        "scalogram_axes": {"freqs_hz": np.asarray(packed.freqs_hz).tolist(), "fs_hz": packed.fs_hz,
                           "n_times": packed.n_times},
        "history": result.history, "ood": ood,
    }  # fmt: skip
    write_csv_atomic(out / "history.csv", history)
    plot_curves(history, out / "training_curves.png", arch, best_params)
    tensors = ("state_dict", "ood")  # plain() would turn the OOD's training embeddings into a list
    model = {**plain({k: v for k, v in model.items() if k not in tensors}), **{k: model[k] for k in tensors}}
    save_torch_atomic(model, out / MODEL_FILE)
    (out / CHECKPOINT).unlink(missing_ok=True)
    return out / MODEL_FILE


def read_folds(path, arch: str, packed, best_params: dict) -> list | None:
    """The search's fold embeddings (``sts.cnn.fold_embeddings``) as (train, valid) pairs, checked
    against the packed training cells and the best trial; None without any (logged)."""
    from sts.cnn import fold_embeddings
    from sts.cnn.tune import cv_folds

    if path is None:
        log.warning("%s: no fold embeddings given (ood_folds.npz of the search): the OOD threshold comes from the "
                    "training cells' leave-one-out scores, which flags more unseen cells than 1 - quantile", arch)
        return None
    emb = fold_embeddings.load(path, arch)
    if not emb.folds:
        log.warning("%s: %s holds no folds: leave-one-out OOD threshold", arch, path)
        return None
    if emb.trial != best_params.get("trial", emb.trial):
        raise ValueError(f"{path}: fold embeddings of trial {emb.trial}, but best_params.json is trial "
                         f"{best_params.get('trial')}: gather the search again")  # fmt: skip
    valid = sorted(str(s) for _, v in emb.ids for s in v)
    expected = sorted(str(s) for _, v in cv_folds(packed) for s in packed.specimen_id[v])
    if valid != expected:
        raise ValueError(f"{path}: the folds' validation cells are not the packed file's {len(expected)} CV cells "
                         f"({len(valid)} given): fold embeddings of other data")  # fmt: skip
    return emb.folds


def fit_ood(arch, state_dict, n_classes, dropout, packed, train_idx, weights, device, folds=None) -> dict:
    """``EmbeddingNovelty.to_state()``: the trained network's embeddings of the training cells,
    the threshold from ``folds`` (``read_folds``; None: leave-one-out)."""
    from sts.cnn.embed import network_embeddings
    from sts.cnn.train import select_device
    from sts.trust.ood import EmbeddingNovelty

    emb = network_embeddings(arch, state_dict, n_classes, dropout, weights, packed.images, train_idx,
                             select_device(device))  # fmt: skip
    if folds and folds[0][0].shape[1] != emb.shape[1]:
        raise ValueError(f"{arch}: fold embeddings of size {folds[0][0].shape[1]}, the network's are {emb.shape[1]}")
    ood = EmbeddingNovelty.fit(emb, folds=folds)
    log.info("%s: OOD detector on %d training embeddings (d=%d, k=%d): threshold %.4f at the %g quantile of %d "
             "%s scores", arch, len(emb), ood.dim, ood.k, ood.threshold, ood.quantile, ood.n_threshold,
             ood.threshold_source)  # fmt: skip
    return ood.to_state()


def plot_curves(history: pd.DataFrame, path: Path, arch: str, best_params: dict) -> None:
    """Training loss and learning rate of the refit; CV fold scores of the chosen trial in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from sts.io.atomic import save_figure_atomic

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2), constrained_layout=True)
    ax1.plot(history["epoch"], history["train_loss"], marker="o")
    ax1.set(xlabel="epoch", ylabel="training loss (cross-entropy)", title=f"{arch}: final fit")
    ax2.plot(history["epoch"], history["learning_rate"], marker="o")
    ax2.set(xlabel="epoch", ylabel="learning rate", yscale="log")
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs
    scores = ", ".join(f"{s:.3f}" for s in best_params.get("fold_scores", []))
    fig.suptitle(f"CV balanced accuracy per fold of the chosen parameters: {scores}", fontsize=9)
    try:
        save_figure_atomic(fig, path)
    finally:
        plt.close(fig)


def load_model(path: str | Path, device="cpu"):
    """(model in eval mode, metadata dict) from a model.pt, loaded without unpickling code
    (``UnsafeModelError`` for a file that would need it)."""
    from sts.cnn.model_meta import check_network
    from sts.cnn.models import model_from_meta
    from sts.cnn.safe_torch import safe_load

    meta = safe_load(path)
    check_network(meta, path)  # before the network is built from it
    return model_from_meta(meta, device), meta
