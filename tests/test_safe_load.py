"""Model files and checkpoints never run code (weights_only loading): a crafted model.pt is refused."""

from __future__ import annotations

import os

import numpy as np
import pytest

from sts.cli import main
from sts.cnn.safe_torch import UnsafeModelError, plain, safe_load


class _Payload:
    """What an attacker pickles: unpickling it calls os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _crafted_model(path, marker):
    import torch

    torch.save({"state_dict": {}, "arch": "mobilenet_v2", "classes": ["a", "b"], "exploit": _Payload(marker)}, path)
    return path


def test_unpickling_the_crafted_file_would_run_code(tmp_path):
    """The payload is real: the unsafe loader runs it (what main did before)."""
    import torch

    marker = tmp_path / "ran"
    torch.load(_crafted_model(tmp_path / "model.pt", marker), weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("loader", ["load_model", "checkpoint"])
def test_crafted_file_is_refused_and_not_executed(tmp_path, loader):
    marker = tmp_path / "ran"
    path = _crafted_model(tmp_path / "model.pt", marker)
    if loader == "load_model":
        from sts.cnn.final import load_model

        with pytest.raises(UnsafeModelError, match="refused to load"):
            load_model(path)
    else:  # a training checkpoint found in the run folder
        from sts.cnn.train import TrainParams, fit

        images = np.zeros((4, 3, 32, 32), np.float16)
        with pytest.raises(UnsafeModelError, match="refused to load"):
            fit("mobilenet_v2", images, np.array([0, 1, 0, 1]), 2, np.arange(4), None,
                TrainParams(max_epochs=1, batch_size=4), checkpoint=path)  # fmt: skip
    assert not marker.exists()


def test_sts_predict_refuses_crafted_model(tmp_path, capsys):
    marker = tmp_path / "ran"
    path = _crafted_model(tmp_path / "model.pt", marker)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.nwb").write_bytes(b"not nwb")
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--model", str(path), "--out", str(tmp_path / "p.csv"), str(tmp_path / "in")])
    assert "refused to load" in str(exit_.value.code)
    assert not marker.exists()


def test_checkpoint_and_model_metadata_are_plain(tmp_path):
    """What we save passes the safe loader: numpy values become Python ones, tensors stay tensors."""
    import torch

    obj = plain({"fs_hz": np.float64(4000.0), "n": np.int64(3), "freqs": np.arange(3.0), "t": torch.ones(2),
                 "nested": [{"a": np.float32(0.5)}], "pair": (1, 2)})  # fmt: skip
    torch.save(obj, tmp_path / "m.pt")
    back = safe_load(tmp_path / "m.pt")
    assert back["fs_hz"] == 4000.0 and type(back["fs_hz"]) is float and back["freqs"] == [0.0, 1.0, 2.0]
    assert torch.equal(back["t"], torch.ones(2)) and back["nested"][0]["a"] == 0.5
    with pytest.raises(UnsafeModelError):  # numpy scalars are refused by weights_only: why plain exists
        torch.save({"x": np.float64(1.0)}, tmp_path / "np.pt")
        safe_load(tmp_path / "np.pt")
