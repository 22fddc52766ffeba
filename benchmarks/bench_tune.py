"""Wall time of the CNN tuning stage with N = 1, 2, 4 workers (cnn.tune_workers) through Snakemake.

    python benchmarks/bench_tune.py [--workers 1 2 4] [--trials 8] [--max-epochs 3] [--cores 2] [--keep DIR]

The `.test` cohort (40 synthetic cells, 31 usable, 32 px) is prepared once (cells, scalograms,
packed images); then for each N the tuning folder is removed and `snakemake --cores C` runs
the N worker jobs (cnn.threads 1 each, batch-norm recalibration on) and the gather of one
architecture. Printed per N: wall time of that Snakemake run, speed-up over N = 1, finished
trials (complete + pruned), failed ones (surplus or orphans), best CV balanced accuracy, the
workers' CPU seconds (Snakemake's benchmark files) and the machine's 1-min load average at
the end (other processes slow every figure). On C cores at most C workers run at once: the
speed-up is bounded by C; workers beyond C start when the study is full and leave at once.
Further workers draw from other sampler seeds, so the best score varies with N.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import yaml
from _common import REPO, snakemake


def config(workdir: Path, arch: str, trials: int, max_epochs: int, workers: int) -> Path:
    cfg = yaml.safe_load((REPO / ".test" / "config.yaml").read_text())
    cfg["cnn"].update(architectures=[arch], trials=trials, max_epochs=max_epochs, threads=1, tune_workers=workers,
                      recalibrate_bn=True, pruner={"kind": "median", "startup_trials": 2, "warmup_epochs": 1})  # fmt: skip
    cfg["cross_dataset"] = {"enabled": False}
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--max-epochs", type=int, default=3)
    ap.add_argument("--arch", default="mobilenet_v2")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: a temporary one)")
    args = ap.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="bench_tune_"))
    workdir.mkdir(parents=True, exist_ok=True)
    cores = ["--cores", str(args.cores)]
    cfg = config(workdir, args.arch, args.trials, args.max_epochs, 1)
    prep = snakemake(workdir, cfg, *cores, "results/cnn/packed_32px.h5")
    print(f"preparation of the .test cohort (packed images): {prep:.1f} s")
    print(f"{args.arch}, {args.trials} trials of up to {args.max_epochs} epochs per fold, {args.cores} cores")
    print(f"{'workers':>7} {'wall_s':>8} {'speed-up':>8} {'finished':>8} {'failed':>6} {'best_cv_bacc':>12} "
          f"{'cpu_s':>6} {'load':>5}")  # fmt: skip
    base = None
    for n in args.workers:
        for folder in ("results/tuning", "benchmarks/cnn_tune", "logs/cnn_tune", "logs/cnn_tune_gather"):
            shutil.rmtree(workdir / folder, ignore_errors=True)
        cfg = config(workdir, args.arch, args.trials, args.max_epochs, n)
        wall = snakemake(workdir, cfg, *cores, f"results/tuning/{args.arch}/best_params.json")
        search = json.loads((workdir / "results" / "tuning" / args.arch / "search.json").read_text())
        cpu = sum(float(line.split("\t")[-1]) for tsv in (workdir / "benchmarks" / "cnn_tune").rglob("*.tsv")
                  for line in tsv.read_text().splitlines()[1:])  # fmt: skip
        base = base or wall
        print(f"{n:>7} {wall:>8.1f} {base / wall:>8.2f} {search['complete'] + search['pruned']:>8} "
              f"{search['failed']:>6} {search['best_cv_balanced_accuracy']:>12.3f} {cpu:>6.0f} "
              f"{os.getloadavg()[0]:>5.1f}", flush=True)  # fmt: skip
    if args.keep is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
