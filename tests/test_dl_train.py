"""One fit: deterministic on CPU, resumes from its checkpoint, early stopping, step decay."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from dl_data import CLASSES, write_cohort  # noqa: E402
from sts.dl.pack import load_packed, pack  # noqa: E402
from sts.dl.train import TrainParams, fit  # noqa: E402

PARAMS = TrainParams(batch_size=8, learning_rate=1e-3, max_epochs=3, patience=5, dropout=0.3, seed=3, device="cpu")


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    root = tmp_path_factory.mktemp("dltrain")
    manifest, scal_dir = write_cohort(root, per_class=4)
    pack(manifest, scal_dir, root / "p.h5", 32, classes=CLASSES)
    return load_packed(root / "p.h5")


def run(packed, params=PARAMS, **kw):
    train, valid = packed.indices("train", 0, exclude_fold=True), packed.indices("train", 0)
    return fit("resnet18", packed.images, packed.y, 3, train, valid, params, threads=1, **kw)


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_deterministic_and_resumes_after_interruption(packed, tmp_path):
    full = run(packed)
    assert same_weights(full.state_dict, run(packed).state_dict)
    ckpt = tmp_path / "ckpt.pt"

    def crash(epoch, score):
        if epoch == 1:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        run(packed, checkpoint=ckpt, on_epoch=crash)
    assert ckpt.exists()
    resumed = run(packed, checkpoint=ckpt)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]
    assert resumed.best_epoch == full.best_epoch and resumed.best_score == full.best_score
    assert same_weights(resumed.state_dict, full.state_dict)
    other = TrainParams(**{**PARAMS.__dict__, "seed": 4})
    assert not same_weights(run(packed, other).state_dict, full.state_dict)


def test_early_stopping_and_step_decay(packed):
    still = TrainParams(batch_size=8, learning_rate=1e-3, decay_factor=0.1, decay_period=1, patience=1,
                        max_epochs=6, seed=0, device="cpu")  # fmt: skip
    result = run(packed, still)
    rates = [h["learning_rate"] for h in result.history]
    assert rates == pytest.approx([1e-3 * 0.1**e for e in range(len(rates))])
    scores = [h["valid_balanced_accuracy"] for h in result.history]
    # stopped once the score had not improved for `patience` epochs, and kept the best epoch
    if result.stopped_early:
        assert len(scores) < 6 and max(scores[: result.best_epoch]) == result.best_score == max(scores)
        assert scores[-1] <= result.best_score
    else:
        assert len(scores) == 6 and all(b > a for a, b in zip(scores, scores[1:]))
