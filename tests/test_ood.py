"""The embedding OOD detector (``sts.trust.ood.EmbeddingNovelty``): threshold, far points, safe storage."""

from __future__ import annotations

import numpy as np
import pytest


def test_embedding_detector_threshold_far_points_and_storage(tmp_path):
    import torch

    from sts.trust.ood import EmbeddingNovelty

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 32)) * 3
    E = np.abs(centres[rng.integers(4, size=400)] + rng.normal(size=(400, 32)))  # pooled ReLU features: >= 0
    ood = EmbeddingNovelty.fit(E * rng.uniform(0.5, 2, size=(400, 1)))  # lengths vary (image contrast)
    own = ood.score(E)  # scaling a row changes nothing: unit vectors
    assert (own > ood.threshold).mean() == pytest.approx(0.01, abs=0.01)
    fresh = np.abs(centres[rng.integers(4, size=2000)] + rng.normal(size=(2000, 32)))
    assert (ood.score(fresh) > ood.threshold).mean() < 0.05  # new cells of the same distribution
    far = np.abs(rng.normal(size=(20, 32)))  # no cluster
    assert (ood.score(far) > ood.threshold).all()
    torch.save({"ood": ood.to_state()}, tmp_path / "m.pt")
    back = EmbeddingNovelty.from_state(torch.load(tmp_path / "m.pt", weights_only=True)["ood"], 32)
    np.testing.assert_array_equal(back.score(far), ood.score(far))
    with pytest.raises(ValueError, match="do not match"):
        EmbeddingNovelty.from_state(ood.to_state(), 64)
    with pytest.raises(ValueError, match="k=5 needs"):
        EmbeddingNovelty.from_state({**ood.to_state(), "train": ood.to_state()["train"][:3]}, 32)


def test_out_of_fold_threshold_matches_sklearn_neighbours():
    """Each fold's validation cells scored against that fold's training cells (scikit-learn's
    NearestNeighbors on unit rows), concatenated: the threshold is their numpy quantile; the final
    reference set stays the training embeddings given."""
    from sklearn.neighbors import NearestNeighbors
    from sklearn.preprocessing import normalize

    from sts.trust.ood import EmbeddingNovelty

    rng = np.random.default_rng(1)
    centres = np.abs(rng.normal(size=(3, 16))) * 2
    make = lambda n: np.abs(centres[rng.integers(3, size=n)] + rng.normal(size=(n, 16)))  # noqa: E731
    folds = [(make(40), make(20)), (make(41), make(19)), (make(3), make(7))]  # last fold: fewer than k cells
    E = make(60)
    ood = EmbeddingNovelty.fit(E, k=5, quantile=0.9, folds=folds)
    expected = []
    for train, valid in folds:
        nn = NearestNeighbors(n_neighbors=min(5, len(train))).fit(normalize(train))
        expected.append(nn.kneighbors(normalize(valid))[0].mean(axis=1))
    expected = np.concatenate(expected)
    assert ood.threshold_source == "out_of_fold" and ood.n_threshold == len(expected) == 46 and ood.k == 5
    assert ood.threshold == pytest.approx(np.quantile(expected, 0.9), rel=1e-5)
    np.testing.assert_allclose(ood.train, normalize(E), rtol=1e-6)
    loo = EmbeddingNovelty.fit(E, k=5, quantile=0.9)  # without folds: the training cells' own scores
    nn = NearestNeighbors(n_neighbors=6).fit(normalize(E))
    own = nn.kneighbors(normalize(E))[0][:, 1:].mean(axis=1)  # the nearest is the cell itself
    assert loo.threshold_source == "leave_one_out" and loo.threshold == pytest.approx(np.quantile(own, 0.9), rel=1e-5)
    with pytest.raises(ValueError, match="do not pair"):
        EmbeddingNovelty.fit(E, folds=[(make(10), make(5)[:, :8])])


def test_a_state_saved_before_out_of_fold_thresholds_still_loads(tmp_path):
    """model.pt files written before threshold_source existed: their (leave-one-out) threshold is kept."""
    import torch

    from sts.trust.ood import EmbeddingNovelty

    E = np.abs(np.random.default_rng(2).normal(size=(30, 8)))
    state = EmbeddingNovelty.fit(E).to_state()
    old = {k: v for k, v in state.items() if k not in ("threshold_source", "n_threshold")}
    torch.save({"ood": old}, tmp_path / "old.pt")
    back = EmbeddingNovelty.from_state(torch.load(tmp_path / "old.pt", weights_only=True)["ood"], 8)
    assert back.threshold == state["threshold"] and back.threshold_source == "leave_one_out"
    assert back.n_threshold is None
    with pytest.raises(ValueError, match="threshold_source 'guess'"):
        EmbeddingNovelty.from_state({**state, "threshold_source": "guess"}, 8)
