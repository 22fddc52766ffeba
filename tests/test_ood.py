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
