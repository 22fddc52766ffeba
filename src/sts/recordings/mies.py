"""MIES NWB 2 (DANDI 000020): ``/acquisition/data_XXXXX_AD0`` + ``/stimulus/presentation/data_XXXXX_DA0``."""

from __future__ import annotations

import h5py

from sts.recordings.common import GroupPerSeries, NwbReadError, decode, int_attr

CURRENT_CLAMP = {"CurrentClampSeries", "IZeroClampSeries"}


class MiesRecording(GroupPerSeries):
    layout = "mies_nwb2"

    def __init__(self, f):
        super().__init__(f)
        self._acq: dict[int, str] = {}
        self._stim: dict[int, str] = {}
        for group, target, types in (
            ("acquisition", self._acq, CURRENT_CLAMP),
            ("stimulus/presentation", self._stim, {"CurrentClampStimulusSeries"}),
        ):
            members = f.get(group)
            if not isinstance(members, h5py.Group):
                continue
            for name, obj in members.items():
                if obj is None or decode(obj.attrs.get("neurodata_type", "")) not in types:  # None: dangling link
                    continue
                number = int_attr(obj.attrs.get("sweep_number"))
                if number is None:  # no (numeric) attribute: fall back on the name, data_00012_AD0
                    digits = name.split("_")[1] if name.count("_") >= 1 else ""
                    if not (digits.isascii() and digits.isdigit()):
                        continue
                    number = int(digits)
                target.setdefault(number, name)

    @property
    def sweep_numbers(self) -> list[int]:
        return sorted(set(self._acq) & set(self._stim))

    def stimulus_name(self, n: int) -> str:
        """The MIES protocol code, e.g. ``C1LSCOARSE150216_DA_0``."""
        try:
            for group, table in (("acquisition", self._acq), ("stimulus/presentation", self._stim)):
                if n in table:
                    desc = self.file[f"{group}/{table[n]}"].attrs.get("stimulus_description")
                    if desc is not None:
                        return decode(desc)
        except (KeyError, OSError) as err:
            raise NwbReadError(f"{self.path}: cannot read the stimulus name of sweep {n}: {err}") from err
        return ""

    def _group(self, n: int, which: str) -> str:
        return f"acquisition/{self._acq[n]}" if which == "response" else f"stimulus/presentation/{self._stim[n]}"
