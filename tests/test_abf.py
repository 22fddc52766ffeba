"""ABF reader: real ABF files (pyabf's writer) holding synthetic cells' current-clamp responses."""

from __future__ import annotations

import numpy as np
import pytest

import sts.prep.sweeps
from abf_data import FS_HZ, STEP_S, SWEEP_S, simulate_ladder, write_abf1, write_abf1_epochs
from sts.recordings.abf import LONG_SQUARE, NO_PROTOCOL, AbfRecording, Protocol, open_abf
from sts.recordings.common import NwbReadError, Recording
from sts.settings import QcParams
from sts.prep.sweeps import SelectionParams, find_step, is_long_square, select_sweeps


@pytest.fixture(scope="module")
def ladder():
    lad = simulate_ladder("Pvalb", seed=3, n_sweeps=10, onset_s=0.5)
    # The selection test needs rheobase and rheobase + 40 pA inside the ladder.
    assert lad.rheobase_pa is not None and lad.rheobase_pa + 40 <= lad.amplitudes_pa[-1]
    assert lad.rheobase_pa > lad.amplitudes_pa[0]  # at least one sweep below rheobase
    return lad


def protocol_of(lad, **changes) -> Protocol:
    values = dict(first_amplitude_pa=lad.amplitudes_pa[0], step_pa=20.0, onset_s=lad.onset_s, duration_s=STEP_S)
    return Protocol(**{**values, **changes})


@pytest.fixture(scope="module")
def abf1_file(ladder, tmp_path_factory):
    """ABF1 without a command waveform (pyabf's writeABF1)."""
    return write_abf1(tmp_path_factory.mktemp("abf") / "cell.abf", ladder.responses_mv)


@pytest.fixture(scope="module")
def epoch_file(ladder, tmp_path_factory):
    """ABF1 whose epoch table steps from the first amplitude by 20 pA per sweep at the ladder's onset."""
    n = int(round(SWEEP_S * FS_HZ))
    hold = int(round(ladder.onset_s * FS_HZ)) - n // 64  # pyabf adds 1/64 sweep of holding first
    return write_abf1_epochs(
        tmp_path_factory.mktemp("abf") / "epochs.abf", ladder.responses_mv, hold, int(STEP_S * FS_HZ),
        ladder.amplitudes_pa[0], 20.0,
    )


def test_reads_units_values_and_rate(ladder, abf1_file, tmp_path):
    with open_abf(abf1_file, protocol_of(ladder)) as rec:
        assert isinstance(rec, AbfRecording) and isinstance(rec, Recording) and rec.layout == "abf"
        assert rec.sweep_numbers == list(range(len(ladder.amplitudes_pa)))
        assert rec.fs_hz(0) == FS_HZ
        for k in (0, 6):
            v = rec.response_mv(k)
            assert v.dtype == np.float64 and v.size == ladder.responses_mv.shape[1]
            assert np.abs(v - ladder.responses_mv[k]).max() < 0.01  # int16 at ~0.003 mV per step

    # The same traces stored in volts come back in mV.
    volts = write_abf1(tmp_path / "volts.abf", ladder.responses_mv[[0, -1]] / 1000.0, units="V")
    with open_abf(volts, protocol_of(ladder)) as rec:
        assert np.abs(rec.response_mv(1) - ladder.responses_mv[-1]).max() < 0.05
        assert np.ptp(rec.response_mv(1)) > 50  # the top sweep spikes: tens of mV, not volts

    # A current recorded where a voltage is expected (voltage clamp): error naming file and sweep.
    amps = write_abf1(tmp_path / "vclamp.abf", ladder.responses_mv[:2], units="pA")
    with open_abf(amps, protocol_of(ladder)) as rec, pytest.raises(NwbReadError) as err:
        rec.response_mv(1)
    assert "vclamp.abf" in str(err.value) and "sweep 1" in str(err.value) and "'pA'" in str(err.value)


def test_csv_protocol_gives_each_sweeps_step(ladder, abf1_file):
    with open_abf(abf1_file, protocol_of(ladder)) as rec:
        assert rec.command_source == "protocol"
        for k in rec.sweep_numbers:
            stim, resp = rec.load(k)
            assert stim.size == resp.size == ladder.responses_mv.shape[1]
            step = find_step(stim, rec.fs_hz(k))
            assert step.amplitude_pa == ladder.amplitudes_pa[k] == ladder.amplitudes_pa[0] + 20.0 * k
            assert step.onset_idx == int(ladder.onset_s * FS_HZ) and step.duration_idx == int(STEP_S * FS_HZ)
            assert rec.stimulus_name(k) == LONG_SQUARE
            assert is_long_square(rec.stimulus_name(k), SelectionParams().long_square_names)


def test_command_waveform_from_the_file(ladder, epoch_file):
    wrong = protocol_of(ladder, first_amplitude_pa=-500.0, onset_s=0.1)  # ignored: the file has a command
    for protocol in (None, wrong):
        with open_abf(epoch_file, protocol) as rec:
            assert rec.command_source == "waveform"
            amps = [find_step(rec.stimulus_pa(k), FS_HZ).amplitude_pa for k in rec.sweep_numbers]
            assert amps == ladder.amplitudes_pa
            onsets = {find_step(rec.stimulus_pa(k), FS_HZ).onset_idx for k in rec.sweep_numbers}
            assert onsets == {int(round(ladder.onset_s * FS_HZ))}


def test_command_in_nanoamperes_is_converted(ladder, tmp_path):
    n = int(round(SWEEP_S * FS_HZ))
    path = write_abf1_epochs(tmp_path / "na.abf", ladder.responses_mv[:3], int(0.5 * FS_HZ) - n // 64,
                             int(STEP_S * FS_HZ), 0.05, 0.02, dac_unit="nA")
    with open_abf(path) as rec:
        assert [find_step(rec.stimulus_pa(k), FS_HZ).amplitude_pa for k in range(3)] == [50.0, 70.0, 90.0]
    bad = write_abf1_epochs(tmp_path / "bad_unit.abf", ladder.responses_mv[:2], 1000, 20000, 10.0, 10.0,
                            dac_unit="mV")
    with pytest.raises(NwbReadError, match=r"bad_unit\.abf: voltage clamp: the command waveform \(DAC0\) is in mV"):
        open_abf(bad)


@pytest.mark.parametrize("source", ["protocol", "waveform"])
def test_select_sweeps_picks_rheobase_and_plus_40(ladder, abf1_file, epoch_file, source):
    protocol = protocol_of(ladder) if source == "protocol" else None
    sel = select_sweeps(abf1_file if source == "protocol" else epoch_file, SelectionParams(), protocol)
    assert sel.status == "ok", sel.reason
    r = ladder.rheobase_pa
    assert sel.attrs["rheobase_pa"] == r
    assert sel.attrs["amplitudes_pa"] == [r, r + 40.0]
    assert sel.attrs["sweep_numbers"] == [ladder.amplitudes_pa.index(r), ladder.amplitudes_pa.index(r + 40.0)]
    assert sel.attrs["onset_s"] == [ladder.onset_s, ladder.onset_s]
    assert sel.attrs["layout"] == "abf" and sel.attrs["n_spikes"][1] >= sel.attrs["n_spikes"][0] >= 1
    assert sel.traces_mv.shape == (2, int(1.2 * 4000))


def test_no_command_and_no_protocol_is_excluded(abf1_file):
    with pytest.raises(NwbReadError) as err:
        open_abf(abf1_file)
    assert str(abf1_file) in str(err.value) and NO_PROTOCOL in str(err.value)
    sel = select_sweeps(abf1_file, SelectionParams())
    assert sel.status == "excluded" and NO_PROTOCOL in sel.reason and sel.traces_mv is None


def test_unreadable_files(abf1_file, tmp_path):
    junk = tmp_path / "junk.abf"
    junk.write_bytes(b"not an abf file at all" * 10)
    truncated = tmp_path / "truncated.abf"
    truncated.write_bytes(abf1_file.read_bytes()[:3000])
    for path in (junk, truncated):
        with pytest.raises(NwbReadError, match="unreadable ABF file"):
            open_abf(path)
        sel = select_sweeps(path, SelectionParams())
        assert sel.status == "excluded" and str(path) in sel.reason


def test_protocol_checks_and_short_steps(ladder, abf1_file):
    with pytest.raises(NwbReadError, match="ends at 2.5 s, after the sweep's end"):
        open_abf(abf1_file, protocol_of(ladder, onset_s=1.5))
    for bad in ({"duration_s": 0.0}, {"onset_s": -1.0}, {"step_pa": float("nan")}):
        with pytest.raises(ValueError):
            protocol_of(ladder, **bad)
    # A 0.1 s step is a square but not a long square: sweep selection skips the sweeps.
    with open_abf(abf1_file, protocol_of(ladder, duration_s=0.1)) as rec:
        names = {rec.stimulus_name(k) for k in rec.sweep_numbers if ladder.amplitudes_pa[k] != 0}
        assert names == {"ABF square step of 0.1 s"}
        assert not is_long_square(names.pop(), SelectionParams().long_square_names)
        short = sts.prep.sweeps._select(rec, SelectionParams(min_step_s=0.2))
        assert short.reason.startswith("no square current step of at least 0.2 s (sweeps.min_step_s)")
        # The protocol's 0.1 s "step" lies inside the model's 1 s step: its "after the step" is still
        # depolarised, which the drift check would rightly call a broken recording.
        loose = SelectionParams(min_step_s=0.1, window_s=0.1, qc=QcParams(drift_max_mv=1000.0))
        assert sts.prep.sweeps._select(rec, loose).attrs["step_s"] == [0.1, 0.1]


def test_select_sweeps_command_takes_the_protocol(ladder, abf1_file, tmp_path):
    import h5py

    from sts.cli import main

    p = protocol_of(ladder)
    out = tmp_path / "sel.h5"
    opts = ["--first-amplitude-pa", p.first_amplitude_pa, "--step-pa", p.step_pa, "--onset-s", p.onset_s,
            "--duration-s", p.duration_s]  # fmt: skip
    assert main(["select-sweeps", str(abf1_file), str(out), "--specimen-id", "rig-1.a", *map(str, opts)]) == 0
    with h5py.File(out) as f:
        assert f.attrs["status"] == "ok" and f.attrs["specimen_id"] == "rig-1.a"
        assert list(f.attrs["amplitudes_pa"]) == [ladder.rheobase_pa, ladder.rheobase_pa + 40]
    with pytest.raises(SystemExit, match="missing --onset-s, --duration-s"):
        main(["select-sweeps", str(abf1_file), str(out), "--specimen-id", "x", *map(str, opts[:4])])
