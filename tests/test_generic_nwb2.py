"""Generic NWB 2 reader (layout 'nwb2'): a real file of another lab, pynwb-written files with
icephys tables / sweep_table / attributes / names, and layout detection beside MIES and Allen."""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime, timezone

import h5py
import numpy as np
import pytest

from conftest import SHARED
from sts.recordings import detect_layout, open_recording
from sts.recordings.generic_nwb2 import GenericNwb2Recording
from sts.recordings.mies import MiesRecording

HIPPOCAMPUS = SHARED / "realdata" / "hippocampus_99111002.nwb"
needs_real = pytest.mark.skipif(not HIPPOCAMPUS.exists(), reason=f"real data not present: {HIPPOCAMPUS}")


# -- the real file (BluePyEfe test data: an ABF converted to NWB 2.4 with icephys tables) ---------

def _independent_amplitudes_pa(path) -> dict[int, float]:
    """h5py alone: the step's median current (0.031-0.431 s) minus the median before it."""
    out = {}
    with h5py.File(path, "r") as f:
        for name, series in f["stimulus/presentation"].items():
            data = series["data"]
            fs = float(series["starting_time"].attrs["rate"])
            assert data.attrs["unit"] == "amperes"
            pa = data[()] * float(data.attrs["conversion"]) * 1e12
            step = pa[int(0.031 * fs) : int(0.431 * fs)]
            out[int(name.rsplit("__", 1)[1])] = float(np.median(step) - np.median(pa[: int(0.031 * fs)]))
    return out


def _ladder_from_notes(path) -> list[float]:
    """The step levels (pA) that the file's own ABF header (general/notes) describes."""
    with h5py.File(path, "r") as f:
        header = json.loads(f["general/notes"][()])["ABF_header"]

    def floats(key):
        return [float(x) for x in re.search(rf"{key} = \[([^\]]*)\]", header).group(1).split(",")]

    count = int(re.search(r"sweepCount = (\d+)", header).group(1))
    first, inc = floats("fEpochInitLevel")[1], floats("fEpochLevelInc")[1]  # epoch B, nA
    return [1000.0 * (first + k * inc) for k in range(count)]


@needs_real
def test_real_hippocampus_file():
    with open_recording(HIPPOCAMPUS) as rec:
        assert isinstance(rec, GenericNwb2Recording) and rec.layout == "nwb2"
        assert rec.pairing == "intracellular_recordings"
        assert rec.sweep_numbers == list(range(1, 17))
        for n in rec.sweep_numbers:  # paired as the table says: ic__Step__N with ics__Step__N
            assert rec.part(n, "response").path == f"/acquisition/ic__Step__{n}"
            assert rec.part(n, "stimulus").path == f"/stimulus/presentation/ics__Step__{n}"
        assert {rec.stimulus_name(n) for n in rec.sweep_numbers} == {"Step"}
        assert {rec.fs_hz(n) for n in rec.sweep_numbers} == {10_000.0}

        read = {}
        for n in rec.sweep_numbers:
            i, v = rec.load(n)
            assert i.size == v.size == 7168 and i.dtype == v.dtype == np.float64
            read[n] = float(np.median(i[310:4310]) - np.median(i[:310]))
            stepping = np.flatnonzero(np.abs(i) > 1.0)
            if n != 11:  # 0 pA
                assert (stepping[0], stepping[-1]) == (312, 4311)  # 0.0312-0.4312 s
            assert -40 < np.median(v[:310]) < 0 and -150 < v.min() and v.max() < 100  # mV (baseline ~ -15)
        first, last = rec.response_mv(1), rec.response_mv(16)

    expected = np.arange(-2000.0, 1000.1, 200.0)  # README: -2.0 ... +1.0 nA by 0.2 nA
    independent = _independent_amplitudes_pa(HIPPOCAMPUS)
    assert sorted(independent) == list(range(1, 17))
    np.testing.assert_allclose([independent[n] for n in range(1, 17)], expected, atol=0.01)
    np.testing.assert_allclose([read[n] for n in range(1, 17)], expected, atol=0.01)
    np.testing.assert_allclose(_ladder_from_notes(HIPPOCAMPUS), expected, atol=0.01)
    # The ABF header quotes the raw data (mV): first samples of sweep 1, last of sweep 16.
    np.testing.assert_array_equal(first[:3], [-15.5, -16.5, -13.5])
    np.testing.assert_array_equal(last[-3:], [-15.0, -18.5, -17.5])


# -- files written with pynwb itself ------------------------------------------------------------

FS = 20_000.0
N = 10_000  # 0.5 s
ONSET, STOP = 2_000, 8_000
STEPS = {5: -50.0, 6: 100.0, 7: 150.0}  # sweep_number attribute -> pA; names end in 1, 2, 3
RANGE = (1_000, 8_500)  # sweep 7's table rows reference only these samples


def _trace(k: int) -> np.ndarray:
    return -70.0 + 5.0 * np.sin(np.arange(N) / (200.0 + k))  # mV, distinct per sweep


def _write_pynwb(path) -> None:
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.icephys import (CurrentClampSeries, CurrentClampStimulusSeries, VoltageClampSeries,
                               VoltageClampStimulusSeries)

    nwb = NWBFile(session_description="generic nwb2 reader test", identifier="generic-nwb2",
                  session_start_time=datetime(2024, 1, 2, tzinfo=timezone.utc))
    device = nwb.create_device(name="amplifier")
    elec = nwb.create_icephys_electrode(name="electrode_0", description="cell 1", device=device)
    for k, (number, amp) in enumerate(STEPS.items(), start=1):
        stim = np.zeros(N)
        stim[ONSET:STOP] = amp
        nano = k == 2  # one stimulus stored in nA, the others in pA
        stimulus = CurrentClampStimulusSeries(
            name=f"ccss_{k}", data=stim / 1000.0 if nano else stim, rate=FS, electrode=elec, gain=1.0,
            conversion=1e-9 if nano else 1e-12, stimulus_description="LongStep", sweep_number=np.uint32(number))
        offset = -0.010 if k == 3 else 0.0  # volts, added after conversion
        response = CurrentClampSeries(
            name=f"ccs_{k}", data=(_trace(k) + 10.0 * (k == 3)).astype(np.float32), rate=FS, electrode=elec,
            gain=1.0, conversion=1e-3, offset=offset, stimulus_description="LongStep",
            sweep_number=np.uint32(number))
        ranges = {}
        if number == 7:
            ranges = dict(stimulus_start_index=RANGE[0], stimulus_index_count=RANGE[1] - RANGE[0],
                          response_start_index=RANGE[0], response_index_count=RANGE[1] - RANGE[0])
        nwb.add_intracellular_recording(electrode=elec, stimulus=stimulus, response=response, **ranges)
    # A response recorded without a stimulus (in the table) and one outside the table: no sweeps.
    lone = CurrentClampSeries(name="ccs_8", data=_trace(8), rate=FS, electrode=elec, gain=1.0,
                              conversion=1e-3, stimulus_description="LongStep", sweep_number=np.uint32(8))
    nwb.add_intracellular_recording(electrode=elec, response=lone)
    nwb.add_acquisition(CurrentClampSeries(name="ccs_9", data=_trace(9), rate=FS, electrode=elec, gain=1.0,
                                           sweep_number=np.uint32(9)))
    # Voltage clamp, paired in the table: ignored.
    vstim = VoltageClampStimulusSeries(name="vcss_4", data=np.full(N, -0.07), rate=FS, electrode=elec, gain=1.0,
                                       stimulus_description="LongStep", sweep_number=np.uint32(4))
    vresp = VoltageClampSeries(name="vcs_4", data=np.full(N, 1e-10), rate=FS, electrode=elec, gain=1.0,
                               stimulus_description="LongStep", sweep_number=np.uint32(4))
    nwb.add_intracellular_recording(electrode=elec, stimulus=vstim, response=vresp)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)


@pytest.fixture(scope="module")
def pynwb_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("nwb2") / "generic.nwb"
    _write_pynwb(path)
    return path


def _check_steps(rec, numbers, whole_sweep7=False):
    assert rec.sweep_numbers == sorted(numbers)
    for number, (k, amp) in zip(sorted(numbers), enumerate(STEPS.values(), start=1)):
        i, v = rec.load(number)
        assert rec.fs_hz(number) == FS and rec.stimulus_name(number) == "LongStep"
        lo, hi = RANGE if k == 3 and not whole_sweep7 else (0, N)
        assert i.size == v.size == hi - lo
        expected_i = np.zeros(N)
        expected_i[ONSET:STOP] = amp
        np.testing.assert_allclose(i, expected_i[lo:hi], atol=1e-6)  # pA
        np.testing.assert_allclose(v, _trace(k)[lo:hi], atol=1e-4)  # mV, conversion and offset applied


def test_pynwb_file_paired_by_icephys_table(pynwb_file):
    with open_recording(pynwb_file) as rec:
        assert rec.layout == "nwb2" and rec.pairing == "intracellular_recordings"
        _check_steps(rec, [5, 6, 7])  # 8 (no stimulus), 9 (not in the table) and 4 (voltage clamp): none


def _without_tables(src, dst):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        del f["general/intracellular_ephys/intracellular_recordings"]
    return dst


def test_pairing_falls_back_on_sweep_table(pynwb_file, tmp_path):
    """pynwb 3 no longer writes the deprecated SweepTable: build one as older pynwb did."""
    path = _without_tables(pynwb_file, tmp_path / "sweep_table.nwb")
    with h5py.File(path, "r+") as f:
        rows = [(21, "acquisition/ccs_1"), (21, "stimulus/presentation/ccss_1"),
                (22, "acquisition/ccs_2"), (22, "stimulus/presentation/ccss_2"),
                (23, "acquisition/ccs_3"), (23, "stimulus/presentation/ccss_3"),
                (24, "acquisition/ccs_8"),  # no stimulus
                (25, "acquisition/vcs_4"), (25, "stimulus/presentation/vcss_4")]  # voltage clamp
        table = f.create_group("general/intracellular_ephys/sweep_table")
        table.attrs["neurodata_type"] = "SweepTable"
        table.create_dataset("id", data=np.arange(len(rows)))
        table.create_dataset("series", data=[f[p].ref for _, p in rows], dtype=h5py.ref_dtype)
        table.create_dataset("series_index", data=np.arange(1, len(rows) + 1))
        table.create_dataset("sweep_number", data=np.array([n for n, _ in rows], dtype=np.uint32))
    with open_recording(path) as rec:
        assert rec.layout == "nwb2" and rec.pairing == "sweep_table"
        _check_steps(rec, [21, 22, 23], whole_sweep7=True)


def test_pairing_falls_back_on_sweep_number_then_names(pynwb_file, tmp_path):
    path = _without_tables(pynwb_file, tmp_path / "attributes.nwb")
    with open_recording(path) as rec:
        assert rec.pairing == "sweep_number"
        _check_steps(rec, [5, 6, 7], whole_sweep7=True)  # 8 and 9 have no stimulus, 4 is voltage clamp
    with h5py.File(path, "r+") as f:
        for where in ("acquisition", "stimulus/presentation"):
            for series in f[where].values():
                series.attrs.pop("sweep_number", None)
    with open_recording(path) as rec:
        assert rec.pairing == "name"
        _check_steps(rec, [1, 2, 3], whole_sweep7=True)  # ccs_N with ccss_N


def test_bad_tables_are_read_errors(pynwb_file, tmp_path):
    from sts.recordings import NwbReadError

    path = tmp_path / "bad_column.nwb"
    shutil.copy(pynwb_file, path)
    with h5py.File(path, "r+") as f:
        table = f["general/intracellular_ephys/intracellular_recordings/responses"]
        del table["response"]
        table.create_dataset("response", data=np.arange(5))
    with pytest.raises(NwbReadError, match="TimeSeriesReference"):
        open_recording(path)

    path = tmp_path / "bad_range.nwb"
    shutil.copy(pynwb_file, path)
    with h5py.File(path, "r+") as f:
        column = f["general/intracellular_ephys/intracellular_recordings/responses/response"]
        rows = column[()]
        rows["count"][2] = N  # starts at RANGE[0]: runs past the end
        column[...] = rows
    with open_recording(path) as rec:
        assert rec.sweep_numbers == [5, 6, 7]
        rec.load(5)
        with pytest.raises(NwbReadError, match="sweep 7"):
            rec.response_mv(7)


# -- detection: MIES and Allen files stay what they were ------------------------------------------

@pytest.fixture(scope="module")
def synth_pair(tmp_path_factory):
    """One good synthetic cell per real layout (Allen NWB v1, MIES NWB 2)."""
    from sts.synth import make_cohort, write_cell

    cohort = make_cohort(8, seed=3, defect_fraction=0.0)
    out = tmp_path_factory.mktemp("synth")
    paths = {}
    for row in cohort.drop_duplicates("dataset").to_dict("records"):
        paths[row["dataset"]] = out / f"{row['specimen_id']}.nwb"
        write_cell(row, paths[row["dataset"]])
    return paths


def test_detection_keeps_mies_and_allen(synth_pair, pynwb_file):
    layouts = {}
    for name, path in {**synth_pair, "generic": pynwb_file}.items():
        with h5py.File(path, "r") as f:
            layouts[name] = detect_layout(f)
    assert layouts == {"clamp": "allen_v1", "seq": "mies_nwb2", "generic": "nwb2"}


def test_mies_markers(pynwb_file, tmp_path):
    """A MIES labnotebook or generated_by entry makes a file MIES whatever its series names."""
    for marker in ("labnotebook", "generated_by"):
        path = tmp_path / f"{marker}.nwb"
        shutil.copy(pynwb_file, path)
        with h5py.File(path, "r+") as f:
            if marker == "labnotebook":
                f.create_group("general/labnotebook/ITC18USB_Dev_0")
            else:
                f.create_dataset("general/generated_by", data=np.array([["Program", "MIES"], ["Version", "2.7"]],
                                                                        dtype=h5py.string_dtype()))
        with h5py.File(path, "r") as f:
            assert detect_layout(f) == "mies_nwb2"


def test_generic_reader_agrees_with_mies_reader(synth_pair):
    """The synthetic MIES file is standard pynwb: read through its icephys table, the same sweeps."""
    with h5py.File(synth_pair["seq"], "r") as f:
        mies, generic = MiesRecording(f), GenericNwb2Recording(f)
        assert generic.pairing == "intracellular_recordings"
        assert generic.sweep_numbers == mies.sweep_numbers and len(mies.sweep_numbers) > 3
        for n in mies.sweep_numbers[:3] + mies.sweep_numbers[-2:]:
            assert generic.stimulus_name(n) == mies.stimulus_name(n)
            assert generic.fs_hz(n) == mies.fs_hz(n)
            for a, b in zip(generic.load(n), mies.load(n)):
                np.testing.assert_array_equal(a, b)
