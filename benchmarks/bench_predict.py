"""Per-cell time of ``sts predict`` (model load excluded): NWB file in, class probabilities out.

    python benchmarks/bench_predict.py [--cells 20] [--arch mobilenet_v2] [--size 224] [--threads 2]
                                       [--figures] [--workdir DIR]

Cells: synthetic cells of the demo generator (both NWB layouts, no defects), written once to
WORKDIR/cells. Model: an untrained ARCH (weights none) saved as model.pt with the metadata
``sts train`` writes, preparation from config/config.yaml (1.2 s at 4 kHz, 180 frequencies).
Times the whole per-file loop of ``sts.serve.predict.predict_files`` (read, select sweeps, resample,
CWT, image, forward pass, CSV) after one warm-up file, and splits it into preparation and
inference; --figures also times the per-cell figure (traces, scalograms, saliency).
Target: <= 1 s per cell on 2 cores for MobileNetV2 at 224 px.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import sts.cnn  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
import torch
import yaml

from sts.cnn.models import build_model
from sts.cnn.pack import NormParams
from sts.serve.cnn import CnnPredictor
from sts.serve.predict import predict_files
from sts.synth import CLASSES, make_cohort, write_cell

REPO = Path(__file__).resolve().parents[1]


def write_cells(folder: Path, n: int) -> list[Path]:
    cohort = make_cohort(n, seed=3, defect_fraction=0.0).drop_duplicates("specimen_id")
    paths = []
    for row in cohort.to_dict("records"):
        path = folder / f"{row['specimen_id']}.nwb"
        if not path.exists():
            write_cell(row, path)
        paths.append(path)
    return sorted(paths)


def write_model(path: Path, arch: str, size: int) -> Path:
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    model = build_model(arch, len(CLASSES), 0.0, size)
    torch.save({"state_dict": model.state_dict(), "arch": arch, "classes": list(CLASSES), "input_size": [size, size],
                "normalisation": asdict(NormParams()), "image_dtype": "float16", "dropout": 0.0,
                "train_params": {"weights": "none"},
                "preparation": {"sweeps": cfg["sweeps"], "scalogram": cfg["scalogram"]}}, path)  # fmt: skip
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=20)
    ap.add_argument("--arch", default="mobilenet_v2")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--figures", action="store_true", help="also time the per-cell figures")
    ap.add_argument("--workdir", type=Path, default=None, help="keep cells here (default: a temporary folder)")
    args = ap.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_predict_"))
    t0 = time.perf_counter()
    files = write_cells(work / "cells", args.cells)
    print(f"{len(files)} cells in {work / 'cells'} ({time.perf_counter() - t0:.1f} s to write)")
    model = write_model(work / "model.pt", args.arch, args.size)

    t0 = time.perf_counter()
    predictor = CnnPredictor(model, args.device, threads=args.threads)
    load = time.perf_counter() - t0
    predict_files(predictor, files[:1], work / "warmup.csv")  # first-call costs (kernels, caches)

    t0 = time.perf_counter()
    table = predict_files(predictor, files, work / "out.csv")
    per_cell = (time.perf_counter() - t0) / len(files)
    assert (table["status"] == "ok").all(), table.loc[table["status"] != "ok", "reason"].tolist()

    prep = infer = 0.0
    for path in files:
        t1 = time.perf_counter()
        p = predictor.prepare(path)
        t2 = time.perf_counter()
        predictor.probabilities(p.image[None])
        prep, infer = prep + t2 - t1, infer + time.perf_counter() - t2
    print(f"{args.arch} at {args.size} px, {predictor.device}, {torch.get_num_threads()} threads; "
          f"model load {load:.2f} s (excluded)")  # fmt: skip
    print(f"sts predict: {per_cell:.3f} s/cell over {len(files)} cells "
          f"(preparation {prep / len(files):.3f} s, inference {infer / len(files):.3f} s)  target <= 1 s")  # fmt: skip
    if args.figures:
        t0 = time.perf_counter()
        predict_files(predictor, files, work / "out_fig.csv", figures_dir=work / "figures")
        print(f"with --figures: {(time.perf_counter() - t0) / len(files):.3f} s/cell")


if __name__ == "__main__":
    main()
