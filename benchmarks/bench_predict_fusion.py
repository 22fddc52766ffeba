"""Per-file time of ``sts predict`` with a fusion model on 20 real ABF files, under git REF and under
this working tree, alternated in one sitting; the two trees' CSVs compared byte for byte.

    python benchmarks/bench_predict_fusion.py --model RUN/results/fusion/model.json [--before main]
        [--rounds 3] [--tolerance-pa 20] [--figures] [--workdir DIR]

Model: a fusion the workflow built (the demo's: four CNNs and LightGBM). Files: the ABF ladders of
../shared/realdata and realdata2 that ``bench_checks.py`` times (waveform on DAC0), with
``--tolerance-pa`` and ``--any-square-step`` as config/lab_abf.yaml sets them (the model's window
and rate stay). Each round runs REF's code and then this tree's in fresh interpreters (PYTHONPATH,
2 torch threads, CPU): model load excluded, one warm-up file, then ``predict_files`` over all files
(per file: total, and the fusion's ``prepare`` alone); prints per-file seconds per round and the
medians. ``--figures``: this tree also draws every classified file's figure (seconds per figure).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import print_medians  # noqa: E402
from bench_checks import real_files  # noqa: E402

RUN = r"""
import json, sys, time
from pathlib import Path
import sts.cnn  # noqa: F401 (thread settings before torch)
from sts.serve.predict import load_predictor, predict_files
files, model, out = [Path(f) for f in json.loads(sys.argv[1])], sys.argv[2], Path(sys.argv[3])
overrides, figures = json.loads(sys.argv[4]), sys.argv[5] == "1"
t0 = time.perf_counter()
predictor = load_predictor(model, "cpu", threads=2, selection_overrides=overrides)
load_s = time.perf_counter() - t0
predict_files(predictor, files[:1], out / "warm.csv")
t0 = time.perf_counter()
table = predict_files(predictor, files, out / "out.csv")
predict_s = (time.perf_counter() - t0) / len(files)
t0 = time.perf_counter()
for f in files:
    predictor.prepare(f)
prepare_s = (time.perf_counter() - t0) / len(files)
ok = int((table["status"] == "ok").sum())
figure_s = None
if figures and ok:
    t0 = time.perf_counter()
    predict_files(predictor, files, out / "out_fig.csv", figures_dir=out / "figures")
    figure_s = (time.perf_counter() - t0 - predict_s * len(files)) / ok
print(json.dumps({"load_s": load_s, "predict_s": predict_s, "prepare_s": prepare_s, "ok": ok, "figure_s": figure_s}))
"""


def run(src: Path, files: list[str], model: Path, out: Path, overrides: dict, figures: bool) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(src), "STS_WARM": "0"}
    proc = subprocess.run([sys.executable, "-c", RUN, json.dumps(files), str(model), str(out), json.dumps(overrides),
                           "1" if figures else "0"], capture_output=True, text=True, env=env, check=False)  # fmt: skip
    if proc.returncode:
        raise SystemExit(f"{src}: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="a fusion model.json (or its folder)")
    ap.add_argument("--before", default="main", help="git ref of the code to compare with")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tolerance-pa", type=float, default=20.0)
    ap.add_argument("--figures", action="store_true", help="this tree also times the per-file figures")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_predict_fusion_"))
    files = real_files()
    overrides = {"tolerance_pa": args.tolerance_pa, "any_square_step": True}
    tree = work / "before"
    if not tree.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.before], check=True)
    trees = {"before": tree / "src", "after": ROOT / "src"}
    results: dict[str, list[dict]] = {k: [] for k in trees}
    print(f"{len(files)} files; model {args.model}; overrides {overrides}")
    for r in range(args.rounds):
        for name, src in trees.items():
            out = work / f"{name}_{r}"
            res = run(src, files, args.model, out, overrides, args.figures and name == "after")
            results[name].append(res)
            fig = f", figures {res['figure_s']:.2f} s/figure" if res["figure_s"] is not None else ""
            print(f"round {r} {name:6}: predict {res['predict_s']:.3f} s/file ({res['ok']} ok), prepare "
                  f"{res['prepare_s']:.3f} s/file, model load {res['load_s']:.2f} s{fig}", flush=True)  # fmt: skip
        same = (work / f"before_{r}" / "out.csv").read_bytes() == (work / f"after_{r}" / "out.csv").read_bytes()
        print(f"round {r}: CSVs {'identical' if same else 'DIFFER'}", flush=True)
    print_medians(results, ("predict_s", "prepare_s", "load_s"))


if __name__ == "__main__":
    main()
