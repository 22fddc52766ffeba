"""Write a synthetic cell in the MIES NWB 2 layout of DANDI 000020 (pynwb).

Layout (see shared/DATA_FORMATS.md §2): /acquisition/data_XXXXX_AD0 (CurrentClampSeries)
and /stimulus/presentation/data_XXXXX_DA0 (CurrentClampStimulusSeries), each with
sweep_number, stimulus_description (MIES protocol code) and starting_time@rate. Values
are stored in mV / pA with conversion 1e-3 / 1e-12 and units volts / amperes, so a reader
must apply ``conversion``. The response is quantised to 1/256 mV (like a digitiser) and lightly
gzipped: zeroed low mantissa bits shrink it ~5x at little cost. The amplitude is not stored: readers derive it from the trace.
Sweeps are listed in the icephys intracellular_recordings table. pynwb 3 refuses to write the
deprecated sweep_table that DANDI 000020 files carry and that ipfx 2.1.2 needs to list sweeps,
so ipfx cannot open these files; readers must list series by name / sweep_number attribute.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from hdmf.backends.hdf5 import H5DataIO
from pynwb import NWBHDF5IO, NWBFile
from pynwb.icephys import CurrentClampSeries, CurrentClampStimulusSeries

from sts.synth.cohort import CellData

SESSION_START = datetime(2018, 4, 24, 12, 0, 0, tzinfo=timezone.utc)  # fixed: files are reproducible


def write_mies_nwb2(cell: CellData, path: str | Path, rng: np.random.Generator) -> None:
    """Write ``cell`` to ``path`` (overwrites). rng draws amplifier settings."""
    nwb = NWBFile(
        session_description="synthetic patch-seq long-square protocol (sts.synth)",
        identifier=f"synthetic-{cell.specimen_id}",
        session_start_time=SESSION_START,
        file_create_date=SESSION_START,
        session_id=cell.specimen_id,
        institution="synthetic",
    )
    device = nwb.create_device(name="ITC18USB_Dev_0", description="synthetic amplifier")
    elec = nwb.create_icephys_electrode(name="electrode_0", description="headstage 0", device=device)
    bridge = float(rng.uniform(5e6, 20e6))  # ohm
    cap = float(rng.uniform(2e-12, 6e-12))  # farad
    for s in cell.sweeps:
        name = f"data_{s.number:05d}"
        stim = CurrentClampStimulusSeries(
            name=f"{name}_DA0",
            data=H5DataIO(s.stimulus_pa.astype(np.float32), compression="gzip", compression_opts=4, shuffle=True),
            starting_time=0.0, rate=cell.fs_hz, electrode=elec, gain=1.0,
            stimulus_description=s.mies_code, sweep_number=np.uint32(s.number),
            conversion=1e-12, unit="amperes",
        )
        resp = CurrentClampSeries(
            name=f"{name}_AD0",
            data=H5DataIO(np.round(s.response_mv * 256.0).astype(np.float32) / np.float32(256.0),
                          compression="gzip", compression_opts=1, shuffle=True),
            starting_time=0.0, rate=cell.fs_hz, electrode=elec, gain=1.0,
            stimulus_description=s.mies_code, sweep_number=np.uint32(s.number),
            conversion=1e-3, bias_current=0.0, bridge_balance=bridge, capacitance_compensation=cap,
        )
        nwb.add_intracellular_recording(electrode=elec, stimulus=stim, response=resp)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb, cache_spec=False)
