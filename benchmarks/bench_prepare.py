"""Amortised wall time per cell of select_sweeps + scalogram (+ manifest), Snakemake included.

The synthetic NWB files are made first (not timed); then `snakemake --cores N` runs the
preparation DAG and the wall time is divided by the number of cells. Target ≤ 0.25 s/cell
on 2 cores for 500 cells.
"""

import argparse
import resource
import shutil
import tempfile
from pathlib import Path

from _common import snakemake, write_config

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--n-cells", type=int, default=500)
parser.add_argument("--cores", type=int, default=2)
parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
args = parser.parse_args()

workdir = args.keep or Path(tempfile.mkdtemp(prefix="sts-bench-"))
try:
    cfg = write_config(workdir, args.n_cells)
    synth = snakemake(workdir, cfg, "--cores", str(args.cores), "results/manifest.csv", "--quiet", "all", "--until", "synth_cell", "synth_metadata")
    print(f"synthetic cohort: {args.n_cells} cells written in {synth:.1f} s ({synth / args.n_cells:.3f} s/cell)")
    for stale in ("sweeps", "scalograms"):  # a kept folder: time the preparation again
        shutil.rmtree(workdir / "results" / stale, ignore_errors=True)
    wall = snakemake(workdir, cfg, "--cores", str(args.cores), "--forcerun", "manifest", "--quiet", "all", "--", "results/manifest.csv")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"select_sweeps + scalogram + manifest, {args.n_cells} cells, --cores {args.cores}: "
        f"{wall:.1f} s wall, {wall / args.n_cells:.3f} s/cell (target <= 0.25), peak RSS of a job {peak:.0f} MB"
    )
finally:
    if args.keep is None:
        shutil.rmtree(workdir, ignore_errors=True)
