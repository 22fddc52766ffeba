"""Allen Cell Types NWB v1 (``/acquisition/timeseries/Sweep_N``, volts and amperes)."""

from __future__ import annotations

import numpy as np

from sts.recordings.common import NwbReadError, NwbRecording, decode, series_values


class AllenV1Recording(NwbRecording):
    layout = "allen_v1"

    @property
    def sweep_numbers(self) -> list[int]:
        names = self.file["acquisition/timeseries"].keys()
        return sorted(int(n.split("_", 1)[1]) for n in names if n.startswith("Sweep_"))

    def _stim(self, n: int):
        return self.file.get(f"stimulus/presentation/Sweep_{n}")

    def stimulus_name(self, n: int) -> str:
        stim = self._stim(n)
        if stim is None:
            return ""
        for key in ("aibs_stimulus_name", "stimulus_name"):
            if key in stim:
                return decode(stim[key][()])
        return ""

    def fs_hz(self, n: int) -> float:
        try:
            return float(self.file[f"acquisition/timeseries/Sweep_{n}/starting_time"].attrs["rate"])
        except KeyError as err:
            raise NwbReadError(f"{self.path}: sweep {n} has no sampling rate") from err

    def _series(self, n: int, which: str) -> np.ndarray:
        try:
            if which == "response":
                return series_values(self.file[f"acquisition/timeseries/Sweep_{n}/data"], "mV", "volts")
            return series_values(self.file[f"stimulus/presentation/Sweep_{n}/data"], "pA", "amperes")
        except (KeyError, OSError) as err:
            raise NwbReadError(f"{self.path}: cannot read the {which} of sweep {n}: {err}") from err
