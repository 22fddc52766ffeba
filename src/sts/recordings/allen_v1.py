"""Allen Cell Types NWB v1 (``/acquisition/timeseries/Sweep_N``, volts and amperes)."""

from __future__ import annotations

import logging
import re

import h5py

from sts.recordings.common import GroupPerSeries, NwbReadError, decode, read_small, shown

log = logging.getLogger(__name__)

SWEEP_NAME = re.compile(r"Sweep_(\d{1,12})$")


class AllenV1Recording(GroupPerSeries):
    layout = "allen_v1"

    def __init__(self, f):
        super().__init__(f)
        group = f.get("acquisition/timeseries")
        if not isinstance(group, h5py.Group):
            raise NwbReadError(f"{self.path}: /acquisition/timeseries is not a group")
        self._names: dict[int, str] = {}  # sweep number -> series name (Sweep_7, or Sweep_007)
        skipped = []
        for name in group:
            m = SWEEP_NAME.match(name)
            if m:
                self._names.setdefault(int(m.group(1)), name)
            else:
                skipped.append(name)
        if skipped:  # hostile or odd names (Sweep_x) are not sweeps; say so in the job's log
            log.warning("%s: %d series in /acquisition/timeseries without a sweep number skipped: %s",
                        self.path, len(skipped), shown(skipped[:5], 200))  # fmt: skip

    @property
    def sweep_numbers(self) -> list[int]:
        return sorted(self._names)

    def _name(self, n: int) -> str:
        try:
            return self._names[n]
        except KeyError:
            raise NwbReadError(f"{self.path}: no sweep {n}") from None

    def _stim(self, n: int):
        stim = self.file.get(f"stimulus/presentation/{self._name(n)}")
        return stim if isinstance(stim, h5py.Group) else None

    def stimulus_name(self, n: int) -> str:
        stim = self._stim(n)
        if stim is None:
            return ""
        try:
            for key in ("aibs_stimulus_name", "stimulus_name"):
                if key in stim:
                    return decode(read_small(stim[key], f"{self.path}: sweep {n}"))
        except (KeyError, OSError) as err:
            raise NwbReadError(f"{self.path}: cannot read the stimulus name of sweep {n}: {err}") from err
        return ""

    def _group(self, n: int, which: str) -> str:
        group = "acquisition/timeseries" if which == "response" else "stimulus/presentation"
        return f"{group}/{self._name(n)}"
