"""Write a synthetic cell in the Allen Cell Types NWB v1 layout (h5py, volts / amperes).

Layout (see shared/DATA_FORMATS.md §1): /acquisition/timeseries/Sweep_N/data (V, float32),
/stimulus/presentation/Sweep_N/data (A, float32, gzip: piecewise constant compresses ~100x;
the response is quantised to ~3.8 uV and lightly gzipped),
starting_time with attribute rate, sweep metadata datasets in the stimulus group,
/epochs/Sweep_N and /epochs/Experiment_N with idx_start/count and a link to each series,
/analysis/spike_times/Sweep_N (s from sweep start).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from sts.synth.cohort import CellData
from sts.synth.protocol import EXPERIMENT_START_S

NWB_VERSION = "NWB-1.0.5"


ADC_STEP_V = 2.0**-18  # ~3.8 uV: like a 16-bit digitiser; zeroed low mantissa bits compress well


def _series(g: h5py.Group, data: np.ndarray, unit: str, fs: float, level: int) -> None:
    kw = {"compression": "gzip", "compression_opts": level, "shuffle": True}
    d = g.create_dataset("data", data=data.astype(np.float32), **kw)
    d.attrs["unit"] = unit
    d.attrs["conversion"] = np.float32(1.0)
    d.attrs["resolution"] = np.float32(np.nan)
    st = g.create_dataset("starting_time", data=0.0)
    st.attrs["rate"] = np.float32(fs)
    st.attrs["unit"] = "Seconds"
    g.create_dataset("num_samples", data=np.int32(data.size))
    g.attrs["ancestry"] = np.array([b"TimeSeries", b"PatchClampSeries"])
    g.attrs["neurodata_type"] = b"TimeSeries"


def _epoch(f: h5py.File, name: str, n: int, start: int, count: int, fs: float) -> None:
    e = f.create_group(f"epochs/{name}")
    e.create_dataset("start_time", data=start / fs)
    e.create_dataset("stop_time", data=(start + count) / fs)
    for part, target in (("stimulus", "stimulus/presentation"), ("response", "acquisition/timeseries")):
        g = e.create_group(part)
        g.create_dataset("idx_start", data=np.int64(start))
        g.create_dataset("count", data=np.int64(count))
        g["timeseries"] = h5py.SoftLink(f"/{target}/Sweep_{n}")


def write_allen_v1(cell: CellData, path: str | Path, rng: np.random.Generator) -> None:
    """Write ``cell`` to ``path`` (overwrites). rng draws the per-sweep QC metadata."""
    fs = cell.fs_hz
    with h5py.File(path, "w") as f:
        f.attrs["nwb_version"] = NWB_VERSION
        f.create_dataset("nwb_version", data=NWB_VERSION)
        f.create_dataset("identifier", data=f"synthetic-{cell.specimen_id}")
        f.create_dataset("session_description", data="synthetic long-square protocol (sts.synth)")
        f.create_dataset("session_start_time", data="2016-02-16T12:00:00")
        f.create_dataset("file_create_date", data=np.array([b"2016-02-16T12:00:00"]))
        f.create_dataset("general/specimen_id", data=np.int64(cell.specimen_id))
        access = float(rng.uniform(8.0, 22.0))
        seal = float(rng.uniform(1.0, 5.0))
        for s in cell.sweeps:
            n = s.number
            acq = f.create_group(f"acquisition/timeseries/Sweep_{n}")
            volts = np.round(s.response_mv / 1000.0 / ADC_STEP_V) * ADC_STEP_V
            _series(acq, volts, "Volts", fs, level=1)  # light gzip: ~5x on quantised float32
            stim = f.create_group(f"stimulus/presentation/Sweep_{n}")
            _series(stim, s.stimulus_pa * 1e-12, "Amps", fs, level=4)
            stim.create_dataset("aibs_stimulus_name", data=np.bytes_(s.allen_name))  # bytes, as in real files
            stim.create_dataset("aibs_stimulus_amplitude_pa", data=np.float64(s.amp_pa))
            stim.create_dataset("aibs_stimulus_interval", data=np.float64(0.0))
            stim.create_dataset("gain", data=np.float64(rng.choice([20.0, 50.0])))
            stim.create_dataset("initial_access_resistance", data=np.float64(access))
            stim.create_dataset("seal", data=np.float64(seal))
            size = s.response_mv.size
            _epoch(f, f"Sweep_{n}", n, 0, size, fs)
            if s.kind != "test":  # test sweeps have no experiment epoch
                start = int(round(EXPERIMENT_START_S * fs))
                _epoch(f, f"Experiment_{n}", n, start, size - start, fs)
            f.create_dataset(f"analysis/spike_times/Sweep_{n}", data=s.spike_times_s.astype(np.float64))
