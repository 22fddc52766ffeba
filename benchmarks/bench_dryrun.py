"""Dry-run time of the full-size DAG (default 5,590 cells, the paper's cohort size). Target ≤ 15 s."""

import argparse
import tempfile
from pathlib import Path

from _common import snakemake, write_config

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--n-cells", type=int, default=5590)
args = parser.parse_args()

with tempfile.TemporaryDirectory() as tmp:
    workdir = Path(tmp)
    cfg = write_config(workdir, args.n_cells)
    wall = snakemake(workdir, cfg, "--dry-run", "--quiet", "all")
    print(f"dry run, {args.n_cells} cells (every per-cell rule, all targets): {wall:.1f} s (target <= 15 s)")
    wall = snakemake(workdir, cfg, "--dry-run", "--quiet", "all", "--", "results/manifest.csv")
    print(f"dry run, {args.n_cells} cells, preparation DAG only (results/manifest.csv): {wall:.1f} s")
