"""Wall time of one per-cell command through the warm server (sts.warm.client) and in-process, interleaved.

One synthetic cell is written first (not timed). Each round then runs `sts select-sweeps` and
`sts scalogram` on it, warm (STS_WARM=1, its server started before timing) and cold (STS_WARM=0),
for every --src given, in an order rotated each round so that a drifting machine load hits all
alike; medians (and quartiles) per variant, mode and step are printed. A client's whole life is
timed: interpreter start, request, the command, exit status.

Before/after a change of sts.warm.client: copy the old and new `src/` trees and pass both,
  python benchmarks/bench_warm.py --src /tmp/old/src --src /tmp/new/src
(each goes first on PYTHONPATH of its commands; without --src, the installed package).

--fresh also times "fresh": every command starts its own server in an empty directory, which then
serves that one command (what a SLURM job step, killed with everything it started when its one
command ends, would get from a server of its own).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STS = [sys.executable, "-c", "import sys; from sts.cli import main; sys.exit(main())"]

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--rounds", type=int, default=20, help="timed runs per mode (at least 2, for the quartiles)")
parser.add_argument("--src", action="append", default=[], help="a src/ folder to time (repeatable)")
parser.add_argument("--fresh", action="store_true", help="also time a new server for every command")
args = parser.parse_args()
if args.rounds < 2:
    parser.error("--rounds: at least 2 (the quartiles need two runs)")

work = Path(tempfile.mkdtemp(prefix="sts-bench-warm-"))
variants = args.src or [""]


def stop_servers(locks) -> None:
    """SIGTERM the servers whose pids their lock files hold."""
    for lock in locks:
        pid = lock.read_text().strip()
        if pid.isdigit():
            try:
                os.kill(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass


try:
    from sts.synth import make_cohort, write_cell

    cohort = make_cohort(8, seed=3, defect_fraction=0.0)
    row = cohort[cohort["label"] != "Unsure"].iloc[0].to_dict()
    nwb = work / "cell.nwb"
    write_cell(row, nwb)
    sid = str(row["specimen_id"])

    fresh_dirs = iter(range(10**9))

    def env(variant: int, warm: bool | str, warm_dir: Path | None = None) -> dict[str, str]:
        e = dict(os.environ, STS_WARM="1" if warm else "0", STS_WARM_DIR=str(warm_dir or work / f"warm{variant}"))
        if variants[variant]:
            e["PYTHONPATH"] = os.pathsep.join(filter(None, [variants[variant], os.environ.get("PYTHONPATH")]))
        return e

    def run(variant: int, warm: bool | str) -> tuple[float, float]:
        out = work / f"{variant}{warm}"
        times = []
        for step in (["select-sweeps", nwb, f"{out}.sweeps.h5", "--specimen-id", sid],
                     ["scalogram", f"{out}.sweeps.h5", f"{out}.scal.h5"]):  # fmt: skip
            warm_dir = work / f"fresh{next(fresh_dirs)}" if warm == "fresh" else None
            if warm_dir:
                warm_dir.mkdir(mode=0o700)
            t0 = time.perf_counter()
            proc = subprocess.run(
                [*STS, *map(str, step)], env=env(variant, warm, warm_dir), capture_output=True, text=True
            )
            times.append(time.perf_counter() - t0)
            if warm_dir:
                stop_servers(warm_dir.glob("*.lock"))
            if proc.returncode or (warm and "warm server not used" in proc.stderr):
                raise SystemExit(
                    f"{step[0]} failed ({mode_name(warm)}, {variants[variant]}):\n{proc.stderr}"
                )
        return times[0], times[1]

    def mode_name(warm: bool | str) -> str:
        return warm if isinstance(warm, str) else "warm" if warm else "cold"

    modes = [(v, w) for v in range(len(variants)) for w in (True, False, *(["fresh"] if args.fresh else []))]
    for v in range(len(variants)):
        (work / f"warm{v}").mkdir(mode=0o700)
    for mode in modes:
        run(*mode)  # servers started, files in the page cache
    samples: dict[tuple[int, bool], list[tuple[float, float]]] = {m: [] for m in modes}
    for r in range(args.rounds):
        for mode in modes[r % len(modes) :] + modes[: r % len(modes)]:
            samples[mode].append(run(*mode))
    for (v, warm), got in samples.items():
        for i, step in enumerate(("select-sweeps", "scalogram")):
            q1, median, q3 = statistics.quantiles([g[i] for g in got], n=4)
            print(f"{variants[v] or 'installed'}  {mode_name(warm):5s}  {step:14s} median {median:.3f} s "
                  f"(quartiles {q1:.3f}-{q3:.3f}, {len(got)} runs)")  # fmt: skip
finally:
    stop_servers(work.glob("*/*.lock"))
    shutil.rmtree(work, ignore_errors=True)
