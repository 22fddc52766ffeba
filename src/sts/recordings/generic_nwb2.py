"""Generic NWB 2 icephys files (other labs' converters), read with h5py only.

Responses are pynwb's ``CurrentClampSeries`` / ``IZeroClampSeries``, stimuli its
``CurrentClampStimulusSeries``; voltage clamp and any other series are ignored. A sweep is a
response paired with its stimulus, from the first of these sources the file has:

1. the icephys ``intracellular_recordings`` table (NWB >= 2.4): per row, the
   TimeSeriesReference columns ``responses/response`` and ``stimuli/stimulus``
   (idx_start, count, object reference); a row without a stimulus (idx_start < 0) is no sweep;
2. the deprecated ``sweep_table`` (series grouped by ``sweep_number``);
3. the series' ``sweep_number`` attributes;
4. the trailing number of the series' names (``acquisition/ic__Step__7`` with
   ``stimulus/presentation/ics__Step__7``).

Pairing is strict: a response without a stimulus, or a number shared by several responses
or stimuli that the electrode does not disambiguate, gives no sweep. A sweep's number is the
response's ``sweep_number`` attribute, else its name's trailing number, else (table rows only)
the row id. Its name is the series' ``stimulus_description`` (e.g. ``Step``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import h5py
import numpy as np

from sts.recordings.common import (
    MAX_FILE_SAMPLES, NwbReadError, NwbRecording, check_dataset, decode, int_attr, max_samples, sampling_rate,
)

RESPONSE_TYPES = frozenset({"CurrentClampSeries", "IZeroClampSeries"})
STIMULUS_TYPES = frozenset({"CurrentClampStimulusSeries"})
ICEPHYS = "general/intracellular_ephys"
MAX_TABLE_ROWS = 200_000  # hostile input: a table of refs is never larger in a real cell's file
NO_NAME = {"", "n/a", "na", "none", "no description"}  # pynwb writes "N/A" when none was given
TRAILING_NUMBER = re.compile(r"(\d+)$")


@dataclass(frozen=True)
class SeriesPart:
    """Samples [start, start + count) of the series group at ``path``; count None: to the end."""

    path: str
    start: int = 0
    count: int | None = None


@dataclass(frozen=True)
class PairedSweep:
    response: SeriesPart
    stimulus: SeriesPart


def _kind(obj) -> str:
    """'response', 'stimulus' or '' for an HDF5 object (current-clamp series only)."""
    if not isinstance(obj, h5py.Group) or not isinstance(obj.get("data"), h5py.Dataset):
        return ""
    ntype = decode(obj.attrs.get("neurodata_type", ""))
    return "response" if ntype in RESPONSE_TYPES else "stimulus" if ntype in STIMULUS_TYPES else ""


def _int_attr(obj, key: str) -> int | None:
    return int_attr(obj.attrs.get(key))


def _name_number(path: str) -> int | None:
    m = TRAILING_NUMBER.search(path.rsplit("/", 1)[-1])
    return int(m.group(1)) if m else None


def _electrode(obj: h5py.Group) -> str | None:
    """Path of the series' electrode (a link in pynwb files), or None."""
    try:
        target = obj.get("electrode")
        return target.name if target is not None else None
    except (KeyError, OSError, ValueError):  # dangling link
        return None


def _deref(f: h5py.File, ref) -> h5py.Group | None:
    try:
        return f[ref] if ref else None
    except (KeyError, OSError, ValueError, TypeError):
        return None


def _bounded(ds) -> np.ndarray:
    if not isinstance(ds, h5py.Dataset) or ds.ndim != 1:
        raise NwbReadError(f"{ds.file.filename}: {ds.name} is not a table column")
    if ds.shape[0] > MAX_TABLE_ROWS:
        raise NwbReadError(f"{ds.file.filename}: {ds.name} has {ds.shape[0]} rows (more than {MAX_TABLE_ROWS})")
    return check_dataset(ds, ds.file.filename, MAX_TABLE_ROWS, numeric=False)[()]


def _from_recordings_table(f: h5py.File, table: h5py.Group) -> dict[int, PairedSweep] | None:
    """Sweeps of the intracellular_recordings table; None when it has no rows."""
    try:
        responses = _bounded(table["responses/response"])
        stimuli = _bounded(table["stimuli/stimulus"])
    except KeyError:
        return None
    for column in (responses, stimuli):
        if not {"idx_start", "count", "timeseries"} <= set(column.dtype.names or ()):
            raise NwbReadError(f"{f.filename}: intracellular_recordings has no TimeSeriesReference columns")
    if responses.size == 0:
        return None
    if stimuli.size != responses.size:
        raise NwbReadError(f"{f.filename}: intracellular_recordings has {responses.size} responses "
                           f"but {stimuli.size} stimuli")
    ids = _bounded(table["id"]) if isinstance(table.get("id"), h5py.Dataset) else np.arange(responses.size)
    if ids.size != responses.size:
        ids = np.arange(responses.size)
    rows = []  # (row id, response group, PairedSweep)
    for row_id, resp, stim in zip(ids.tolist(), responses, stimuli):
        if min(int(stim["idx_start"]), int(stim["count"]), int(resp["idx_start"]), int(resp["count"])) < 0:
            continue  # no stimulus (or no response) recorded for this row
        r_obj, s_obj = _deref(f, resp["timeseries"]), _deref(f, stim["timeseries"])
        if r_obj is None or s_obj is None or _kind(r_obj) != "response" or _kind(s_obj) != "stimulus":
            continue
        parts = [SeriesPart(o.name, int(ref["idx_start"]), int(ref["count"]))
                 for o, ref in ((r_obj, resp), (s_obj, stim))]
        if parts[0].path is None or parts[1].path is None:  # an unlinked object: no series of the file
            continue
        rows.append((int(row_id), r_obj, PairedSweep(*parts)))
    numbers = [_int_attr(r, "sweep_number") for _, r, _ in rows]
    if None in numbers or len(set(numbers)) < len(numbers):
        numbers = [_name_number(sweep.response.path) for _, _, sweep in rows]
    if None in numbers or len(set(numbers)) < len(numbers):
        numbers = [row_id for row_id, _, _ in rows]
    if len(set(numbers)) < len(numbers):  # ids are unique in valid tables: else number by position
        numbers = list(range(len(rows)))
    return {n: sweep for n, (_, _, sweep) in zip(numbers, rows)}


def _pair(groups: dict[int, tuple[list[h5py.Group], list[h5py.Group]]]) -> dict[int, PairedSweep]:
    """One sweep per number: its only response and stimulus, or the first response whose
    electrode matches exactly one stimulus."""
    sweeps = {}
    for number, (responses, stimuli) in groups.items():
        if len(responses) == 1 and len(stimuli) == 1:
            sweeps[number] = PairedSweep(SeriesPart(responses[0].name), SeriesPart(stimuli[0].name))
            continue
        for resp in sorted(responses, key=lambda g: g.name):
            electrode = _electrode(resp)
            same = [s for s in stimuli if electrode is not None and _electrode(s) == electrode]
            if len(same) == 1:
                sweeps[number] = PairedSweep(SeriesPart(resp.name), SeriesPart(same[0].name))
                break
    return sweeps


def _from_sweep_table(f: h5py.File, table: h5py.Group) -> dict[int, PairedSweep] | None:
    """Sweeps of the deprecated SweepTable (ragged ``series`` column, ``sweep_number``)."""
    try:
        refs, numbers = _bounded(table["series"]), _bounded(table["sweep_number"])
        ends = _bounded(table["series_index"]) if "series_index" in table else np.arange(1, refs.size + 1)
    except KeyError:
        return None
    if ends.size == 0:
        return None
    if ends.size != numbers.size or int(ends[-1]) > refs.size or np.any(np.diff(ends.astype(np.int64)) < 0):
        raise NwbReadError(f"{f.filename}: inconsistent sweep_table")
    groups: dict[int, tuple[list, list]] = {}
    start = 0
    for end, number in zip(ends.tolist(), numbers.tolist()):
        for ref in refs[start:end]:
            obj = _deref(f, ref)
            kind = _kind(obj) if obj is not None and obj.name is not None else ""  # unlinked: no name
            if kind:
                groups.setdefault(int(number), ([], []))[kind == "stimulus"].append(obj)
        start = end
    return _pair(groups)


def _series_groups(f: h5py.File) -> list[h5py.Group]:
    """Current-clamp series of /acquisition and /stimulus/presentation."""
    found = []
    for where in ("acquisition", "stimulus/presentation"):
        group = f.get(where)
        if isinstance(group, h5py.Group):
            found.extend(obj for obj in group.values() if _kind(obj))
    return found


def _from_keys(series: list[h5py.Group], key) -> dict[int, PairedSweep]:
    groups: dict[int, tuple[list, list]] = {}
    for obj in series:
        number = key(obj)
        if number is not None:
            groups.setdefault(number, ([], []))[_kind(obj) == "stimulus"].append(obj)
    return _pair(groups)


def pair_sweeps(f: h5py.File) -> tuple[str, dict[int, PairedSweep]]:
    """(source, {sweep_number: PairedSweep}); source names where the pairing came from."""
    table = f.get(f"{ICEPHYS}/intracellular_recordings")
    if isinstance(table, h5py.Group):
        sweeps = _from_recordings_table(f, table)
        if sweeps is not None:
            return "intracellular_recordings", sweeps
    table = f.get(f"{ICEPHYS}/sweep_table")
    if isinstance(table, h5py.Group):
        sweeps = _from_sweep_table(f, table)
        if sweeps is not None:
            return "sweep_table", sweeps
    series = _series_groups(f)
    if any(_int_attr(obj, "sweep_number") is not None for obj in series):
        return "sweep_number", _from_keys(series, lambda obj: _int_attr(obj, "sweep_number"))
    return "name", _from_keys(series, lambda obj: _name_number(obj.name))


def _rate(group: h5py.Group, where: str) -> float | None:
    """Sampling rate (Hz) from starting_time@rate, else from the first timestamps; checked
    (``sampling_rate``) when the file gives one."""
    start = group.get("starting_time")
    if isinstance(start, h5py.Dataset) and "rate" in start.attrs:
        return sampling_rate(start.attrs["rate"], where)
    stamps = group.get("timestamps")
    if isinstance(stamps, h5py.Dataset) and stamps.ndim == 1 and stamps.shape[0] > 1:
        check_dataset(stamps, where, MAX_FILE_SAMPLES)
        step = float(np.median(np.diff(stamps[: min(stamps.shape[0], 10_001)].astype(np.float64))))
        return sampling_rate(1.0 / step, where) if step > 0 else None
    return None


class GenericNwb2Recording(NwbRecording):
    layout = "nwb2"
    # stimulus_description is each converter's free text ("Step", pynwb's "N/A"): sweep selection
    # takes the names in sweeps.long_square_names, or any sweep with sweeps.any_square_step.

    def __init__(self, f):
        super().__init__(f)
        try:
            self.pairing, self._sweeps = pair_sweeps(f)
        except (KeyError, OSError, TypeError, ValueError) as err:  # malformed tables or attributes
            raise NwbReadError(f"{self.path}: cannot pair stimuli with responses: {err}") from err
        self._cache: dict[str, tuple[str, np.ndarray]] = {}  # which -> (series path, values)
        self._rates: dict[int, float] = {}  # sweep -> checked rate (each read is ~4 ms of h5py lookups)

    @property
    def sweep_numbers(self) -> list[int]:
        return sorted(self._sweeps)

    def _sweep(self, n: int) -> PairedSweep:
        try:
            return self._sweeps[n]
        except KeyError:
            raise NwbReadError(f"{self.path}: no sweep {n}") from None

    def part(self, n: int, which: str) -> SeriesPart:
        """Where the sweep's 'stimulus' or 'response' lies (series path, sample range)."""
        sweep = self._sweep(n)
        return sweep.stimulus if which == "stimulus" else sweep.response

    def stimulus_name(self, n: int) -> str:
        """The series' stimulus_description (response first), e.g. ``Step``; '' if none."""
        sweep = self._sweep(n)
        for part in (sweep.response, sweep.stimulus):
            desc = self.file[part.path].attrs.get("stimulus_description")
            if desc is not None and decode(desc).strip().lower() not in NO_NAME:
                return decode(desc).strip()
        return ""

    def fs_hz(self, n: int) -> float:
        if n in self._rates:
            return self._rates[n]
        sweep = self._sweep(n)
        where = f"{self.path}: sweep {n}"
        try:
            response, stimulus = (_rate(self.file[p.path], where) for p in (sweep.response, sweep.stimulus))
        except (KeyError, OSError, TypeError, ValueError) as err:
            raise NwbReadError(f"{self.path}: sweep {n} has no readable sampling rate: {err}") from err
        if response is None:
            raise NwbReadError(f"{self.path}: sweep {n} has no sampling rate")
        if stimulus is not None and abs(stimulus - response) > 1e-6 * response:
            raise NwbReadError(f"{self.path}: sweep {n} has its stimulus at {stimulus} Hz, "
                               f"its response at {response} Hz")
        self._rates[n] = response
        return response

    def _series(self, n: int, which: str) -> np.ndarray:
        part = self.part(n, which)
        try:
            ds = self.file[f"{part.path}/data"]
            if ds.ndim != 1:
                raise NwbReadError(f"{self.path}: the {which} of sweep {n} ({part.path}) is not 1-D")
            size = ds.shape[0]
            count = size - part.start if part.count is None else part.count
            if part.start < 0 or count <= 0 or part.start + count > size:
                raise NwbReadError(f"{self.path}: the {which} of sweep {n} references samples "
                                   f"{part.start}..{part.start + count} of {part.path} ({size} samples)")
            cached = self._cache.get(which)
            if cached is not None and cached[0] == part.path:
                values = cached[1]
            elif count < size and size > max_samples(self.fs_hz(n)):  # too long to read whole: the part only
                return self._values(ds, n, which, part.start, count)
            else:
                values = self._values(ds, n, which)
                if count < size:  # one long series cut into sweeps: read it once
                    self._cache[which] = (part.path, values)
            return values[part.start : part.start + count].copy() if count < size else values
        except (KeyError, OSError, TypeError, ValueError) as err:
            raise NwbReadError(f"{self.path}: cannot read the {which} of sweep {n}: {err}") from err
