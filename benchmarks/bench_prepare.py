"""Amortised wall time per cell of select_sweeps + scalogram (+ manifest), Snakemake included.

The synthetic NWB files are made first (not timed); then `snakemake --cores N` runs the
preparation DAG and the wall time is divided by the number of cells. Target ≤ 0.25 s/cell
on 2 cores for 500 cells. Peak memory of the timed run: the largest process (Snakemake or
any job, from wait4) and Snakemake's own (its DAG; VmHWM). Scale run of the issue:
`--n-cells 5590 --cores 2` (~6 MB of NWB per cell on disk: use --keep on a roomy disk).
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, snakemake, write_config


def vm_hwm_mb(pid: int) -> float:
    """Peak resident memory of a live process (Linux /proc), 0 if unavailable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def measured_snakemake(workdir: Path, config: Path, *args: str) -> tuple[float, float, float]:
    """Run snakemake; return (wall s, peak RSS of any process of the run MB, Snakemake's own MB)."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--configfile", str(config), *args]
    log = workdir / "bench_prepare.log"
    with open(log, "w") as out:
        t0 = time.perf_counter()
        pid = os.posix_spawn(cmd[0], cmd, os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, out.fileno(), 1),
                                                                      (os.POSIX_SPAWN_DUP2, out.fileno(), 2)])
        own = 0.0
        while True:  # wait4 gives the run's max RSS (children included) once it ends
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                break
            own = max(own, vm_hwm_mb(pid))
            time.sleep(0.5)
        wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{' '.join(cmd)} failed:\n{log.read_text()[-4000:]}")
    return wall, usage.ru_maxrss / 1024, own

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--n-cells", type=int, default=500)
parser.add_argument("--cores", type=int, default=2)
parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
parser.add_argument("--with-features", action="store_true", help="also time ep_features (ipfx) and its table")
parser.add_argument("--cold", action="store_true", help="also time it with STS_WARM=0 (every job imports afresh)")
args = parser.parse_args()

workdir = args.keep or Path(tempfile.mkdtemp(prefix="sts-bench-"))
try:
    cfg = write_config(workdir, args.n_cells)
    synth = snakemake(workdir, cfg, "--cores", str(args.cores), "results/manifest.csv", "--quiet", "all", "--until", "synth_cell", "synth_metadata")
    print(f"synthetic cohort: {args.n_cells} cells written in {synth:.1f} s ({synth / args.n_cells:.3f} s/cell)")
    targets = ["results/manifest.csv"]
    steps = "select_sweeps + scalogram + manifest" + (" + ep_features + table" if args.with_features else "")
    for warm in ("1", "0") if args.cold else ("1",):
        os.environ["STS_WARM"] = warm  # sts.warm.client: per-cell commands share one warm interpreter
        for stale in ("sweeps", "scalograms"):
            shutil.rmtree(workdir / "results" / stale, ignore_errors=True)
        if args.with_features:
            shutil.rmtree(workdir / "results" / "baseline", ignore_errors=True)
            targets = ["results/manifest.csv", "results/baseline/features.csv"]
        wall, peak, own = measured_snakemake(
            workdir, cfg, "--cores", str(args.cores), "--forcerun", "manifest", "--quiet", "all", "--", *targets
        )
        print(
            f"{steps}, {args.n_cells} cells, --cores {args.cores}, {'warm' if warm == '1' else 'cold (STS_WARM=0)'}: "
            f"{wall:.1f} s wall, {wall / args.n_cells:.3f} s/cell (target <= 0.25); peak RSS: largest process "
            f"{peak:.0f} MB, Snakemake itself {own:.0f} MB"
        )
finally:
    if args.keep is None:
        shutil.rmtree(workdir, ignore_errors=True)
