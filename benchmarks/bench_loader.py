"""Batch loading for training: the packed array vs a loader in the style of the original study.

    python benchmarks/bench_loader.py [--cells 96] [--size 224] [--batch 32] [--batches 12] [--workdir DIR]

Original style: for every batch, open each cell's scalogram file, read it, take |CWT|, resize
bilinearly to SIZE on the fly, scale and normalise. Packed: rows of the memory-mapped
(N, 3, SIZE, SIZE) array built once by ``sts pack``, as float32 tensors. Both read the same
cells in the same shuffled batches, after one warm-up pass (files in the page cache for both).
Cells: --workdir with results/manifest.csv and results/scalograms (a real run), or --cells
synthetic scalograms of the real shape (2, 180, 4800) written to a temporary folder.
Target: packed >= 50x faster.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import sts.cnn  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
import torch

from sts.cnn.pack import NormParams, load_packed, pack, prepare_images
from sts.cnn.train import batch_tensor


def synthetic_cells(root: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    (root / "results" / "scalograms").mkdir(parents=True)
    rows = []
    for i in range(n):
        sid = str(100000 + i)
        with h5py.File(root / "results" / "scalograms" / f"{sid}.h5", "w") as f:
            f.create_dataset("scalogram", data=rng.standard_normal((2, 180, 4800), dtype=np.float32))
            f.attrs.update(freqs_hz=np.linspace(20, 200, 180), fs_hz=4000.0)
        rows.append({"specimen_id": sid, "dataset": "seq", "label": "AB"[i % 2], "status": "ok", "reason": "",
                     "split": "train", "fold": i % 3})  # fmt: skip
    pd.DataFrame(rows).to_csv(root / "results" / "manifest.csv", index=False)
    return root


def per_file_batch(scal_dir: Path, ids, size: int, norm: NormParams) -> torch.Tensor:
    """The original loader: one file read and one on-the-fly resize per cell."""
    images = []
    for sid in ids:
        with h5py.File(scal_dir / f"{sid}.h5", "r") as f:
            images.append(prepare_images(f["scalogram"][()][None], (size, size), norm)[0])
    return torch.stack(images)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=96)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.workdir or synthetic_cells(Path(tmp), args.cells)
        manifest, scal_dir = root / "results" / "manifest.csv", root / "results" / "scalograms"
        packed_path = Path(tmp) / "packed.h5"
        t0 = time.perf_counter()
        n = pack(manifest, scal_dir, packed_path, args.size, NormParams(), dtype="float16")
        pack_s = time.perf_counter() - t0
        packed = load_packed(packed_path)
        rng = np.random.default_rng(0)
        batches = [rng.choice(n, size=min(args.batch, n), replace=False) for _ in range(args.batches)]
        cpu = torch.device("cpu")

        def run(load) -> float:
            for b in batches[:2]:  # warm-up: page cache, allocator
                load(b)
            t = time.perf_counter()
            for b in batches:
                load(b)
            return sum(len(b) for b in batches) / (time.perf_counter() - t)

        original = run(lambda b: per_file_batch(scal_dir, packed.specimen_id[b], args.size, packed.norm))
        fast = run(lambda b: batch_tensor(packed.images, b, cpu))
        x_orig = per_file_batch(scal_dir, packed.specimen_id[batches[0]], args.size, packed.norm)
        x_fast = batch_tensor(packed.images, batches[0], cpu)
        err = float((x_orig - x_fast).abs().max())  # float16 storage only
    print(f"cells {n}, image {args.size}x{args.size}, batch {args.batch}, {args.batches} batches, "
          f"{args.threads} threads; pack once: {pack_s:.1f} s ({n / pack_s:.1f} cells/s)")  # fmt: skip
    print(f"per-file loader (original style): {original:10.1f} images/s")
    print(f"packed memory map:                {fast:10.1f} images/s")
    print(f"speed-up: {fast / original:.0f}x (target >= 50x); max |difference| {err:.2e} (float16 storage)")


if __name__ == "__main__":
    main()
