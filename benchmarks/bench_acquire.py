"""Real-data acquisition figures: streamed bytes per DANDI cell against the file size (loopback
server, fixture files shaped like the real ones), and the dry-run time of the paper cohort's
5,590-cell DAG with its metadata cached (target as bench_dryrun: <= 15 s)."""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

from _common import REPO, snakemake

sys.path.insert(0, str(REPO / "tests"))

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--cells", type=int, default=12, help="synthetic cells written for the streaming figure")
parser.add_argument("--block-kb", type=int, nargs="+", default=[16, 32, 64])
parser.add_argument("--skip-dryrun", action="store_true")
args = parser.parse_args()

with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    from acquire_fixtures import build_services, write_fixture_cells
    from sts.acquire.dandi_stream import stream_cell
    from sts.prep.sweeps import SelectionParams

    cohort, nwb = write_fixture_cells(tmp / "nwb", args.cells, seed=3)
    seq = cohort[cohort["dataset"] == "seq"]
    services = build_services(seq, nwb, tmp)
    for kb in args.block_kb:
        fetched, sizes, requests, t0 = [], [], [], time.perf_counter()
        for sid in seq["specimen_id"]:
            services.server.reset_counters()
            url = f"{services.server.url}{services.blob_path(sid)}"
            r = stream_cell(url, tmp / "out.nwb", SelectionParams(), kb * 1024, size=nwb[sid].stat().st_size)
            fetched.append(services.server.bytes_sent[services.blob_path(sid)])
            sizes.append(r.remote_size)
            requests.append(services.server.requests[services.blob_path(sid)])
        wall = (time.perf_counter() - t0) / len(fetched)
        print(f"stream, {kb} KiB blocks, {len(fetched)} cells: {sum(fetched) / len(fetched) / 1e6:.2f} MB/cell "
              f"(max {max(fetched) / 1e6:.2f}) of {sum(sizes) / len(sizes) / 1e6:.1f} MB files "
              f"({100 * sum(fetched) / sum(sizes):.1f} %), {sum(requests) / len(requests):.0f} range requests/cell, "
              f"{wall:.2f} s/cell on loopback")
    services.server.stop()

    if not args.skip_dryrun:
        work = tmp / "paper"
        shutil.copytree(REPO / "resources" / "paper", work / "resources" / "paper")
        (work / "results" / "metadata").mkdir(parents=True)
        (work / "results" / "metadata" / "dandi_assets.csv").write_text("specimen_id,asset_id,path,size\n")
        cfg = work / "config.yaml"
        cfg.write_text(yaml.safe_dump(yaml.safe_load((REPO / "config" / "paper.yaml").read_text())))
        wall = snakemake(work, cfg, "--dry-run", "--quiet", "all")
        print(f"dry run, paper cohort (5,590 cells, metadata cached), all targets: {wall:.1f} s (target <= 15 s)")
