"""One fit: deterministic on CPU, resumes from its checkpoint, early stopping, step decay."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cnn_data import CLASSES, write_cohort  # noqa: E402
from sts.cnn.pack import load_packed, pack  # noqa: E402
from sts.cnn.train import TrainParams, fit  # noqa: E402

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


def on_device(images, device, share=None):
    """device_images without its CUDA check: the whole array as a tensor on ``device``."""
    return torch.from_numpy(np.array(images)).to(device)


def test_batches_indexed_on_the_device_give_the_same_fit(packed, monkeypatch):
    """The CUDA path's data handling (the packed array as one tensor on the device, the epoch's
    order sent once, validation and BN recalibration reading the same tensor) trains exactly as
    batches read from the memory map: checked on the CPU, where it can run."""
    import sts.cnn.train as train

    params = TrainParams(**{**PARAMS.__dict__, "recalibrate_bn": True})
    assert train.device_images(packed.images, torch.device("cpu")) is None  # the CPU reads the memory map
    host = run(packed, params)
    monkeypatch.setattr(train, "device_images", on_device)
    resident = run(packed, params)
    assert resident.history[0]["train_loss"] > 0
    for a, b in zip(host.history, resident.history):
        assert {k: v for k, v in a.items() if k not in ("seconds", "images_per_s")} == {
            k: v for k, v in b.items() if k not in ("seconds", "images_per_s")}
    assert same_weights(host.state_dict, resident.state_dict)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA only (not available here)")
def test_cuda_fit_keeps_the_packed_array_on_the_gpu(packed, caplog):
    import logging

    from sts.cnn.train import device_images

    caplog.set_level(logging.INFO, logger="sts.cnn.train")
    result = run(packed, TrainParams(**{**PARAMS.__dict__, "device": "cuda", "recalibrate_bn": True}))
    assert "for the fit" in caplog.text  # the array went to the GPU
    assert len(result.history) == PARAMS.max_epochs and all(np.isfinite(h["train_loss"]) for h in result.history)
    assert all(v.device.type == "cpu" for v in result.state_dict.values())
    gpu = torch.device("cuda")
    assert device_images(packed.images, gpu).dtype == torch.float16  # storage type kept
    assert device_images(packed.images, gpu, share=0.0) is None  # too large: host batches


def test_batch_norm_recalibration_leaves_out_a_last_batch_of_one():
    """5 training images in batches of 2: torch's update_bn over the two full batches, not a crash
    on the lone fifth (ResNet18 at 32 px ends in 1x1 maps)."""
    import torch
    from torch.optim.swa_utils import update_bn

    from sts.cnn.models import build_model
    from sts.cnn.train import recalibrate_bn

    torch.manual_seed(0)
    images = np.random.default_rng(0).normal(size=(5, 3, 32, 32)).astype(np.float16)
    ours, reference = build_model("resnet18", 3, 0.0, 32), build_model("resnet18", 3, 0.0, 32)
    reference.load_state_dict(ours.state_dict())
    recalibrate_bn(ours, images, np.arange(5), 2, torch.device("cpu"))
    update_bn([torch.from_numpy(images[i : i + 2].astype(np.float32)) for i in (0, 2)], reference)
    for name, value in reference.state_dict().items():
        if "running_" in name:
            assert torch.equal(ours.state_dict()[name], value), name
    with pytest.raises(ValueError, match="more than 1 value per channel"):  # what the lone image would do
        update_bn([torch.from_numpy(images[4:].astype(np.float32))], reference)
