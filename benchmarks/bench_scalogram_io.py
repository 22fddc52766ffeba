"""Per-cell scalogram files: bytes, write and read time per storage option, and paper-scale disk.

Synthetic cells (default grid: 2 x 180 x 4,800) are made and their sweeps selected first (not
timed); then each cell's float32 CWT is written as the scalogram step writes it (float16, one
chunk per sweep; compression none, gzip, lzf) and as it was written before (float32,
contiguous), and read back as ``sts pack`` reads it. Write times are of the file alone (rounding
included, CWT excluded; the CWT's own time is printed once); CPU time is printed beside wall time
because the figures are meant for shared, busy machines.
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from sts.prep.scalogram_file import ScalogramParams, as_stored, dataset_options, scalogram_of

PAPER_CELLS = 5590

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--n-cells", type=int, default=12)
parser.add_argument("--repeats", type=int, default=3, help="writes per cell and option (the fastest counts)")
args = parser.parse_args()


def timed(fn):
    """(result, wall s, CPU s) of the call."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def write(path, scal, option):
    if option == "float32 (before)":
        with h5py.File(path, "w") as f:
            f.create_dataset("scalogram", data=scal)
        return
    stored, reason = as_stored(scal)
    assert stored is not None, reason
    with h5py.File(path, "w") as f:
        f.create_dataset("scalogram", data=stored, **dataset_options(stored.shape, option))


work = Path(tempfile.mkdtemp(prefix="sts-bench-scal-"))
try:
    from sts.cli import main
    from sts.synth import make_cohort, write_cell

    cohort = make_cohort(args.n_cells, seed=3, defect_fraction=0.0).drop_duplicates("specimen_id")
    params, cells = ScalogramParams(), []
    for row in cohort.to_dict("records"):
        nwb, sweeps = work / f"{row['specimen_id']}.nwb", work / f"{row['specimen_id']}_sweeps.h5"
        write_cell(row, nwb)
        main(["select-sweeps", str(nwb), str(sweeps), "--specimen-id", str(row["specimen_id"])], warm=False)
        nwb.unlink()
        with h5py.File(sweeps) as f:
            if "traces_mv" in f:
                cells.append((f["traces_mv"][()], float(f.attrs["fs_hz"])))
    cwt_s = [timed(lambda: scalogram_of(v, fs, params))[1] for v, fs in cells]
    scals = [scalogram_of(v, fs, params) for v, fs in cells]
    print(f"{len(scals)} cells, scalogram {scals[0].shape}; CWT {np.median(cwt_s) * 1e3:.0f} ms/cell (median)")
    print(f"{'storage':<18} {'MB/cell':>8} {'write ms (wall/CPU)':>20} {'read ms':>8} {'GB at 5,590':>12}")
    for option in ("float32 (before)", "none", "lzf", "gzip"):
        sizes, wall, cpu, read = [], [], [], []
        for i, scal in enumerate(scals):
            path = work / f"out{i}.h5"
            runs = [timed(lambda: write(path, scal, option))[1:] for _ in range(args.repeats)]
            wall.append(min(r[0] for r in runs))
            cpu.append(min(r[1] for r in runs))
            sizes.append(path.stat().st_size)

            def load():
                with h5py.File(path) as f:
                    return f["scalogram"][()]

            back, t, _ = timed(load)
            read.append(t)
            if option != "float32 (before)":
                np.testing.assert_array_equal(back, as_stored(scal)[0])
        mb = np.mean(sizes) / 1e6
        print(f"{option:<18} {mb:>8.2f} {np.median(wall) * 1e3:>9.0f} / {np.median(cpu) * 1e3:<8.0f} "
              f"{np.median(read) * 1e3:>8.0f} {mb * PAPER_CELLS / 1e3:>12.1f}")
finally:
    shutil.rmtree(work, ignore_errors=True)
