"""Dry-run time of the full-size DAG (default 5,590 cells, the paper's cohort size). Target ≤ 15 s.

Also times Snakemake's own floor for the same cells: a bare Snakefile with the preparation
DAG's shape (one NWB, sweeps and scalogram job per cell, then the manifest) and nothing but
input/output/shell, so our rules' overhead can be told apart from Snakemake's per-job cost.
"""

import argparse
import sys
import tempfile
import time
import subprocess
from pathlib import Path

from _common import snakemake, write_config

BARE = '''
IDS = [l.strip() for l in open("ids.txt") if l.strip()]
rule all:
    input: "results/manifest.csv"
rule manifest:
    input: expand("results/scalograms/{s}.h5", s=IDS)
    output: "results/manifest.csv"
    shell: "touch {output}"
rule nwb:
    output: "results/nwb/{s}.nwb"
    shell: "touch {output}"
rule sweeps:
    input: "results/nwb/{s}.nwb"
    output: "results/sweeps/{s}.h5"
    shell: "touch {output}"
rule scalogram:
    input: "results/sweeps/{s}.h5"
    output: "results/scalograms/{s}.h5"
    shell: "touch {output}"
'''

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

    from sts.synth import make_cohort

    bare = workdir / "bare"
    bare.mkdir()
    ids = sorted(set(make_cohort(args.n_cells, 1, 0.05)["specimen_id"]))
    (bare / "ids.txt").write_text("\n".join(ids))
    (bare / "Snakefile").write_text(BARE)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", "-s", "Snakefile", "-d", str(bare), "--dry-run", "--quiet", "all"],
                   cwd=bare, check=True, capture_output=True)  # fmt: skip
    print(f"Snakemake's floor: bare Snakefile, same preparation DAG shape: {time.perf_counter() - t0:.1f} s")
