"""The CV folds' embeddings that set a CNN's out-of-distribution threshold (``ood_folds.npz``).

Per CV fold of the search's best trial, the fold network (its kept, early-stopped weights)
embeds the fold's training cells and its validation cells (``sts.cnn.embed``); ``sts train``
scores each validation cell against its fold's training embeddings
(``sts.trust.ood.out_of_fold_scores``) and takes the threshold from those scores.

No extra CV: the trials already train the folds. A completed trial whose mean score is at
least the best completed trial's so far embeds its folds once at its end (one forward pass
over the training cells per fold, their weights kept in memory until then; pruned and worse
trials pay nothing) into ``oof/{study}/trial_{n}_ood.npz``, before the trial is told
COMPLETE, so the study's best trial always has one. The gather copies the best trial's to
``ood_folds.npz`` and deletes those of trials that scored lower (they can never be chosen).
A study whose best trial ran before these files existed has none: the gather then writes a
file without folds and ``sts train`` keeps the leave-one-out threshold (logged).

Format: numpy ``.npz`` read with ``allow_pickle=False``: ``arch``, ``trial``, ``n_folds``, and
per fold ``k`` ``train_{k}`` (n, d) and ``valid_{k}`` (m, d) float32 embeddings with their
specimen ids ``train_id_{k}``, ``valid_id_{k}``. Size: K x training cells x d x 4 bytes (each
fold holds every training cell once; the demo's 120 cells: 0.7-3 MB; paper scale, 4,472
training cells, InceptionV3's d = 2048, K = 3: 110 MB).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FILE = "ood_folds.npz"


@dataclass(frozen=True)
class FoldEmbeddings:
    arch: str
    trial: int
    folds: list[tuple[np.ndarray, np.ndarray]]  # per fold: (training cells' embeddings, validation cells')
    ids: list[tuple[np.ndarray, np.ndarray]]  # their specimen ids

    @property
    def n_valid(self) -> int:
        return sum(len(v) for _, v in self.folds)


def trial_path(out_dir: str | Path, study_name: str, number: int) -> Path:
    """Fold embeddings of trial ``number`` (beside its out-of-fold predictions, ``sts.cnn.tune.oof_path``)."""
    return Path(out_dir) / "oof" / study_name / f"trial_{number}_ood.npz"


def embed_folds(arch: str, packed, fits: list[tuple[np.ndarray, np.ndarray, dict]], dropout: float, weights: str,
                device: str, trial: int) -> FoldEmbeddings:  # fmt: skip
    """``fits``: per fold of trial ``trial``, (train_idx, valid_idx, the fold network's state dict)."""
    from sts.cnn.embed import network_embeddings
    from sts.cnn.train import select_device

    dev = select_device(device)
    folds, ids = [], []
    for train_idx, valid_idx, state in fits:
        emb = network_embeddings(arch, state, len(packed.classes), dropout, weights, packed.images,
                                 np.concatenate([train_idx, valid_idx]), dev)  # fmt: skip
        folds.append((emb[: len(train_idx)], emb[len(train_idx) :]))
        ids.append((packed.specimen_id[train_idx], packed.specimen_id[valid_idx]))
    return FoldEmbeddings(arch, trial, folds, ids)


def save(path: str | Path, emb: FoldEmbeddings) -> None:
    """Atomically, as ``.npz`` (no pickle)."""
    from sts.io.atomic import atomic_path

    arrays = {"arch": np.array(emb.arch), "trial": np.array(emb.trial), "n_folds": np.array(len(emb.folds))}
    for k, ((train, valid), (train_id, valid_id)) in enumerate(zip(emb.folds, emb.ids)):
        arrays |= {f"train_{k}": np.asarray(train, np.float32), f"valid_{k}": np.asarray(valid, np.float32),
                   f"train_id_{k}": np.asarray(train_id, str), f"valid_id_{k}": np.asarray(valid_id, str)}  # fmt: skip
    with atomic_path(path, ".npz") as tmp:
        np.savez(tmp, **arrays)


def save_empty(path: str | Path, arch: str) -> None:
    """A file without folds (a study whose best trial kept none): the threshold stays leave-one-out."""
    save(path, FoldEmbeddings(arch, -1, [], []))


def load(path: str | Path, arch: str | None = None) -> FoldEmbeddings:
    """Validated (``arch``: the model's); ValueError naming the file on anything inconsistent."""
    try:
        with np.load(path, allow_pickle=False) as z:
            n = int(z["n_folds"])
            emb = FoldEmbeddings(str(z["arch"]), int(z["trial"]),
                                 [(z[f"train_{k}"].astype(np.float32), z[f"valid_{k}"].astype(np.float32))
                                  for k in range(n)],
                                 [(z[f"train_id_{k}"].astype(str), z[f"valid_id_{k}"].astype(str))
                                  for k in range(n)])  # fmt: skip
    except (OSError, KeyError, TypeError, ValueError, AttributeError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a fold-embeddings file ({type(err).__name__}: {err})") from err
    if arch is not None and emb.arch != arch:
        raise ValueError(f"{path}: fold embeddings of {emb.arch!r}, not of {arch!r}")
    dims = {a.shape[1] if a.ndim == 2 else -1 for fold in emb.folds for a in fold}
    if len(dims) > 1 or -1 in dims:
        raise ValueError(f"{path}: fold embeddings of inconsistent shapes")
    for k, ((train, valid), (train_id, valid_id)) in enumerate(zip(emb.folds, emb.ids)):
        if len(train) != len(train_id) or len(valid) != len(valid_id) or not len(train) or not len(valid):
            raise ValueError(f"{path}: fold {k} has {len(train)} training and {len(valid)} validation embeddings "
                             f"for {len(train_id)} and {len(valid_id)} ids")  # fmt: skip
        if not (np.isfinite(train).all() and np.isfinite(valid).all()):
            raise ValueError(f"{path}: fold {k} has non-finite embeddings")
    return emb
