"""Benchmark the synthetic cohort generator: seconds and MB per cell for each layout.

Usage: python benchmarks/bench_synth.py [n_cells_per_layout] [out_dir]
Also times make_cohort(5590) (Snakemake calls it at parse time; target < 50 ms).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from sts.synth import make_cohort, write_cell


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp(prefix="bench_synth_"))
    t = time.perf_counter()
    df = make_cohort(5590, seed=0)
    print(f"make_cohort(5590): {1000 * (time.perf_counter() - t):.1f} ms")
    good = df[df["defect"] == ""]
    write_cell(good.iloc[0], out / "warmup.nwb")  # imports (pynwb) out of the timing
    write_cell(dict(good.iloc[0], dataset="seq"), out / "warmup2.nwb")
    for dataset, fs in (("clamp", 50000.0), ("clamp", 200000.0), ("seq", 50000.0)):
        rows = good[(good["dataset"] == dataset) & (good["fs_hz"] == fs)].head(n)
        t = time.perf_counter()
        paths = []
        for _, row in rows.iterrows():
            paths.append(out / f"{row['specimen_id']}.nwb")
            write_cell(row, paths[-1])
        dt = (time.perf_counter() - t) / len(rows)
        mb = sum(p.stat().st_size for p in paths) / len(rows) / 1e6
        print(f"{dataset:5s} {fs / 1000:.0f} kHz: {dt:.3f} s/cell, {mb:.2f} MB/cell ({len(rows)} cells)")
    print(f"files in {out}")


if __name__ == "__main__":
    main()
