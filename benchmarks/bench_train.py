"""Training throughput per architecture (images/s): forward + backward + Adam step.

    python benchmarks/bench_train.py [--batch 64] [--steps 5] [--size N] [--images 512] [--threads 2] [--arch ...]

Runs on CUDA when present (automatic mixed precision, GradScaler and channels-last, as
sts.cnn.train), else on CPU with --threads torch threads. Sizes: the study's (224 px; 299 px
for inception_v3, with its auxiliary head) unless --size is given (raised to an architecture's
minimum, 75 px for inception_v3). The inputs are a float16 array of --images random images, as
`sts pack` writes them, read the two ways `sts.cnn.train.fit` reads them:

- host: batches gathered from the host array and copied to the device every step
  (`batch_tensor`; the only path on the CPU, and on a GPU when the array does not fit);
- resident (CUDA only): the array copied to the GPU once (`device_images`) and batches
  indexed there.

One warm-up step, then the median of --steps timed steps (CUDA synchronised). On CUDA the GPU
utilisation (nvidia-smi, sampled during the timed steps) is printed beside each figure.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import threading
import time

import numpy as np

import sts.cnn  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
import torch

from sts.cnn.models import AUX_WEIGHT, STUDY_SIZE, build_model, uses_aux
from sts.settings import ARCHITECTURES, MIN_SIZE
from sts.cnn.train import batch_tensor, device_images, select_device


class Utilisation:
    """Mean GPU utilisation (%) over a with-block, sampled by nvidia-smi every 0.2 s (None: unavailable)."""

    def __init__(self, device):
        self.index, self.samples, self.stop = device.index or 0, [], threading.Event()

    def _sample(self) -> None:
        cmd = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", f"--id={self.index}"]
        while not self.stop.wait(0.2):
            try:
                self.samples.append(float(subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout))
            except (OSError, ValueError, subprocess.SubprocessError):
                return

    def __enter__(self):
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    @property
    def mean(self) -> float | None:
        return statistics.mean(self.samples) if self.samples else None


def throughput(arch: str, images: np.ndarray, batch: int, steps: int, device, resident: bool) -> tuple[float, float | None]:
    """(images/s, mean GPU utilisation % or None) of training steps reading ``images`` host- or GPU-side."""
    size = images.shape[-1]
    cuda = device.type == "cuda"
    model = build_model(arch, 4, dropout=0.3, input_size=size).to(device).train()
    if cuda:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    scaler = torch.amp.GradScaler(device.type, enabled=cuda)
    labels = torch.randint(0, 4, (len(images),))
    data = device_images(images, device, share=0.9) if resident else None
    if resident and data is None:
        raise SystemExit(f"{arch}: the {images.nbytes / 2**20:.0f} MB array does not fit on {device}")
    labels = labels.to(device) if resident else labels
    loss_fn = torch.nn.CrossEntropyLoss()
    aux = uses_aux(arch, size)
    rng = np.random.default_rng(0)

    def step() -> float:
        idx = rng.choice(len(images), batch, replace=False)
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        if resident:
            rows = torch.as_tensor(idx, device=device)
            x, y = data[rows].float(), labels[rows]
        else:
            x, y = batch_tensor(images, idx, device), labels[idx].to(device)
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, enabled=cuda):
            out = model(x)
            loss = loss_fn(out.logits, y) + AUX_WEIGHT * loss_fn(out.aux_logits, y) if aux else loss_fn(out, y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    step()  # warm-up (cuDNN autotuning, allocator)
    util = Utilisation(device) if cuda else None
    with util or contextlib.nullcontext():
        times = [step() for _ in range(steps)]
    return batch / statistics.median(times), util.mean if util else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--size", type=int, default=None, help="input side for all architectures (default: study sizes)")
    ap.add_argument("--images", type=int, default=512, help="float16 images in the packed array read from")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--arch", nargs="+", default=list(ARCHITECTURES), choices=ARCHITECTURES)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if cuda else f"CPU, {args.threads} threads"
    print(f"device: {name}; batch {args.batch}; AMP {'on' if cuda else 'off'}; {args.images} float16 images")
    loaders = ("host", "resident") if cuda else ("host",)
    for arch in args.arch:
        size = max(args.size, MIN_SIZE[arch]) if args.size else STUDY_SIZE[arch]
        images = np.random.default_rng(0).standard_normal((args.images, 3, size, size), dtype=np.float32)
        images = images.astype(np.float16)
        cells = []
        for loader in loaders:
            ips, util = throughput(arch, images, args.batch, args.steps, device, resident=loader == "resident")
            cells.append(f"{loader} {ips:8.1f} images/s" + (f" (GPU {util:3.0f} %)" if util is not None else ""))
            if cuda:
                torch.cuda.empty_cache()
        print(f"{arch:14s} {size:4d} px  " + ";  ".join(cells))


if __name__ == "__main__":
    main()
