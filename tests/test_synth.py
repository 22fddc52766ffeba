"""Synthetic cohort generator: table, determinism, both NWB layouts, physiology, defects."""

from __future__ import annotations

from collections import Counter

import h5py
import numpy as np
import pytest

from sts.synth import CLASSES, DEFECTS, make_cohort, write_cell

ONSET_S, STEP_S = 1.02, 1.0


# --- helpers reading the written files directly with h5py (the documented paths) ----------

def read_allen(path):
    """{sweep: (name, amp_pa, fs, stim_A, resp_V)} from an Allen NWB v1 file."""
    out = {}
    with h5py.File(path, "r") as f:
        for key in f["acquisition/timeseries"]:
            n = int(key.split("_")[1])
            stim = f[f"stimulus/presentation/{key}"]
            name = stim["aibs_stimulus_name"][()]
            name = name.decode() if isinstance(name, bytes) else str(name)
            fs = float(f[f"acquisition/timeseries/{key}/starting_time"].attrs["rate"])
            resp = f[f"acquisition/timeseries/{key}/data"]
            out[n] = (name, float(stim["aibs_stimulus_amplitude_pa"][()]), fs,
                      stim["data"][()] * stim["data"].attrs["conversion"], resp[()] * resp.attrs["conversion"])
    return out


def read_mies(path):
    """{sweep: (code, amp_pa_from_trace, fs, stim_A, resp_V)} from a MIES NWB 2 file."""
    out = {}
    with h5py.File(path, "r") as f:
        for key, resp in f["acquisition"].items():
            stim = f[f"stimulus/presentation/{key.replace('_AD0', '_DA0')}"]
            n = int(resp.attrs["sweep_number"])
            assert n == int(key.split("_")[1]) and n == int(stim.attrs["sweep_number"])
            code = resp.attrs["stimulus_description"]
            code = code.decode() if isinstance(code, bytes) else str(code)
            fs = float(resp["starting_time"].attrs["rate"])
            i_a = stim["data"][()] * stim["data"].attrs["conversion"]
            v_v = resp["data"][()] * resp["data"].attrs["conversion"]
            step = i_a[int((ONSET_S + 0.1) * fs) : int((ONSET_S + 0.9) * fs)]
            amp = float(np.median(step) * 1e12) if step.size else 0.0
            out[n] = (code, amp, fs, i_a, v_v)
    return out


def spikes(v_mv, fs, t0=ONSET_S, t1=ONSET_S + STEP_S):
    """Indices of upward dV/dt crossings of 20 mV/ms with a peak above -20 mV in [t0, t1)."""
    v = v_mv[int(t0 * fs) : int(t1 * fs)]
    dvdt = np.diff(v) * fs / 1000.0
    up = np.flatnonzero((dvdt[1:] >= 20) & (dvdt[:-1] < 20)) + 1
    keep, last = [], -(10**9)
    for i in up:
        if i - last > 0.0008 * fs and v[i : i + int(0.001 * fs)].max() > -20:
            keep.append(i)
            last = i
    return np.asarray(keep, dtype=int)


def half_widths_ms(v_mv, fs):
    """Half-width (ms) of each spike: time above (threshold + peak) / 2."""
    out = []
    v = v_mv[int(ONSET_S * fs) : int((ONSET_S + STEP_S) * fs)]
    for i in spikes(v_mv, fs):
        seg = v[max(i - 2, 0) : i + int(0.004 * fs)]
        half = (v[i] + seg.max()) / 2
        above = np.flatnonzero(seg > half)
        out.append((above[-1] - above[0] + 1) / fs * 1000.0)
    return out


def long_squares(sweeps):
    long_names = ("Long Square", "C1LS", "X1PS", "X3LP", "X4PS")
    return sorted(((amp, v) for name, amp, fs, i, v in sweeps.values()
                   if name.startswith(long_names)), key=lambda x: x[0])


def read_any(row, path):
    return read_allen(path) if row["dataset"] == "clamp" else read_mies(path)


# --- the table -------------------------------------------------------------------------------

def test_cohort_table_is_deterministic_and_proportioned():
    df = make_cohort(5590, seed=7)  # its speed (Snakemake builds it at parse time): benchmarks/bench_synth.py
    assert df.equals(make_cohort(5590, seed=7))
    assert not df.equals(make_cohort(5590, seed=8))
    assert {"specimen_id", "dataset", "label", "fs_hz", "defect", "cell_seed"} <= set(df.columns)
    assert df["specimen_id"].str.fullmatch(r"\d{9}").all()
    dup = df["defect"] == "duplicate_id"
    assert df.loc[~dup, "specimen_id"].is_unique
    good = df[df["label"] != "Unsure"]
    share = good["label"].value_counts(normalize=True)
    for cls, p in zip(CLASSES, (0.19, 0.35, 0.32, 0.14)):
        assert abs(share[cls] - p) < 0.02
    assert abs((df["dataset"] == "clamp").mean() - 1 / 3) < 0.02
    assert set(df.loc[df["dataset"] == "seq", "fs_hz"]) == {50000.0}
    fast = (df.loc[df["dataset"] == "clamp", "fs_hz"] == 200000.0).mean()
    assert 0.10 < fast < 0.20
    assert abs((df["defect"] != "").mean() - 0.05) < 0.005


def test_every_defect_kind_in_a_small_cohort():
    df = make_cohort(24, seed=3, defect_fraction=0.3)
    counts = Counter(df["defect"])
    assert all(counts[d] >= 1 for d in DEFECTS)
    assert sum(counts[d] for d in DEFECTS) == round(24 * 0.3)
    for i in np.flatnonzero(df["defect"] == "duplicate_id"):
        earlier = df.iloc[:i]
        match = earlier[(earlier["specimen_id"] == df["specimen_id"].iloc[i]) & (earlier["defect"] == "")]
        assert len(match) == 1
    assert (df.loc[df["defect"] == "unsure_label", "label"] == "Unsure").all()
    assert set(df["label"]) <= set(CLASSES) | {"Unsure"}


# --- files -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cohort():
    return make_cohort(40, seed=11, defect_fraction=0.0)


@pytest.fixture(scope="module")
def written(cohort, tmp_path_factory):
    """Two good cells per class, alternating layouts, written once for the module."""
    d = tmp_path_factory.mktemp("cells")
    out = []
    for k, cls in enumerate(CLASSES):
        rows = cohort[cohort["label"] == cls].head(2)
        for j, (_, row) in enumerate(rows.iterrows()):
            row = dict(row, dataset="clamp" if (k + j) % 2 == 0 else "seq", fs_hz=50000.0)
            path = d / f"{row['specimen_id']}.nwb"
            write_cell(row, path)
            out.append((row, path, read_any(row, path)))
    return out


def test_same_seed_same_arrays(cohort, tmp_path):
    for ds in ("clamp", "seq"):
        row = dict(cohort.iloc[0], dataset=ds)
        write_cell(row, tmp_path / "a.nwb")
        write_cell(row, tmp_path / "b.nwb")
        a, b = read_any(row, tmp_path / "a.nwb"), read_any(row, tmp_path / "b.nwb")
        assert a.keys() == b.keys()
        for n in a:
            np.testing.assert_array_equal(a[n][3], b[n][3])
            np.testing.assert_array_equal(a[n][4], b[n][4])
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temp files


def test_layouts_units_and_protocol(written):
    kinds = set()
    for row, path, sweeps in written:
        assert len(set(np.diff(sorted(sweeps)))) >= 1  # numbers increase (gaps are random)
        for name, amp, fs, i_a, v_v in sweeps.values():
            kinds.add(name)
            assert fs == 50000.0
            assert np.nanmax(np.abs(v_v)) < 0.1 and -0.1 < np.nanmedian(v_v) < -0.04  # volts
            assert np.abs(i_a).max() < 5e-9  # amperes
            lead = i_a[int(0.006 * fs)]  # inside the test pulse
            assert lead < 0
        ls = long_squares(sweeps)
        assert len(ls) >= 8 and any(a < 0 for a, _ in ls)
    assert {"Long Square", "Short Square", "Ramp", "Test"} <= kinds
    assert {"C1SSFINEST150112_DA_0", "C1RP25PR1S_DA_0", "EXTPSMOKET180424_DA_0"} <= kinds
    with h5py.File(written[0][1], "r") as f:  # Allen v1 details
        assert f.attrs["nwb_version"] == "NWB-1.0.5"
        n = sorted(int(k.split("_")[1]) for k in f["acquisition/timeseries"])[-2]
        ep = f[f"epochs/Experiment_{n}/response"]
        assert ep["timeseries"]["data"].shape[0] == ep["idx_start"][()] + ep["count"][()]


def test_plus40_sweep_and_rising_fi(written):
    for row, path, sweeps in written:
        ls = long_squares(sweeps)
        counts = [(a, len(spikes(v * 1e3, 50000.0))) for a, v in ls]
        rheo = min(a for a, c in counts if c > 0)
        assert any(abs(a - rheo - 40) <= 5 for a, _ in counts), (row["label"], counts)
        amps, cs = np.array(counts).T
        top = cs[amps >= rheo + 100].mean()
        assert top > cs[amps == rheo].mean() and cs[amps < rheo].sum() == 0
        assert np.corrcoef(amps[amps >= rheo], cs[amps >= rheo])[0, 1] > 0.8


def test_pvalb_spikes_narrower_than_excitatory(written):
    widths = {c: [] for c in CLASSES}
    for row, path, sweeps in written:
        for amp, v in long_squares(sweeps):
            widths[row["label"]] += half_widths_ms(v * 1e3, 50000.0)
    pv, ex = np.median(widths["Pvalb"]), np.median(widths["Excitatory"])
    assert 0.2 < pv < 0.6 and 0.8 < ex < 1.8 and pv < 0.6 * ex


# --- defects ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dataset", ["clamp", "seq"])
def test_defect_files(cohort, tmp_path, dataset):
    base = dict(cohort.iloc[1], dataset=dataset, fs_hz=50000.0)

    def make(defect):
        path = tmp_path / f"{defect}.nwb"
        write_cell(dict(base, defect=defect), path)
        return path

    corrupt = make("corrupt_file")
    with pytest.raises(Exception):
        with h5py.File(corrupt, "r") as f:
            for key in ("acquisition/timeseries", "acquisition"):
                if key in f:
                    for g in f[key].values():
                        g["data"][()]
    assert not long_squares(read_any(base, make("no_long_square")))
    silent = long_squares(read_any(base, make("no_spiking")))
    assert silent and all(len(spikes(v * 1e3, 50000.0, 0.02, 2.3)) == 0 for _, v in silent)
    counts = [(a, len(spikes(v * 1e3, 50000.0))) for a, v in long_squares(read_any(base, make("no_plus40")))]
    rheo = min(a for a, c in counts if c > 0)
    assert not any(abs(a - rheo - 40) <= 10 for a, _ in counts)
    assert any(a > rheo + 40 for a, _ in counts)
    nan_ls = long_squares(read_any(base, make("nan_trace")))
    bad = [a for a, v in nan_ls if np.isnan(v).any()]
    assert len(bad) == 1 and 5e-3 <= np.isnan(dict(nan_ls)[bad[0]]).sum() / 50000.0 <= 15e-3
