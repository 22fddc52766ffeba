"""Out-of-distribution scores: a cell's distance to its k nearest training cells, thresholded
at a quantile of scores of cells the detector's reference set does not contain.

Two spaces share that rule (``knn_scores``, ``loo_threshold``):

* ``KnnNovelty`` — EP features (the LightGBM baseline). Features are imputed with the training
  medians (NaN = undefined, e.g. avg_isi with one spike) and standardised with the training
  means and standard deviations; the score is the mean Euclidean distance to the ``k`` nearest
  training cells divided by sqrt(n_features) (a root-mean-square difference in training
  standard deviations). kNN rather than Mahalanobis: with a few hundred cells and ~29
  correlated, skewed features the covariance is near singular, and classes form separate
  clusters that one ellipsoid would cover with empty space between them. Caveat: imputation
  hides missingness (a cell whose spike-train features are all undefined scores on its other
  features only, pulled towards typical values). Threshold: the quantile of the training
  cells' own leave-one-out scores (the features do not depend on the model).
* ``EmbeddingNovelty`` — a CNN's penultimate embedding (the global-pooled features its head
  reads, ``sts.cnn.embed``), L2-normalised; the score is the mean Euclidean distance to the
  ``k`` nearest training embeddings (0..2 on the unit sphere). It sees what the network sees
  (the scalogram image), where EP features would judge another representation. Normalised,
  not standardised: the direction of a pooled ReLU feature vector carries the class
  structure, its length mostly image contrast, and standardising hundreds of near-constant
  dimensions of a few hundred cells would amplify noise (deep kNN, Sun et al., ICML 2022).
  Threshold: the quantile of out-of-fold scores (``out_of_fold_scores``): in each CV fold of
  the tuning search's best trial, the fold network's embedding of each validation cell scored
  against that network's embeddings of the fold's training cells. The final network's
  training embeddings stay the reference set that new cells are scored against. Why: those
  embeddings come from the network fitted on them, so they sit closer together than new
  cells of the same distribution do; a threshold from their own leave-one-out scores (what
  ``fit`` does without folds, and what models saved before the folds were kept carry,
  ``threshold_source: leave_one_out``) is too tight: on the demo 12.6 % of 1,508 unseen cells
  lay above it at a nominal 1 %. A validation cell is to its fold network what a new cell
  is to the final one. Caveat: the fold networks are not the final network (fewer cells,
  early-stopped rather than a fixed epoch count, other seeds), so their embedding spaces
  differ and the distances are comparable in distribution only; the final network's
  reference set is also larger (all training cells, vs the fold's (K-1)/K of them), which
  makes new cells' nearest neighbours slightly closer than in the folds: the threshold errs
  towards fewer false alarms (demo: 0.5 % of the same 1,508 cells).
  The score only detects what the embedding separates: the demo's small networks hardly
  separate foreign inputs (docs/predict.md). Measure it on the holdout: ``sts evaluate``
  writes ``ood_holdout.csv``, ``benchmarks/bench_ood.py`` compares both thresholds there.

With the default quantile 0.99, about 1 % of the cells the threshold comes from lie above it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from sts.settings import OodSettings

DEFAULT_K = OodSettings.k
DEFAULT_QUANTILE = OodSettings.quantile
LEAVE_ONE_OUT, OUT_OF_FOLD = "leave_one_out", "out_of_fold"  # where a threshold comes from


@dataclass(frozen=True)
class KnnNovelty:
    """A fitted scorer; arrays in the model's feature order."""

    medians: np.ndarray  # (d,) imputation values
    means: np.ndarray  # (d,)
    scales: np.ndarray  # (d,) standard deviations (1 where a feature is constant)
    train_z: np.ndarray  # (n, d) standardised training cells
    k: int
    quantile: float
    threshold: float

    @classmethod
    def fit(cls, X, k: int = DEFAULT_K, quantile: float = DEFAULT_QUANTILE) -> "KnnNovelty":
        """Fit on the training cells' features ``X`` (n, d), NaN allowed."""
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or len(X) < 2:
            raise ValueError(f"need at least 2 training cells for an OOD score, got shape {X.shape}")
        with warnings.catch_warnings():  # a feature undefined for every training cell: median 0
            warnings.simplefilter("ignore", RuntimeWarning)
            medians = np.nan_to_num(np.nanmedian(np.where(np.isfinite(X), X, np.nan), axis=0), nan=0.0)
        filled = _impute(X, medians)
        means, scales = filled.mean(axis=0), filled.std(axis=0)
        scales = np.where(scales > 0, scales, 1.0)
        z = (filled - means) / scales
        k, threshold = loo_threshold(z, k, quantile, scale=_rms(z))
        return cls(medians, means, scales, z, k, float(quantile), threshold)

    def standardise(self, X) -> np.ndarray:
        return (_impute(np.atleast_2d(np.asarray(X, dtype=float)), self.medians) - self.means) / self.scales

    def score(self, X) -> np.ndarray:
        """(m,) scores of cells ``X`` (m, d)."""
        return knn_scores(self.standardise(X), self.train_z, self.k) / _rms(self.train_z)

    def to_dict(self) -> dict:
        return {"method": "knn", "k": self.k, "quantile": self.quantile, "threshold": self.threshold,
                "medians": self.medians.tolist(), "means": self.means.tolist(), "scales": self.scales.tolist(),
                "train_z": self.train_z.tolist()}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict, n_features: int) -> "KnnNovelty":
        """Validated against ``n_features``; raises ValueError on anything inconsistent."""
        if not isinstance(d, dict) or d.get("method") != "knn":
            raise ValueError("ood: expected {'method': 'knn', ...}")
        try:
            vec = {key: np.asarray(d[key], dtype=float) for key in ("medians", "means", "scales")}
            train_z = np.asarray(d["train_z"], dtype=float)
            k, quantile, threshold = int(d["k"]), float(d["quantile"]), float(d["threshold"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"ood: {type(err).__name__}: {err}") from err
        if any(v.shape != (n_features,) for v in vec.values()) or train_z.ndim != 2 or train_z.shape[1] != n_features:
            raise ValueError(f"ood: arrays do not match the model's {n_features} features")
        arrays = [*vec.values(), train_z, np.array([threshold])]
        if not all(np.isfinite(a).all() for a in arrays) or (vec["scales"] <= 0).any():
            raise ValueError("ood: non-finite values or non-positive scales")
        if not 1 <= k < len(train_z):
            raise ValueError(f"ood: k={k} needs 1 <= k < {len(train_z)} training cells")
        return cls(vec["medians"], vec["means"], vec["scales"], train_z, k, quantile, threshold)


def _impute(X: np.ndarray, medians: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(X), X, medians)


def _rms(z: np.ndarray) -> float:
    """Euclidean distance -> root-mean-square difference per feature."""
    return float(np.sqrt(max(z.shape[1], 1)))


def knn_scores(z: np.ndarray, ref: np.ndarray, k: int, leave_one_out: bool = False) -> np.ndarray:
    """(m,) mean Euclidean distance of each row of ``z`` (m, d) to its ``k`` nearest rows of
    ``ref`` (n, d); ``leave_one_out``: ``z`` is ``ref`` and a row's own distance does not count."""
    scores = np.empty(len(z))
    step = max(1, 4_000_000 // max(ref.size, 1))  # ~32 MB of differences at a time
    for start in range(0, len(z), step):
        block = z[start : start + step]
        dist = np.sqrt(((block[:, None, :] - ref[None, :, :]) ** 2).sum(axis=-1))
        if leave_one_out:
            dist[np.arange(len(block)), np.arange(start, start + len(block))] = np.inf
        scores[start : start + len(block)] = np.sort(dist, axis=1)[:, :k].mean(axis=1)
    return scores


def loo_threshold(ref: np.ndarray, k: int, quantile: float, scale: float = 1.0) -> tuple[int, float]:
    """(k used, threshold): the ``quantile`` of the training cells' leave-one-out scores
    (``knn_scores / scale``); k is capped at n - 1."""
    if len(ref) < 2:
        raise ValueError(f"need at least 2 training cells for an OOD score, got {len(ref)}")
    _check_quantile(quantile)
    k = int(min(k, len(ref) - 1))
    own = knn_scores(ref, ref, k, leave_one_out=True) / scale
    return k, float(np.quantile(own, quantile))


@dataclass(frozen=True)
class EmbeddingNovelty:
    """A fitted scorer on a CNN's embeddings; ``train`` holds the training cells' unit vectors.
    ``threshold_source``: ``out_of_fold`` (the quantile of ``n_threshold`` out-of-fold scores)
    or ``leave_one_out`` (of the training cells' own; models saved before out-of-fold scores)."""

    train: np.ndarray  # (n, d) float32, rows of length 1
    k: int
    quantile: float
    threshold: float
    threshold_source: str = LEAVE_ONE_OUT
    n_threshold: int | None = None  # scores the threshold is the quantile of (None: not recorded)

    METHOD = "knn-embedding"

    @classmethod
    def fit(cls, embeddings, k: int = DEFAULT_K, quantile: float = DEFAULT_QUANTILE,
            folds: list[tuple[np.ndarray, np.ndarray]] | None = None) -> "EmbeddingNovelty":  # fmt: skip
        """Fit on the training cells' embeddings (n, d); the threshold from ``folds`` (per CV fold:
        (the fold network's embeddings of its training cells, of its validation cells), see
        ``out_of_fold_scores``) when given, else from the training cells' leave-one-out scores."""
        E = unit_rows(embeddings)
        if E.ndim != 2 or len(E) < 2:
            raise ValueError(f"need at least 2 training cells for an OOD score, got shape {E.shape}")
        if not folds:
            k, threshold = loo_threshold(E, k, quantile)
            return cls(E, k, float(quantile), threshold, LEAVE_ONE_OUT, len(E))
        _check_quantile(quantile)
        k = int(min(k, len(E) - 1))
        scores = out_of_fold_scores(folds, k)
        return cls(E, k, float(quantile), float(np.quantile(scores, quantile)), OUT_OF_FOLD, len(scores))

    @property
    def dim(self) -> int:
        return int(self.train.shape[1])

    def score(self, embeddings) -> np.ndarray:
        """(m,) scores of embeddings (m, d)."""
        return knn_scores(unit_rows(embeddings), self.train, self.k)

    def to_state(self) -> dict:
        """Tensors and plain values only: model.pt stays loadable with ``weights_only=True``."""
        import torch

        return {"method": self.METHOD, "space": "penultimate embedding (global-pooled, L2-normalised)",
                "k": self.k, "quantile": self.quantile, "threshold": self.threshold, "n_train": len(self.train),
                "threshold_source": self.threshold_source, "n_threshold": self.n_threshold,
                "train": torch.from_numpy(np.ascontiguousarray(self.train, dtype=np.float32))}  # fmt: skip

    @classmethod
    def from_state(cls, d: dict, dim: int | None = None) -> "EmbeddingNovelty":
        """Validated (``dim``: the network's embedding size); raises ValueError on anything inconsistent.
        A state saved before ``threshold_source`` was recorded has a leave-one-out threshold."""
        if not isinstance(d, dict) or d.get("method") != cls.METHOD:
            raise ValueError(f"ood: expected {{'method': {cls.METHOD!r}, ...}}")
        try:
            train = d["train"]
            train = np.asarray(train.numpy() if hasattr(train, "numpy") else train, dtype=np.float32)
            k, quantile, threshold = int(d["k"]), float(d["quantile"]), float(d["threshold"])
            source = str(d.get("threshold_source", LEAVE_ONE_OUT))
            n_threshold = None if d.get("n_threshold") is None else int(d["n_threshold"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"ood: {type(err).__name__}: {err}") from err
        if train.ndim != 2 or (dim is not None and train.shape[1] != dim):
            raise ValueError(f"ood: training embeddings of shape {train.shape} do not match the network's {dim}")
        if not np.isfinite(train).all() or not np.isfinite(threshold):
            raise ValueError("ood: non-finite values")
        if not 1 <= k < len(train):
            raise ValueError(f"ood: k={k} needs 1 <= k < {len(train)} training cells")
        if source not in (LEAVE_ONE_OUT, OUT_OF_FOLD):
            raise ValueError(f"ood: threshold_source {source!r} is neither {LEAVE_ONE_OUT!r} nor {OUT_OF_FOLD!r}")
        return cls(train, k, quantile, threshold, source, n_threshold)


def out_of_fold_scores(folds: list[tuple[np.ndarray, np.ndarray]], k: int) -> np.ndarray:
    """Every fold's validation cells scored against the same fold's training cells, each pair
    (training embeddings (n, d), validation embeddings (m, d)) from that fold's network,
    concatenated in fold order; k is capped at each fold's n."""
    scores = []
    for i, (train, valid) in enumerate(folds):
        train, valid = unit_rows(train), unit_rows(valid)
        if train.shape[1] != valid.shape[1] or len(train) < 1:
            raise ValueError(f"fold {i}: training embeddings {train.shape} and validation {valid.shape} do not pair")
        scores.append(knn_scores(valid, train, int(min(k, len(train)))))
    if not scores or not sum(map(len, scores)):
        raise ValueError("no out-of-fold validation cells to set the OOD threshold from")
    return np.concatenate(scores)


def _check_quantile(quantile: float) -> None:
    if not 0 < quantile <= 1:
        raise ValueError(f"quantile {quantile} must lie in (0, 1]")


def unit_rows(X) -> np.ndarray:
    """Rows scaled to length 1 (float32); an all-zero row stays zero."""
    X = np.asarray(X, dtype=np.float32)
    X = np.atleast_2d(X)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)
