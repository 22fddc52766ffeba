"""Out-of-distribution score of a cell's EP features against the training cells (kNN distance).

Features are imputed with the training medians (NaN = undefined, e.g. avg_isi with one
spike) and standardised with the training means and standard deviations; a cell's score is
the mean Euclidean distance to its ``k`` nearest training cells divided by sqrt(n_features)
(a root-mean-square difference in training standard deviations). The threshold is the 99th
percentile of the training cells' own leave-one-out scores, so about 1 % of training cells
lie above it. kNN rather than Mahalanobis: with a few hundred cells and ~29 correlated,
skewed features the covariance is near singular, and classes form separate clusters that one
ellipsoid would cover with empty space between them.

Caveat: imputation hides missingness (a cell whose spike-train features are all undefined
scores on its other features only, pulled towards typical values).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

DEFAULT_K = 5
DEFAULT_QUANTILE = 0.99


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
        k = int(min(k, len(X) - 1))
        own = _knn_scores(z, z, k, leave_one_out=True)
        return cls(medians, means, scales, z, k, float(quantile), float(np.quantile(own, quantile)))

    def standardise(self, X) -> np.ndarray:
        return (_impute(np.atleast_2d(np.asarray(X, dtype=float)), self.medians) - self.means) / self.scales

    def score(self, X) -> np.ndarray:
        """(m,) scores of cells ``X`` (m, d)."""
        return _knn_scores(self.standardise(X), self.train_z, self.k)

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


def _knn_scores(z: np.ndarray, ref: np.ndarray, k: int, leave_one_out: bool = False) -> np.ndarray:
    """Mean distance of each row of ``z`` to its k nearest rows of ``ref``, over sqrt(d)."""
    scores = np.empty(len(z))
    step = max(1, 4_000_000 // max(ref.size, 1))  # ~32 MB of differences at a time
    for start in range(0, len(z), step):
        block = z[start : start + step]
        dist = np.sqrt(((block[:, None, :] - ref[None, :, :]) ** 2).sum(axis=-1))
        if leave_one_out:
            dist[np.arange(len(block)), np.arange(start, start + len(block))] = np.inf
        scores[start : start + len(block)] = np.sort(dist, axis=1)[:, :k].mean(axis=1)
    return scores / np.sqrt(max(z.shape[1], 1))
