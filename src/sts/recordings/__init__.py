"""Read current-clamp sweeps from NWB and ABF files (h5py only for NWB, for start-up time).

``open_recording(path)`` detects the layout and returns a reader with the same small
interface for Allen Cell Types NWB v1 files (``allen_v1``), MIES NWB 2 files (DANDI 000020,
``mies_nwb2``) and other NWB 2 icephys files (``nwb2``: pynwb's standard current-clamp series of
other labs' converters, paired through the icephys tables): ``sweep_numbers``,
``stimulus_name(n)``, ``fs_hz(n)`` and ``load(n) -> (stimulus_pa, response_mv)``;
``.abf`` files go to the ABF reader (``sts.recordings.abf``, pyabf) behind the same interface.

Files are hostile input (``sts.recordings.common``): a recording with an HDF5 external link is
refused at open, and every read is checked; a file or sweep that cannot be read raises
``NwbReadError`` with the file, the sweep and the cause.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import h5py

from sts.recordings.common import NwbReadError, Recording, decode, external_link, from_hdf5, read_small
from sts.recordings.allen_v1 import AllenV1Recording
from sts.recordings.generic_nwb2 import GenericNwb2Recording
from sts.recordings.mies import MiesRecording

__all__ = ["NwbReadError", "Recording", "open_recording", "detect_layout"]


# MIES names its sweeps' series data_XXXXX_AD0 (response) and data_XXXXX_DA0 (stimulus).
MIES_SERIES = re.compile(r"data_\d+_(AD|DA)\d+$")
READERS = {"allen_v1": AllenV1Recording, "mies_nwb2": MiesRecording, "nwb2": GenericNwb2Recording}


def _is_mies(f: h5py.File) -> bool:
    """MIES files carry its labnotebook/stimsets, its namespace or its name in generated_by; the
    few-sweep copies of sts.acquire.dandi_stream and synthetic cells keep only the series names."""
    if any(path in f for path in ("general/labnotebook", "general/stimsets", "specifications/ndx-MIES")):
        return True
    generated_by = f.get("general/generated_by")
    if isinstance(generated_by, h5py.Dataset) and generated_by.size <= 64:
        values = read_small(generated_by, f.filename).reshape(-1)
        if any("mies" in decode(v).lower() for v in values):
            return True
    for where in ("acquisition", "stimulus/presentation"):
        group = f.get(where)
        if isinstance(group, h5py.Group) and any(MIES_SERIES.match(name) for name in group):
            return True
    return False


def detect_layout(f: h5py.File) -> str:
    """'allen_v1', 'mies_nwb2' or 'nwb2' (any other NWB 2 file) from the file's structure."""
    unavailable = f.attrs.get("sts_unavailable")  # placeholder of a failed download (sts.acquire.marker)
    if unavailable is not None:
        raise NwbReadError(unavailable.decode() if isinstance(unavailable, bytes) else str(unavailable))
    if "acquisition/timeseries" in f:
        return "allen_v1"
    version = f.attrs.get("nwb_version")
    if isinstance(version, bytes):
        version = version.decode()
    if version is not None and str(version).startswith("2") or "general/intracellular_ephys" in f:
        return "mies_nwb2" if _is_mies(f) else "nwb2"
    raise NwbReadError(f"not an NWB v1 (Allen) or NWB 2 icephys file: {f.filename}")


def open_recording(path, protocol=None) -> Recording:
    """Open an NWB (or ABF) file, a path or a file-like object (streamed); raises NwbReadError
    (with the path) if it is unreadable or unknown.

    ``protocol`` (an ``sts.recordings.abf.Protocol``) gives the step ladder of an ABF file without a
    command waveform; NWB files carry their stimulus and ignore it.
    """
    if isinstance(path, (str, os.PathLike)) and Path(path).suffix.lower() == ".abf":
        from sts.recordings.abf import open_abf

        return open_abf(path, protocol)
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as err:
        raise NwbReadError(f"unreadable NWB file {path}: {err}") from err
    try:
        link = external_link(f)
        if link:
            raise NwbReadError(f"{path}: HDF5 external link {link}: refused (a recording must be self-contained)")
        layout = detect_layout(f)
        return READERS[layout](f)
    except Exception as err:
        f.close()
        if isinstance(err, (KeyError, OSError)) or from_hdf5(err):  # h5py on a damaged structure
            raise NwbReadError(f"damaged NWB file {path}: {type(err).__name__}: {err}") from err
        raise
