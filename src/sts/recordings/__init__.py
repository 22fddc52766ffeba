"""Read current-clamp sweeps from the two real NWB layouts (h5py only, for start-up time).

``open_recording(path)`` detects the layout and returns a reader with the same small
interface for Allen Cell Types NWB v1 files and MIES NWB 2 files (DANDI 000020):
``sweep_numbers``, ``stimulus_name(n)``, ``fs_hz(n)`` and ``load(n) -> (stimulus_pa, response_mv)``;
``.abf`` files go to the ABF reader (``sts.recordings.abf``, pyabf) behind the same interface.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py

from sts.recordings.common import NwbReadError, Recording
from sts.recordings.allen_v1 import AllenV1Recording
from sts.recordings.mies import MiesRecording

__all__ = ["NwbReadError", "Recording", "open_recording", "detect_layout"]


def detect_layout(f: h5py.File) -> str:
    """'allen_v1' or 'mies_nwb2' from the file's structure."""
    unavailable = f.attrs.get("sts_unavailable")  # placeholder of a failed download (sts.acquire.marker)
    if unavailable is not None:
        raise NwbReadError(unavailable.decode() if isinstance(unavailable, bytes) else str(unavailable))
    if "acquisition/timeseries" in f:
        return "allen_v1"
    version = f.attrs.get("nwb_version")
    if isinstance(version, bytes):
        version = version.decode()
    if version is not None and str(version).startswith("2") or "general/intracellular_ephys" in f:
        return "mies_nwb2"
    raise NwbReadError(f"not an NWB v1 (Allen) or NWB 2 (MIES) icephys file: {f.filename}")


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
        layout = detect_layout(f)
        return AllenV1Recording(f) if layout == "allen_v1" else MiesRecording(f)
    except Exception:
        f.close()
        raise
