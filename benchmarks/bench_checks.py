"""What the hostile-input checks cost per file: sweep selection on the demo's cells and ``sts
predict`` on 20 real ABF files, under git REF and under this working tree, alternated in one sitting.

    python benchmarks/bench_checks.py --before REF [--rounds 3] [--cells 160] [--workdir DIR]

Cells: the synthetic demo cohort's generator (seed 1, no defects), written once to WORKDIR/cells.
Real files: the 20 ABF ladders of ../shared/realdata and ../shared/realdata2 whose waveform is on
DAC0 (both trees read those; a DAC1 file is excluded at once by trees that cannot read it, which
would flatter them). Model: an untrained MobileNetV2 at 64 px with config/lab_abf.yaml's sweep
settings. Each round runs REF's code and then this tree's in fresh interpreters (PYTHONPATH);
prints per-file seconds per round and the medians' ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import print_medians

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

RUN = r"""
import json, sys, time
from pathlib import Path

from _common import print_medians
import sts.cnn  # noqa: F401 (thread settings before torch)
from sts.serve.cnn import CnnPredictor
from sts.serve.predict import predict_files
from sts.prep.sweeps import SelectionParams, select_sweeps
cells, real, model, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
demo = sorted(Path(cells).glob("*.nwb"))
select_sweeps(demo[0], SelectionParams())
t0 = time.perf_counter()
ok = sum(select_sweeps(p, SelectionParams()).status == "ok" for p in demo)
select_s = (time.perf_counter() - t0) / len(demo)
t0 = time.perf_counter()
predictor = CnnPredictor(model, "cpu", threads=2)
load_s = time.perf_counter() - t0
predict_files(predictor, [Path(real[0])], out / "warm.csv")
t0 = time.perf_counter()
table = predict_files(predictor, [Path(p) for p in real], out / "out.csv")
predict_s = (time.perf_counter() - t0) / len(real)
print(json.dumps({"select_s": select_s, "selected": ok, "load_s": load_s, "predict_s": predict_s,
                  "predicted": int((table["status"] == "ok").sum())}))
"""


def real_files() -> list[str]:
    files = []
    for folder in ("realdata", "realdata2"):
        truth = json.loads((SHARED / folder / "truth.json").read_text())
        for name, t in sorted(truth.items()):
            if name.endswith(".abf") and t.get("usable") and t.get("kind", "ladder") == "ladder" and not t.get("dac"):
                files.append(str(SHARED / folder / name))
    return files[:20]


def write_inputs(work: Path, n_cells: int) -> tuple[Path, Path]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import yaml
    from bench_predict import write_cells, write_model

    cells = work / "cells"
    write_cells(cells, n_cells)
    model = write_model(work / "model.pt", "mobilenet_v2", 64)
    import torch

    saved = torch.load(model, weights_only=True)
    sweeps = yaml.safe_load((ROOT / "config" / "lab_abf.yaml").read_text())["sweeps"]
    shared = ("window_s", "fs_hz", "plus_pa", "tolerance_pa", "min_step_s", "any_square_step")  # both trees know them
    saved["preparation"]["sweeps"] = {**saved["preparation"]["sweeps"], **{k: sweeps[k] for k in shared}}
    torch.save(saved, model)
    return cells, model


def run(src: Path, cells: Path, real: list[str], model: Path, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(src), "STS_WARM": "0"}
    proc = subprocess.run([sys.executable, "-c", RUN, str(cells), json.dumps(real), str(model), str(out)],
                          capture_output=True, text=True, env=env, check=False)  # fmt: skip
    if proc.returncode:
        raise SystemExit(f"{src}: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="git ref of the code before the checks")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cells", type=int, default=160)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_checks_"))
    cells, model = write_inputs(work, args.cells)
    real = real_files()
    tree = work / "before"
    if not tree.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.before], check=True)
    trees = {"before": tree / "src", "after": ROOT / "src"}
    results: dict[str, list[dict]] = {k: [] for k in trees}
    for r in range(args.rounds):
        for name, src in trees.items():
            res = run(src, cells, real, model, work / f"{name}_{r}")
            results[name].append(res)
            print(f"round {r} {name:6}: select {res['select_s'] * 1e3:.1f} ms/cell ({res['selected']} selected), "
                  f"predict {res['predict_s'] * 1e3:.1f} ms/file ({res['predicted']} ok), model load {res['load_s']:.2f} s",
                  flush=True)  # fmt: skip
    print_medians(results, ("select_s", "predict_s", "load_s"), "ms", 1e3)


if __name__ == "__main__":
    main()
