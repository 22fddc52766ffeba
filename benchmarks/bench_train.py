"""Training throughput per architecture (images/s): forward + backward + Adam step.

    python benchmarks/bench_train.py [--batch 64] [--steps 5] [--size N] [--threads 2] [--arch ...]

Runs on CUDA when present (with automatic mixed precision and a GradScaler, as sts.dl.train),
else on CPU with --threads torch threads. Sizes: the study's (224 px; 299 px for inception_v3,
with its auxiliary head) unless --size is given (raised to an architecture's minimum, 75 px for inception_v3). Random inputs and labels; one warm-up step,
then the median of --steps timed steps (CUDA synchronised).
"""

from __future__ import annotations

import argparse
import statistics
import time

import sts.dl  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
import torch

from sts.dl.models import ARCHITECTURES, AUX_WEIGHT, MIN_SIZE, STUDY_SIZE, build_model, uses_aux
from sts.dl.train import select_device


def throughput(arch: str, size: int, batch: int, steps: int, device) -> float:
    model = build_model(arch, 4, dropout=0.3, input_size=size).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 4, (batch,), device=device)
    loss_fn = torch.nn.CrossEntropyLoss()
    aux = uses_aux(arch, size)
    times = []
    for i in range(steps + 1):
        if amp:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device.type, enabled=amp):
            out = model(x)
            loss = loss_fn(out.logits, y) + AUX_WEIGHT * loss_fn(out.aux_logits, y) if aux else loss_fn(out, y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if amp:
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--size", type=int, default=None, help="input side for all architectures (default: study sizes)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--arch", nargs="+", default=list(ARCHITECTURES), choices=ARCHITECTURES)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    print(f"device: {name}; batch {args.batch}; AMP {'on' if device.type == 'cuda' else 'off'}")
    for arch in args.arch:
        size = max(args.size, MIN_SIZE[arch]) if args.size else STUDY_SIZE[arch]
        ips = throughput(arch, size, args.batch, args.steps, device)
        print(f"{arch:14s} {size:4d} px  {ips:9.1f} images/s")


if __name__ == "__main__":
    main()
