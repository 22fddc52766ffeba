"""Read current-clamp sweeps from the two real NWB layouts (h5py only, for start-up time).

``open_recording(path)`` detects the layout and returns a reader with the same small
interface for Allen Cell Types NWB v1 files and MIES NWB 2 files (DANDI 000020):
``sweep_numbers``, ``stimulus_name(n)``, ``fs_hz(n)`` and ``load(n) -> (stimulus_pa, response_mv)``.
"""

from __future__ import annotations

from pathlib import Path

import h5py

from sts.nwb.common import NwbReadError, Recording
from sts.nwb.allen_v1 import AllenV1Recording
from sts.nwb.mies import MiesRecording

__all__ = ["NwbReadError", "Recording", "open_recording", "detect_layout"]


def detect_layout(f: h5py.File) -> str:
    """'allen_v1' or 'mies_nwb2' from the file's structure."""
    if "acquisition/timeseries" in f:
        return "allen_v1"
    version = f.attrs.get("nwb_version")
    if isinstance(version, bytes):
        version = version.decode()
    if version is not None and str(version).startswith("2") or "general/intracellular_ephys" in f:
        return "mies_nwb2"
    raise NwbReadError(f"not an NWB v1 (Allen) or NWB 2 (MIES) icephys file: {f.filename}")


def open_recording(path: str | Path) -> Recording:
    """Open an NWB file; raises NwbReadError (with the path) if it is unreadable or unknown."""
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
