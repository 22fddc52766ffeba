"""Per-cell scalogram files: float16 storage, one chunk per sweep, compression options, cells
beyond float16's range excluded, and every reader (pack, report) taking old float32 files too."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from sts.cli import main
from sts.io.hdf5 import read_attrs
from sts.prep.scalogram_file import ScalogramParams, as_stored, scalogram_file, scalogram_of

FS_HZ = 4000.0
PARAMS = ScalogramParams(fmin_hz=20, fmax_hz=200, n_freqs=48)


def traces(seed: int = 0, n: int = 1200) -> np.ndarray:
    """Two voltage-like sweeps (mV): -70 mV, noise, 1 ms spikes; the second spikes more."""
    rng = np.random.default_rng(seed)
    v = -70.0 + 0.5 * rng.standard_normal((2, n))
    for ch, n_spikes in enumerate((3, 8)):
        for t0 in rng.choice(n - 8, size=n_spikes, replace=False):
            v[ch, t0 : t0 + 4] += (60.0, 110.0, 60.0, 20.0)
    return v.astype(np.float32)


def write_sweeps(path, traces_mv, sid="c1", label="Pvalb"):
    with h5py.File(path, "w") as f:
        f["traces_mv"] = traces_mv
        f.attrs.update(specimen_id=sid, label=label, status="ok", reason="", fs_hz=FS_HZ)
    return path


def write_old_file(path, scal, label="Pvalb"):
    """A scalogram file as written before float16: one contiguous float32 dataset."""
    with h5py.File(path, "w") as f:
        f.create_dataset("scalogram", data=scal.astype(np.float32))
        f.attrs.update(freqs_hz=PARAMS.freqs_hz, fs_hz=FS_HZ, wavelet="mexh", status="ok", label=label)


def test_float16_file_round_trips_within_float16_precision(tmp_path):
    v = traces()
    assert scalogram_file(write_sweeps(tmp_path / "sw.h5", v), tmp_path / "sc.h5", PARAMS) == "ok"
    exact = scalogram_of(v, FS_HZ, PARAMS)  # the float32 CWT
    with h5py.File(tmp_path / "sc.h5") as f:
        ds = f["scalogram"]
        assert ds.dtype == np.float16 and ds.shape == (2, 48, 1200)
        assert ds.chunks == (1, 48, 1200) and ds.compression is None  # one chunk per sweep
        stored = ds[()]
    np.testing.assert_array_equal(stored, exact.astype(np.float16))  # what sts predict rounds to
    # Round to nearest: half a float16 ulp (2**-11 relative; subnormals below 2**-14 step 2**-24).
    err = np.abs(stored.astype(np.float64) - exact)
    assert (err <= np.maximum(np.abs(exact) * 2.0**-11, 2.0**-25)).all()
    assert err.max() / np.abs(exact).max() < 5e-4


@pytest.mark.parametrize("compression", ["gzip", "lzf"])
def test_compression_changes_the_file_not_the_values(tmp_path, compression):
    sweeps = write_sweeps(tmp_path / "sw.h5", traces(1, n=4800))
    files = {}
    for option in ("none", compression):
        files[option] = tmp_path / f"{option}.h5"
        scalogram_file(sweeps, files[option], ScalogramParams(n_freqs=180, compression=option))
    with h5py.File(files["none"]) as plain, h5py.File(files[compression]) as packed:
        assert packed["scalogram"].compression == compression and packed["scalogram"].shuffle
        assert packed["scalogram"].chunks == plain["scalogram"].chunks == (1, 180, 4800)
        np.testing.assert_array_equal(packed["scalogram"][()], plain["scalogram"][()])
        assert read_attrs(packed) == read_attrs(plain)
    assert files[compression].stat().st_size < 0.9 * files["none"].stat().st_size
    assert files["none"].stat().st_size < 0.51 * 2 * 180 * 4800 * 4  # half the float32 bytes
    with pytest.raises(ValueError, match="compression 'zstd'"):
        ScalogramParams(compression="zstd")


def test_command_line_compression_option(tmp_path):
    sweeps = write_sweeps(tmp_path / "sw.h5", traces())
    assert main(["scalogram", str(sweeps), str(tmp_path / "sc.h5"), "--compression", "gzip"], warm=False) == 0
    with h5py.File(tmp_path / "sc.h5") as f:
        assert f["scalogram"].compression == "gzip" and f["scalogram"].dtype == np.float16
    with pytest.raises(SystemExit, match="compression 'bzip2'"):
        main(["scalogram", str(sweeps), str(tmp_path / "x.h5"), "--compression", "bzip2"], warm=False)


def test_values_beyond_float16_are_excluded_not_inf(tmp_path):
    """A trace in µV instead of mV: coefficients pass 65504; the cell is excluded with the reason."""
    sweeps = write_sweeps(tmp_path / "sw.h5", traces() * 1000)
    assert scalogram_file(sweeps, tmp_path / "sc.h5", PARAMS) == "excluded"
    with h5py.File(tmp_path / "sc.h5") as f:
        assert "scalogram" not in f and f.attrs["status"] == "excluded"
        assert "scalogram values beyond float16 range" in f.attrs["reason"] and "> 65504" in f.attrs["reason"]
    stored, reason = as_stored(np.array([1.0, np.nan], dtype=np.float32))
    assert stored is None and reason == "non-finite scalogram values"
    stored, reason = as_stored(np.array([65504.0, -65519.0], dtype=np.float32))  # rounds to the largest float16
    assert reason == "" and np.isfinite(stored).all()
    assert as_stored(np.array([1e6], dtype=np.float32), "float32")[1] == ""  # legacy models: no rounding


def cohort(root, dtype_of=lambda i: np.float16, n=4):
    """``n`` cells (two classes) written by the scalogram step, or as older float32 files."""
    scal_dir, rows = root / "scal", []
    scal_dir.mkdir()
    for i in range(n):
        sid, label = f"c{i}", ("Pvalb", "Sst")[i % 2]
        if dtype_of(i) == np.float16:
            scalogram_file(write_sweeps(root / f"sw{i}.h5", traces(i), sid, label), scal_dir / f"{sid}.h5", PARAMS)
        else:
            write_old_file(scal_dir / f"{sid}.h5", scalogram_of(traces(i), FS_HZ, PARAMS), label)
        rows.append({"specimen_id": sid, "dataset": "seq", "label": label, "status": "ok", "reason": "",
                     "split": "train", "fold": i % 2})  # fmt: skip
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv", scal_dir


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_pack_reads_float16_and_old_float32_files(tmp_path, dtype):
    """Each file's values as stored go through the same transform (float32 files as before)."""
    pytest.importorskip("torch")
    from sts.cnn.pack import NormParams, load_packed, pack, prepare_images

    manifest, scal_dir = cohort(tmp_path, lambda i: dtype)
    norm = NormParams(log=True)
    pack(manifest, scal_dir, tmp_path / "p.h5", 24, norm, classes=["Pvalb", "Sst"])
    packed = load_packed(tmp_path / "p.h5")
    assert packed.scalogram_dtype == np.dtype(dtype).name
    for i, sid in enumerate(packed.specimen_id):
        with h5py.File(scal_dir / f"{sid}.h5") as f:
            scal = f["scalogram"][()]
        assert scal.dtype == dtype
        expected = prepare_images(scal[None], (24, 24), norm)[0].numpy().astype(np.float16)
        np.testing.assert_array_equal(packed.images[i], expected)


def test_pack_refuses_mixed_storage_types(tmp_path):
    pytest.importorskip("torch")
    from sts.cnn.pack import pack

    manifest, scal_dir = cohort(tmp_path, lambda i: np.float32 if i == 2 else np.float16)
    with pytest.raises(ValueError, match="cell c2: scalogram stored as float32.*re-run the scalogram step"):
        pack(manifest, scal_dir, tmp_path / "p.h5", 24, classes=["Pvalb", "Sst"])


def test_packed_without_scalogram_dtype_reads_as_float32(tmp_path):
    pytest.importorskip("torch")
    from sts.cnn.pack import load_packed, pack

    manifest, scal_dir = cohort(tmp_path, lambda i: np.float32)
    pack(manifest, scal_dir, tmp_path / "p.h5", 24, classes=["Pvalb", "Sst"])
    with h5py.File(tmp_path / "p.h5", "a") as f:  # as packed before the attribute existed
        del f.attrs["scalogram_dtype"]
    assert load_packed(tmp_path / "p.h5").scalogram_dtype == "float32"


def test_report_reads_float16_and_float32_files(tmp_path):
    from sts.report.scalograms import read_example

    v = traces()
    write_sweeps(tmp_path / "sw.h5", v)
    scalogram_file(tmp_path / "sw.h5", tmp_path / "new.h5", PARAMS)
    write_old_file(tmp_path / "old.h5", scalogram_of(v, FS_HZ, PARAMS))
    new, old = read_example(tmp_path / "new.h5", tmp_path / "sw.h5"), read_example(tmp_path / "old.h5", tmp_path / "sw.h5")
    assert new["scalogram"].dtype == old["scalogram"].dtype == np.float32
    np.testing.assert_allclose(new["scalogram"], old["scalogram"], rtol=2.0**-11, atol=2.0**-25)
    np.testing.assert_array_equal(new["freqs_hz"], old["freqs_hz"])
