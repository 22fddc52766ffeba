"""Fuzz the readers at length: N damaged copies of recordings through sweep selection and
sts predict's preparation (the run of tests/test_fuzz_readers.py, with more mutations).

    python benchmarks/bench_fuzz.py [--mutations 2000] [--seed 1] [--workers 2] [--no-real]
                                    [--workdir DIR] [--show 10] [--log]

Base files: a small synthetic Allen NWB v1 cell, a MIES NWB 2 cell, an ABF ladder, and the
recordings of ../shared/realdata (unless --no-real). Mutation kinds and the check of each file:
tests/fuzz_data.py. Prints the counts per outcome and per mutation kind, the unexpected errors
(which sts.cohort.manifest counts), any exception that escaped (with its traceback), the peak RSS of
the worker processes and the time per file. Exits 1 when an exception escaped.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import fuzz_data as fd  # noqa: E402
from test_predict import save_untrained_model  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mutations", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-real", action="store_true", help="synthetic base files only")
    ap.add_argument("--workdir", type=Path, default=None, help="keep base files and the model here")
    ap.add_argument("--show", type=int, default=10, help="unexpected errors listed")
    ap.add_argument("--log", action="store_true", help="let the workers log (tracebacks of unexpected errors)")
    args = ap.parse_args()

    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench_fuzz_"))
    t0 = time.perf_counter()
    bases = [*fd.small_nwb_cells(root / "bases").values(), fd.small_abf(root / "bases")]
    if not args.no_real:
        bases += fd.real_files()
    model = save_untrained_model(root / "model.pt", fd.fuzz_preparation())
    t1 = time.perf_counter()
    results = fd.run_fuzz(bases, args.mutations, args.seed, root / "work", model, args.workers, quiet=not args.log)
    t2 = time.perf_counter()

    s = fd.summary(results)
    print(f"{s['n']} mutations of {len(bases)} base files (seed {args.seed}), {args.workers} workers; "
          f"bases {t1 - t0:.0f} s, fuzz {t2 - t1:.0f} s ({sum(r['seconds'] for r in results) / len(results):.2f} s "
          "per file and worker)")  # fmt: skip
    print(f"select_sweeps: {s['select']}")
    print(f"Predictor.prepare: {s['prepare']}")
    print("by kind (select_sweeps):")
    for kind, counts in s["by_kind"].items():
        print(f"  {kind:13s} {counts}")
    print(f"unexpected errors: {s['unexpected'] or 'none'}")
    for r in [r for r in results if r["unexpected"]][: args.show]:
        print(f"  {r['base']} {r['kind']} ({r['what']}): {r['select_reason'][:300]}")
    print(f"peak RSS of a worker: {s['peak_rss_mb']:.0f} MB")
    escaped = [r for r in results if "escaped" in (r["select"], r.get("prepare"))]
    for r in escaped[: args.show]:
        print(f"ESCAPED {r['base']} {r['kind']} ({r['what']}):\n{r.get('traceback', '')}")
    return 1 if escaped else 0


if __name__ == "__main__":
    raise SystemExit(main())
