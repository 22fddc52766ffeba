"""Packing scalograms into one array: layout, normalisation, memory map, bad input."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from cnn_data import CLASSES, N_FREQS, N_TIMES, write_cohort
from sts.cnn.pack import IMAGENET_MEAN, IMAGENET_STD, NormParams, load_packed, pack, prepare_images


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return write_cohort(tmp_path_factory.mktemp("dlpack"), per_class=4)


def test_pack_layout_and_labels(cohort, tmp_path):
    manifest, scal_dir = cohort
    out = tmp_path / "p.h5"
    assert pack(manifest, scal_dir, out, 40, classes=CLASSES, dtype="float32") == 12
    packed = load_packed(out)
    table = pd.read_csv(manifest, dtype={"specimen_id": str})
    ok = table[table["status"] == "ok"]
    assert isinstance(packed.images, np.memmap) and packed.images.shape == (12, 3, 40, 40)
    assert list(packed.specimen_id) == list(ok["specimen_id"]) and list(packed.label) == list(ok["label"])
    assert list(packed.fold) == list(ok["fold"]) and list(packed.split) == list(ok["split"])
    assert packed.classes == CLASSES and list(packed.y[:4]) == [0] * 4
    assert packed.n_times == N_TIMES and len(packed.freqs_hz) == N_FREQS and packed.fs_hz == 4000
    with h5py.File(out) as f:  # the memory map reads exactly what HDF5 stored
        np.testing.assert_array_equal(f["images"][()], packed.images)
    # channels: rheobase, +40 pA, rheobase again
    raw = packed.images * np.array(IMAGENET_STD)[:, None, None] + np.array(IMAGENET_MEAN)[:, None, None]
    np.testing.assert_allclose(raw[:, 0], raw[:, 2], atol=1e-5)
    assert np.allclose(raw.min(axis=(1, 2, 3)), 0, atol=1e-5) and np.allclose(raw.max(axis=(1, 2, 3)), 1, atol=1e-5)


def test_prepare_images_matches_a_direct_computation(cohort):
    import torch
    import torch.nn.functional as F

    _, scal_dir = cohort
    with h5py.File(scal_dir / "cell1000.h5") as f:
        scal = f["scalogram"][()]
    norm = NormParams(magnitude=True, log=True, scaling="channel", imagenet=False)
    got = prepare_images(scal[None], (16, 48), norm)[0].numpy()
    x = torch.from_numpy(np.log1p(np.abs(scal)))[None]
    x = F.interpolate(x, size=(16, 48), mode="bilinear", antialias=True)[0].numpy()[[0, 1, 0]]
    lo, hi = x.min(axis=(1, 2), keepdims=True), x.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(got, (x - lo) / (hi - lo), atol=1e-6)
    assert got.shape == (3, 16, 48)


def test_empty_class_and_bad_scaling_are_rejected(cohort, tmp_path):
    manifest, scal_dir = cohort
    with pytest.raises(ValueError, match=r"no usable cell of class\(es\) \['Excitatory'\]"):
        pack(manifest, scal_dir, tmp_path / "p.h5", 32, classes=[*CLASSES, "Excitatory"])
    with pytest.raises(ValueError, match=r"labels \['Vip/Lamp5'\] are not among classes"):
        pack(manifest, scal_dir, tmp_path / "p.h5", 32, classes=CLASSES[:2])
    with pytest.raises(ValueError, match="scaling 'global'"):
        NormParams(scaling="global")
    assert not (tmp_path / "p.h5").exists()


def test_unreadable_cell_is_named(cohort, tmp_path):
    manifest, scal_dir = cohort
    broken = tmp_path / "scal"
    broken.mkdir()
    for p in scal_dir.glob("*.h5"):
        (broken / p.name).write_bytes(p.read_bytes())
    (broken / "cell2001.h5").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match=r"cell cell2001: cannot read scalogram .*cell2001\.h5"):
        pack(manifest, broken, tmp_path / "p.h5", 32, classes=CLASSES)
