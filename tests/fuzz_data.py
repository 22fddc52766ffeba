"""Hostile copies of recordings: small base files, mutations, and the per-file check.

Used by tests/test_reader_safety.py (one hand-made case each), tests/test_fuzz_readers.py
(seeded random mutations) and benchmarks/bench_fuzz.py (a longer run).

Base files are kept small for speed: a synthetic cell of each NWB layout (``sts.synth``) cut
to four sweeps (a non-long-square sweep, one long square below rheobase, rheobase and
rheobase + 40 pA), a synthetic ABF ladder with an epoch-table command (tests/abf_data.py), and
the real files of ../shared/realdata when present.

A mutation copies a base file and damages the copy: byte-level (``truncate``, ``bitflip``,
``header_bytes``: absurd values over the first bytes, where ABF and HDF5 keep their headers)
for every file, and, through h5py, for NWB files: ``attribute`` (a hostile value or none),
``dtype``, ``missing`` (a group or dataset deleted), ``shape`` (empty, null dataspace, 2-D,
scalar, or declared far larger than the file), ``external`` (HDF5 external storage, a virtual
dataset or an external link to a file outside) and ``rename`` (``Sweep_x``).
"""

from __future__ import annotations

import os
import shutil
import traceback
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"

BYTE_KINDS = ("truncate", "bitflip", "header_bytes")
HDF5_KINDS = ("attribute", "dtype", "missing", "shape", "external", "rename")
ABF_KINDS = ("abf_header",)  # the header words that size an ABF file or build its command
# Attributes readers look at: mutations pick these more often than any attribute.
READ_ATTRS = ("rate", "conversion", "offset", "unit", "sweep_number", "neurodata_type", "stimulus_description",
              "nwb_version", "resolution")  # fmt: skip
HUGE = 2**31  # elements declared by 'shape' mutations: 16 GiB as float64


# -- base files ---------------------------------------------------------------------------------


def _keep_sweeps(rec, full: Path) -> list[int]:
    """Sweep numbers kept in a small copy: one other sweep, one long square below rheobase,
    rheobase and rheobase + 40 pA (as sweep selection picks them)."""
    from sts.prep.sweeps import SelectionParams, is_long_square, select_sweeps

    sel = select_sweeps(full)
    assert sel.status == "ok", sel.reason
    rheo, second = sel.attrs["sweep_numbers"]
    names = SelectionParams().long_square_names
    long = [n for n in rec.sweep_numbers if is_long_square(rec.stimulus_name(n), names)]
    other = [n for n in rec.sweep_numbers if n not in long][:1]
    below = [n for n in long if n not in (rheo, second)]  # sweep numbers follow the ladder's amplitudes
    return sorted(set(other + below[:1] + [int(rheo), int(second)]))


def _copy_sweeps(full: Path, out: Path, paths: list[str]) -> None:
    with h5py.File(full, "r") as src, h5py.File(out, "w") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        for name in ("nwb_version", "identifier", "session_description", "session_start_time"):
            if isinstance(src.get(name), h5py.Dataset):
                src.copy(src[name], dst, name=name)
        for path in paths:
            if path in src:
                parent = path.rsplit("/", 1)[0]
                dst.require_group(parent)
                src.copy(src[path], dst[parent], name=path.rsplit("/", 1)[1])


def small_nwb_cells(folder: Path, seed: int = 3) -> dict[str, Path]:
    """{'allen_v1': path, 'mies_nwb2': path}: one usable synthetic cell of each layout (50 kHz),
    cut to four sweeps (~0.5 MB each)."""
    from sts.recordings import open_recording
    from sts.synth import make_cohort, write_cell

    folder.mkdir(parents=True, exist_ok=True)
    cohort = make_cohort(12, seed=seed, defect_fraction=0.0)
    out = {}
    for dataset, layout in (("clamp", "allen_v1"), ("seq", "mies_nwb2")):
        row = cohort[(cohort["dataset"] == dataset) & (cohort["fs_hz"] == 50000.0)].iloc[0].to_dict()
        full = folder / f"full_{layout}.nwb"
        write_cell(row, full)
        with open_recording(full) as rec:
            keep = _keep_sweeps(rec, full)
            if layout == "allen_v1":
                paths = [f"{g}/Sweep_{n}" for n in keep for g in
                         ("acquisition/timeseries", "stimulus/presentation", "epochs", "analysis/spike_times")]
                paths += [f"epochs/Experiment_{n}" for n in keep]
            else:
                paths = [f"acquisition/{rec._acq[n]}" for n in keep] + [f"stimulus/presentation/{rec._stim[n]}"
                                                                         for n in keep]  # fmt: skip
        out[layout] = folder / f"{layout}.nwb"
        _copy_sweeps(full, out[layout], paths)
        full.unlink()
    return out


def small_abf(folder: Path, seed: int = 11) -> Path:
    """A synthetic ABF1 ladder (6 sweeps, 20 kHz) whose command is an epoch table."""
    from abf_data import FS_HZ, STEP_S, simulate_ladder, write_abf1_epochs

    folder.mkdir(parents=True, exist_ok=True)
    ladder = simulate_ladder("Pvalb", seed, n_sweeps=6)
    hold = int(ladder.onset_s * FS_HZ) - ladder.responses_mv.shape[1] // 64
    return write_abf1_epochs(folder / "ladder.abf", ladder.responses_mv, hold, int(STEP_S * FS_HZ),
                             ladder.amplitudes_pa[0], ladder.amplitudes_pa[1] - ladder.amplitudes_pa[0])  # fmt: skip


# One file of each layout of ../shared/realdata2: ABF1 with the waveform on DAC1 (nA), ABF2 ladders.
REALDATA2 = ("minegishi_shr_2021_07_21_05_0006.abf", "minegishi_2005_02_11_c1_0007.abf",
             "scarpa_2025_05_06_0008_Steps_300.abf", "pyabfauto_19702038.abf")  # fmt: skip


def real_files() -> list[Path]:
    """The recordings of ../shared/realdata and some of ../shared/realdata2 (empty when missing)."""
    if not REALDATA.is_dir():
        return []
    second = [REALDATA.parent / "realdata2" / name for name in REALDATA2]
    return sorted(p for p in REALDATA.iterdir() if p.suffix.lower() in (".abf", ".nwb")) + [p for p in second if p.is_file()]


def outside_file(folder: Path) -> Path:
    """A file outside any recording, as another user's data or /etc/passwd would be: float32
    values of a plausible step, so a reader that follows a link to it gets a usable sweep."""
    path = folder / "outside_secret.bin"
    if not path.exists():
        values = np.zeros(115_000, np.float32)
        values[51_000:101_000] = 100e-12
        path.write_bytes(values.tobytes())
    return path


def outside_h5(folder: Path) -> Path:
    """An HDF5 file outside the recording (target of virtual datasets and external links)."""
    path = folder / "outside_other.h5"
    if not path.exists():
        with h5py.File(path, "w") as f:
            f.create_dataset("data", data=np.zeros(115_000, np.float32))
            f.create_group("group").create_dataset("data", data=np.zeros(115_000, np.float32))
    return path


# -- mutations ----------------------------------------------------------------------------------


def _palette(rng: np.random.Generator):
    """A hostile attribute value."""
    choices = [0, -1, 0.0, -50000.0, np.nan, np.inf, -np.inf, 1e300, 1e-300, "x", "50000", b"\xff\xfe",
               np.array([], dtype=np.float64), np.array([1.0, 2.0, 3.0]), "v" * 5000, True, np.int64(2**62),
               np.array([[1, 2], [3, 4]]), np.uint8(7), "volts", "mV", "CurrentClampSeries", ""]  # fmt: skip
    return choices[int(rng.integers(len(choices)))]


def _members(f: h5py.File) -> tuple[list[str], list[str]]:
    groups, datasets = [], []

    def visit(name, obj):
        (groups if isinstance(obj, h5py.Group) else datasets).append(name)

    f.visititems(visit)
    return groups, datasets


def _pick(rng, names: list[str], prefer=lambda n: False) -> str | None:
    if not names:
        return None
    preferred = [n for n in names if prefer(n)]
    pool = preferred if preferred and rng.random() < 0.7 else names
    return pool[int(rng.integers(len(pool)))]


def _is_series_data(name: str) -> bool:
    return name.endswith("/data") and (name.startswith("acquisition") or name.startswith("stimulus"))


def _replace(f: h5py.File, name: str, **kwargs) -> h5py.Dataset:
    """Replace dataset ``name`` by a new one (kwargs of create_dataset), keeping its attributes."""
    attrs = dict(f[name].attrs.items()) if isinstance(f.get(name), h5py.Dataset) else {}
    del f[name]
    ds = f.create_dataset(name, **kwargs)
    for key, value in attrs.items():
        ds.attrs[key] = value
    return ds


def mutate_attribute(f, rng, folder):
    holders = []  # (object name, attribute name)

    def visit(name, obj):
        holders.extend((name, key) for key in obj.attrs)

    f.visititems(visit)
    holders += [("/", key) for key in f.attrs]
    named = [h for h in holders if h[1] in READ_ATTRS]
    pool = named if named and rng.random() < 0.8 else holders
    if not pool:
        return "no attributes"
    obj, key = pool[int(rng.integers(len(pool)))]
    if rng.random() < 0.2:
        del f[obj].attrs[key]
        return f"deleted {obj}@{key}"
    value = _palette(rng)
    f[obj].attrs[key] = value
    return f"{obj}@{key} = {str(value)[:40]!r}"


def mutate_dtype(f, rng, folder):
    _, datasets = _members(f)
    name = _pick(rng, datasets, lambda n: _is_series_data(n) or n.endswith(("starting_time", "stimulus_name")))
    if name is None:
        return "no datasets"
    n = max(int(f[name].size), 1)
    k = int(rng.integers(6))
    if k == 0:
        _replace(f, name, data=np.array([b"abc"] * min(n, 1000)))
    elif k == 1:
        _replace(f, name, data=np.ones(min(n, 1000), dtype=bool))
    elif k == 2:
        _replace(f, name, data=np.zeros(min(n, 1000), dtype=[("a", "<i4"), ("b", "<f8")]))
    elif k == 3:
        _replace(f, name, data=np.array(["x"] * min(n, 100), dtype=h5py.string_dtype()))
    elif k == 4:
        _replace(f, name, data=np.full(min(n, 200_000), 7, dtype=np.int8))
    else:
        _replace(f, name, data=np.full(min(n, 200_000), np.nan, dtype=np.float16))
    return f"{name} dtype variant {k}"


def mutate_missing(f, rng, folder):
    groups, datasets = _members(f)
    name = _pick(rng, groups + datasets, lambda n: n.startswith(("acquisition", "stimulus")))
    if name is None:
        return "nothing to delete"
    del f[name]
    return f"deleted {name}"


def mutate_shape(f, rng, folder):
    _, datasets = _members(f)
    name = _pick(rng, datasets, _is_series_data)
    if name is None:
        return "no datasets"
    n = max(int(f[name].size), 4)
    k = int(rng.integers(8))
    if k == 7:
        _replace(f, name, data=h5py.Empty("f4"))  # null dataspace
    elif k == 0:
        _replace(f, name, shape=(HUGE,), dtype=np.float64, chunks=(1 << 16,))  # 16 GiB declared, nothing written
    elif k == 1:
        _replace(f, name, shape=(HUGE, 4), dtype=np.float32, chunks=(1 << 12, 4))
    elif k == 2:
        _replace(f, name, shape=(4096,), maxshape=(None,), dtype=np.float64, chunks=(1 << 26,))  # 512 MiB chunk
    elif k == 3:
        _replace(f, name, data=np.zeros(0, np.float32))
    elif k == 4:
        _replace(f, name, data=np.float32(1.0))
    elif k == 5:
        _replace(f, name, data=np.zeros((2, n // 2), np.float32))
    else:
        _replace(f, name, data=np.zeros((n, 1), np.float32))
    return f"{name} shape variant {k}"


def mutate_external(f, rng, folder):
    _, datasets = _members(f)
    name = _pick(rng, datasets, _is_series_data)
    if name is None:
        return "no datasets"
    k = int(rng.integers(3))
    if k == 0:
        secret = outside_file(folder)
        _replace(f, name, shape=(secret.stat().st_size // 4,), dtype=np.float32,
                 external=[(str(secret), 0, secret.stat().st_size)])  # fmt: skip
    elif k == 1:
        other = outside_h5(folder)
        layout = h5py.VirtualLayout(shape=(115_000,), dtype=np.float32)
        layout[:] = h5py.VirtualSource(str(other), "data", shape=(115_000,))
        attrs = dict(f[name].attrs.items())
        del f[name]
        ds = f.create_virtual_dataset(name, layout)
        for key, value in attrs.items():
            ds.attrs[key] = value
    else:
        other = outside_h5(folder)
        parent = name.rsplit("/", 1)[0]
        del f[parent]
        f[parent] = h5py.ExternalLink(str(other), "/group")
    return f"{name} external variant {k}"


def mutate_rename(f, rng, folder):
    groups, _ = _members(f)
    series = [g for g in groups if g.count("/") >= 1 and g.startswith(("acquisition", "stimulus/presentation"))
              and g.rsplit("/", 1)[1] not in ("timeseries", "presentation")]  # fmt: skip
    name = _pick(rng, series)
    if name is None:
        return "no series"
    parent, leaf = name.rsplit("/", 1)
    new = leaf.rstrip("0123456789") + "x" if leaf[-1:].isdigit() else leaf.replace("_", "_x", 1)
    if f"{parent}/{new}" in f:
        new += "_2"
    f.move(name, f"{parent}/{new}")
    return f"{name} -> {new}"


H5_MUTATIONS = {"attribute": mutate_attribute, "dtype": mutate_dtype, "missing": mutate_missing,
                "shape": mutate_shape, "external": mutate_external, "rename": mutate_rename}  # fmt: skip
ABSURD_WORDS = (0, -1, 2**31 - 1, -(2**31), 1, 0x7FC00000, 0x7F800000, 0x4E6E6B28, 2**24)


def mutate_bytes(path: Path, kind: str, rng: np.random.Generator) -> str:
    data = bytearray(path.read_bytes())
    if kind == "truncate":
        keep = int(len(data) * rng.uniform(0.02, 0.98))
        path.write_bytes(bytes(data[:keep]))
        return f"kept {keep} of {len(data)} bytes"
    if kind == "bitflip":
        n = int(rng.integers(1, 65))
        for pos in rng.integers(0, len(data) * 8, n):
            data[pos // 8] ^= 1 << int(pos % 8)
        path.write_bytes(bytes(data))
        return f"{n} bits flipped"
    # header_bytes: absurd 32-bit words over the first 2 KB (ABF headers, HDF5 superblock and root)
    n = int(rng.integers(1, 5))
    where = []
    for _ in range(n):
        pos = int(rng.integers(0, min(len(data), 2048) // 4)) * 4
        word = int(ABSURD_WORDS[int(rng.integers(len(ABSURD_WORDS)))]) & 0xFFFFFFFF
        data[pos : pos + 4] = word.to_bytes(4, "little")
        where.append(pos)
    path.write_bytes(bytes(data))
    return f"words at {where}"


def kinds_for(path: Path) -> tuple[str, ...]:
    suffix = path.suffix.lower()
    return BYTE_KINDS + (HDF5_KINDS if suffix == ".nwb" else ()) + (ABF_KINDS if suffix == ".abf" else ())


# ABF header fields (offset, struct format) that size the file or build the command: ABF1's
# fixed header (abfheadr.h), ABF2's fixed part and section map, and (found through the map) the
# rows of ABF2's DAC and EpochPerDAC sections.
ABF1_FIELDS = ((10, "i"), (16, "i"), (40, "i"), (44, "i"), (48, "i"), (92, "i"), (96, "i"), (100, "h"), (120, "h"),
               (122, "f"), (138, "i"), (1346, "i"), (1394, "f"), (1398, "f"), (2296, "h"), (2298, "h"), (2300, "h"),
               (2302, "h")) + tuple((off + 4 * k, "i") for off in (2508, 2588) for k in range(20)) + tuple(
               (off + 4 * k, "f") for off in (2348, 2428) for k in range(20)) + tuple((2308 + 2 * k, "h") for k in range(20))  # fmt: skip
ABF2_FIXED = ((12, "I"),) + tuple((76 + 16 * k + d, f) for k in range(18) for d, f in ((0, "I"), (4, "I"), (8, "i")))
ABF2_DAC_ROW = ((12, "f"), (28, "i"), (40, "h"), (42, "h"), (44, "h"))  # holding, units index, enable, source, inter-episode
ABF2_EPOCH_ROW = ((0, "h"), (2, "h"), (4, "h"), (6, "f"), (10, "f"), (14, "i"), (18, "i"), (22, "i"), (26, "i"))
ABSURD = {"i": (0, -1, 2**31 - 1, -(2**31), 2**24, 7), "I": (0, 2**32 - 1, 2**31 - 1, 2**24),
          "h": (0, -1, 2**15 - 1, -(2**15), 99), "f": (float("nan"), float("inf"), -1e30, 3.4e38, 0.0, -5.0)}  # fmt: skip


def _abf2_rows(data: bytes, section: int, row_fields) -> list[tuple[int, str]]:
    import struct

    block, size, count = struct.unpack_from("<IIi", data, 76 + 16 * section)
    return [(block * 512 + r * size + d, f) for r in range(max(min(count, 64), 0)) for d, f in row_fields
            if size > d and block * 512 + r * size + d + 4 <= len(data)]  # fmt: skip


def mutate_abf_header(path: Path, rng: np.random.Generator) -> str:
    """1-3 header fields of the ABF that size the file or build its command set to absurd values."""
    import struct

    data = bytearray(path.read_bytes())
    if data[:4] == b"ABF2":
        fields = list(ABF2_FIXED) + _abf2_rows(data, 2, ABF2_DAC_ROW) + _abf2_rows(data, 5, ABF2_EPOCH_ROW)
    else:
        fields = list(ABF1_FIELDS)
    fields = [(o, f) for o, f in fields if o + struct.calcsize(f) <= len(data)]
    done = []
    for _ in range(int(rng.integers(1, 4))):
        offset, fmt = fields[int(rng.integers(len(fields)))]
        value = ABSURD[fmt][int(rng.integers(len(ABSURD[fmt])))]
        struct.pack_into("<" + fmt, data, offset, value)
        done.append(f"{offset}:{fmt}={value}")
    path.write_bytes(bytes(data))
    return ", ".join(done)


def mutate(src: Path, dst: Path, kind: str, rng: np.random.Generator, folder: Path) -> str:
    """Write a damaged copy of ``src`` to ``dst``; returns what was done."""
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o644)
    if kind in BYTE_KINDS:
        return mutate_bytes(dst, kind, rng)
    if kind in ABF_KINDS:
        return mutate_abf_header(dst, rng)
    with h5py.File(dst, "r+") as f:
        return H5_MUTATIONS[kind](f, rng, folder)


# -- the check of one file ----------------------------------------------------------------------


def lab_selection() -> dict:
    """The sweep settings of config/lab_abf.yaml: the real files' ladders get selected with them,
    so their mutations reach the whole of sweep selection, not only its first exclusions."""
    import yaml

    return yaml.safe_load((REPO / "config" / "lab_abf.yaml").read_text())["sweeps"]


def fuzz_preparation() -> dict:
    """A model's saved preparation for the fuzz runs: lab sweep settings, a small scalogram."""
    return {"sweeps": lab_selection(), "scalogram": {"wavelet": "mexh", "fmin_hz": 30, "fmax_hz": 150, "n_freqs": 40}}


def check_file(path: Path, params=None, predictor=None) -> dict:
    """Sweep selection (``params``: SelectionParams, default settings if None) and, with
    ``predictor``, sts predict's preparation of one file.

    Returns {'select': outcome, 'select_reason', 'unexpected', 'prepare': outcome, 'prepare_reason'};
    an outcome is 'ok', 'excluded' or 'escaped' (an exception left the function: 'traceback' holds it).
    """
    from sts.prep.sweeps import SelectionParams, select_sweeps

    out = {"unexpected": ""}
    try:
        sel = select_sweeps(path, params or SelectionParams())
        out.update(select=sel.status, select_reason=sel.reason, unexpected=sel.unexpected_error)
    except BaseException as err:  # noqa: BLE001 - what the test is looking for
        out.update(select="escaped", select_reason=f"{type(err).__name__}: {err}", traceback=traceback.format_exc())
    if predictor is not None:
        try:
            prep = predictor.prepare(path)
            out.update(prepare=prep.status, prepare_reason=prep.reason)
        except BaseException as err:  # noqa: BLE001
            out.update(prepare="escaped", prepare_reason=f"{type(err).__name__}: {err}",
                       traceback=out.get("traceback", "") + traceback.format_exc())  # fmt: skip
    return out


# -- the run: tasks in worker processes (isolated memory, two cores) ----------------------------

_WORKER: dict = {}
WORKER_AS_BYTES = 6 << 30  # address-space cap of a worker: a regression fails with MemoryError, not the machine


def _init_worker(model_path: str | None, folder: str, quiet: bool) -> None:
    import logging
    import resource
    import warnings

    resource.setrlimit(resource.RLIMIT_AS, (WORKER_AS_BYTES, WORKER_AS_BYTES))
    warnings.simplefilter("ignore")
    if quiet:
        logging.getLogger().addHandler(logging.NullHandler())
        logging.getLogger("sts").setLevel(logging.CRITICAL)
    import sts.prep.spikes  # noqa: F401
    from ipfx import spike_detector  # noqa: F401  (imported once here, not in the first task's time)
    from sts.prep.sweeps import SelectionParams

    predictor = None
    if model_path:
        from sts.serve.cnn import CnnPredictor

        predictor = CnnPredictor(model_path, device="cpu", threads=1)
    _WORKER.update(predictor=predictor, folder=Path(folder), params=SelectionParams.from_dict(lab_selection()))


def run_task(task: tuple[int, str, str, int]) -> dict:
    """One mutation of one base file, checked; returns the outcome with the worker's peak RSS."""
    import resource
    import time

    started = time.perf_counter()
    index, base, kind, seed = task
    folder = _WORKER["folder"]
    rng = np.random.default_rng([seed, index])
    src = Path(base)
    dst = folder / f"m{index:05d}_{kind}{src.suffix}"
    try:
        what = mutate(src, dst, kind, rng, folder)
    except Exception as err:  # a mutation h5py refuses (e.g. nothing to mutate): the copy as it is
        what = f"mutation failed: {type(err).__name__}: {err}"
    out = check_file(dst, _WORKER["params"], _WORKER["predictor"])
    dst.unlink(missing_ok=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"index": index, "base": src.name, "kind": kind, "what": what, "peak_rss_mb": peak_mb,
            "seconds": time.perf_counter() - started, **out}


def tasks(bases: list[Path], n: int, seed: int) -> list[tuple[int, str, str, int]]:
    """n mutations (index, base file, kind, seed): the kinds in turn, each over the base files it applies to."""
    kinds = [k for k in BYTE_KINDS + HDF5_KINDS + ABF_KINDS if any(k in kinds_for(b) for b in bases)]
    used = dict.fromkeys(kinds, 0)
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        pool = [b for b in bases if kind in kinds_for(b)]
        out.append((i, str(pool[used[kind] % len(pool)]), kind, seed))
        used[kind] += 1
    return out


def run_fuzz(bases: list[Path], n: int, seed: int, folder: Path, model_path: Path | None, workers: int = 2,
             quiet: bool = True) -> list[dict]:
    """Run n mutations in ``workers`` spawned processes; results in task order."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    folder.mkdir(parents=True, exist_ok=True)
    outside_file(folder), outside_h5(folder)
    args = (str(model_path) if model_path else None, str(folder), quiet)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                             initargs=args) as pool:  # fmt: skip
        return list(pool.map(run_task, tasks(bases, n, seed), chunksize=4))


def summary(results: list[dict]) -> dict:
    """Counts per outcome and per mutation kind, unexpected errors, peak RSS (MB)."""
    from collections import Counter

    by_kind: dict[str, Counter] = {}
    for r in results:
        by_kind.setdefault(r["kind"], Counter())[r["select"]] += 1
    return {
        "n": len(results),
        "select": dict(Counter(r["select"] for r in results)),
        "prepare": dict(Counter(r.get("prepare", "-") for r in results)),
        "unexpected": dict(Counter(r["unexpected"] for r in results if r["unexpected"])),
        "by_kind": {k: dict(v) for k, v in sorted(by_kind.items())},
        "peak_rss_mb": max((r["peak_rss_mb"] for r in results), default=0.0),
    }
