import h5py
import numpy as np
import pytest

from sts.recordings import NwbReadError, open_recording
from sts.prep.sweeps import SelectionParams, find_step, select_sweeps, select_sweeps_file

from conftest import FILE_DEFECT_REASONS as DEFECT_REASONS


def test_find_step_ignores_test_pulse():
    fs = 50_000.0
    i = np.zeros(int(2.3 * fs))
    i[int(0.005 * fs) : int(0.015 * fs)] = -50.0  # test pulse
    i[int(1.02 * fs) : int(2.02 * fs)] = 130.0
    step = find_step(i, fs)
    assert step.onset_idx == int(1.02 * fs)
    assert step.duration_idx == int(1.0 * fs)
    assert step.amplitude_pa == 130.0


@pytest.mark.parametrize("holding", [0.0, -20.0])
def test_find_step_longer_than_half_the_sweep(holding):
    """ABF protocols may step for most of the sweep: the baseline is the holding level."""
    fs = 10_000.0
    i = np.full(int(1.5 * fs), holding)
    i[int(0.25 * fs) : int(1.25 * fs)] = holding + 70.0
    step = find_step(i, fs)
    assert (step.onset_idx, step.duration_idx, step.amplitude_pa) == (int(0.25 * fs), int(1.0 * fs), 70.0)


def test_both_layouts_read_in_physical_units(synth_cells):
    cohort, paths = synth_cells
    seen = set()
    for _, row in cohort[cohort["defect"] == ""].drop_duplicates("dataset").iterrows():
        with open_recording(paths[row["specimen_id"]]) as rec:
            seen.add(rec.layout)
            n = rec.sweep_numbers[-1]
            i, v = rec.load(n)
            assert rec.fs_hz(n) in (50_000.0, 200_000.0)
            assert -100 < np.median(v) < -50  # mV, not volts
            assert np.abs(i).max() < 2000  # pA, not amperes
    assert seen == {"allen_v1", "mies_nwb2"}


def test_rheobase_is_lowest_spiking_long_square(synth_cells):
    cohort, paths = synth_cells
    params = SelectionParams()
    checked = 0
    for _, row in cohort[cohort["defect"] == ""].head(6).iterrows():
        sel = select_sweeps(paths[row["specimen_id"]], params)
        assert sel.status == "ok", sel.reason
        rheo, second = sel.attrs["amplitudes_pa"]
        assert abs(second - rheo - 40) <= params.tolerance_pa
        assert sel.attrs["n_spikes"][0] >= 1
        assert sel.traces_mv.shape == (2, 4800) and sel.traces_mv.dtype == np.float32
        # independently: every long square below rheobase has no spike in its step
        from sts.prep.spikes import detect_spikes
        from sts.prep.sweeps import is_long_square

        with open_recording(paths[row["specimen_id"]]) as rec:
            for n in rec.sweep_numbers:
                if not is_long_square(rec.stimulus_name(n), params.long_square_names):
                    continue
                i, v = rec.load(n)
                step = find_step(i, rec.fs_hz(n))
                if step and 0 < step.amplitude_pa < rheo:
                    fs = rec.fs_hz(n)
                    t0 = step.onset_idx / fs
                    assert detect_spikes(v, fs, t0, t0 + step.duration_idx / fs).size == 0
        checked += 1
    assert checked == 6


def test_window_starts_at_onset(synth_cells):
    """The resampled window's first 5 ms sit before any spike: the window is cut at onset."""
    cohort, paths = synth_cells
    row = cohort[cohort["defect"] == ""].iloc[0]
    sel = select_sweeps(paths[row["specimen_id"]])
    assert np.all(sel.traces_mv[:, :20] < -40)
    assert sel.attrs["onset_s"][0] == pytest.approx(1.02, abs=0.02)


@pytest.mark.parametrize("defect", sorted(DEFECT_REASONS))
def test_defective_cells_are_excluded_with_reason(synth_cells, defect, tmp_path):
    cohort, paths = synth_cells
    rows = cohort[cohort["defect"] == defect]
    assert len(rows), f"cohort has no {defect} cell"
    sid = rows.iloc[0]["specimen_id"]
    out = tmp_path / f"{sid}.h5"
    sel = select_sweeps_file(paths[sid], out, SelectionParams(), {"specimen_id": sid})
    assert sel.status == "excluded"
    assert DEFECT_REASONS[defect] in sel.reason
    with h5py.File(out) as f:  # the excluded cell still has its file, with the reason
        assert f.attrs["status"] == "excluded" and DEFECT_REASONS[defect] in f.attrs["reason"]
        assert "traces_mv" not in f


def test_unreadable_file_error_names_path(tmp_path):
    bad = tmp_path / "x.nwb"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(NwbReadError, match="x.nwb"):
        open_recording(bad)
