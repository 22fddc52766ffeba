"""One training run of a CNN on packed images: full fine-tuning with Adam and step decay.

``fit`` trains on ``train_idx`` for up to ``max_epochs``; with ``valid_idx`` it scores the
validation balanced accuracy after every epoch, keeps the best weights (and the validation
cells' class probabilities there: out-of-fold predictions) and stops after ``patience`` epochs
without improvement. Without validation cells it trains exactly
``max_epochs`` (the final refit). The learning rate is multiplied by ``decay_factor`` every
``decay_period`` epochs (``decay_factor`` 0: constant).

With ``recalibrate_bn`` the batch-norm running statistics are recomputed on the training
cells after every epoch (before validation): needed for small cohorts, see ``recalibrate_bn``.

Device: CUDA when present, else CPU, where runs are seeded and deterministic
(``torch.use_deterministic_algorithms``): same seed, same weights. On CUDA: automatic mixed
precision, channels-last layout, and, when the packed array fits in ``GPU_DATA_SHARE`` of the
GPU's free memory, the whole array lives on the GPU in its storage type for the fit: batches are
rows indexed there (no host loader, no per-batch copies; the epoch's order is sent once). A CPU
fit reads batches from the memory map, as before.
A checkpoint (model, optimiser, scheduler, RNG, history) is written atomically after every
epoch; a run killed and started again with the same settings continues from it and ends
with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from sts.io.atomic import save_torch_atomic
from sts.cnn.models import AUX_WEIGHT, build_model, uses_aux
from sts.cnn.safe_torch import plain, safe_load
from sts.settings import DEFAULT_DEVICE, TuneSettings, default

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainParams:
    """Hyper-parameters of one fit (the tuned ones first). ``max_epochs`` has no default: a search
    fit gets its TuneSettings' (cnn.max_epochs), the final refit best_params.json's final_epochs;
    the rest of the architecture's settings default to TuneSettings'."""

    batch_size: int = 32
    learning_rate: float = 1e-3
    decay_factor: float = 0.0
    decay_period: int = 10
    patience: int = 10
    dropout: float = 0.0
    max_epochs: int = field(kw_only=True)
    seed: int = default(TuneSettings, "seed")
    weights: str = default(TuneSettings, "weights")
    weights_path: str | None = None
    device: str = DEFAULT_DEVICE
    # re-estimate batch-norm statistics on the training cells each epoch
    recalibrate_bn: bool = default(TuneSettings, "recalibrate_bn")


@dataclass
class FitResult:
    history: list[dict]
    best_epoch: int  # epochs trained when the kept weights were reached (1-based)
    best_score: float | None  # validation balanced accuracy there (None without validation)
    state_dict: dict = field(repr=False)
    stopped_early: bool = False
    valid_proba: np.ndarray | None = field(default=None, repr=False)  # (len(valid_idx), n_classes) there

    @property
    def epochs_run(self) -> int:
        return len(self.history)


def select_device(preference: str = DEFAULT_DEVICE):
    """``auto``: CUDA when available, else CPU; or an explicit torch device string."""
    import torch

    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {preference!r} requested but CUDA is not available")
    return device


def seed_everything(seed: int, device, threads: int | None = None) -> None:
    """Seed torch and numpy; deterministic kernels on CPU; torch threads from the job's threads."""
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    if threads:
        torch.set_num_threads(threads)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cudnn.benchmark = True


GPU_DATA_SHARE = 0.5  # of the GPU's free memory (model loaded) the packed images may fill
# Paper scale at 224 px: 5,590 x 3 x 224 x 224 float16 = 1.7 GB.


def device_images(images: np.ndarray, device, share: float = GPU_DATA_SHARE):
    """The whole (N, 3, H, W) image array as a tensor on a CUDA ``device`` (storage type kept:
    float16 is half the bytes) when it takes at most ``share`` of the free GPU memory; else None
    (the CPU, or too large: batches are then read from the host array)."""
    import torch

    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    if images.nbytes > share * free:
        log.info("packed images (%.0f MB) exceed %.0f%% of the GPU's free %.0f MB: batches copied from the host",
                 images.nbytes / 2**20, 100 * share, free / 2**20)  # fmt: skip
        return None
    log.info("packed images (%.0f MB) on %s for the fit", images.nbytes / 2**20, device)
    return torch.from_numpy(np.array(images)).to(device)  # a writable host copy of the read-only map, once


def batch_tensor(images, idx: np.ndarray, device):
    """Rows ``idx`` of the (memory-mapped) image array as a float32 tensor on ``device``; of a
    tensor already there (``device_images``), indexed in place."""
    import torch

    if isinstance(images, torch.Tensor):
        return images[torch.as_tensor(idx, device=images.device)].float()
    order = np.sort(idx)  # sorted reads of a memory map are sequential
    x = torch.from_numpy(np.ascontiguousarray(images[order], dtype=np.float32))
    if not np.array_equal(order, idx):
        x = x[torch.from_numpy(np.argsort(np.argsort(idx)))]
    return x.to(device, non_blocking=True)


def predict_proba(model, images: np.ndarray, idx: np.ndarray, device, batch_size: int = 128) -> np.ndarray:
    """Softmax class probabilities (len(idx), n_classes) in eval mode."""
    import torch

    model.eval()
    out = []
    with torch.no_grad(), torch.autocast(device.type, enabled=device.type == "cuda"):
        for start in range(0, len(idx), batch_size):
            logits = model(batch_tensor(images, idx[start : start + batch_size], device))
            out.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def recalibrate_bn(model, images: np.ndarray, idx: np.ndarray, batch_size: int, device) -> None:
    """Replace batch-norm running statistics by their average over ``idx`` (torch's update_bn).

    With few optimiser steps (small cohorts) the running estimates still carry their
    initial values, and eval-mode outputs collapse to one class; recomputing them fixes that.
    """
    import torch
    from torch.optim.swa_utils import update_bn

    # As in training, a last batch of one image is left out: batch norm cannot take it in train mode
    # (one value per channel where the maps are 1x1), and update_bn weights every batch alike.
    batches = [idx[s : s + batch_size] for s in range(0, len(idx), batch_size)]
    with torch.autocast(device.type, enabled=device.type == "cuda"):
        update_bn((batch_tensor(images, b, device) for b in batches if len(b) > 1), model)


def fit(
    arch: str,
    images: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    train_idx: np.ndarray,
    valid_idx: np.ndarray | None,
    params: TrainParams,
    checkpoint: str | Path | None = None,
    on_epoch: Callable[[int, float | None], None] | None = None,
    threads: int | None = None,
) -> FitResult:
    """Train ``arch`` on ``images[train_idx]`` (see the module docstring).

    ``on_epoch(epoch, best_valid_score)`` runs after each epoch's checkpoint (a tuner's
    pruning hook may raise there).
    """
    import torch
    from sklearn.metrics import balanced_accuracy_score

    device = select_device(params.device)
    seed_everything(params.seed, device, threads)
    input_size = int(images.shape[-1])
    model = build_model(arch, n_classes, params.dropout, input_size, params.weights, params.weights_path)
    model.to(device)
    cuda = device.type == "cuda"
    if cuda:  # tensor cores want NHWC; the CPU path keeps its layout (and its results)
        model.to(memory_format=torch.channels_last)
    aux = uses_aux(arch, input_size)
    opt = torch.optim.Adam(model.parameters(), lr=params.learning_rate, fused=True)  # 7x faster on CPU
    sched = (
        torch.optim.lr_scheduler.StepLR(opt, step_size=params.decay_period, gamma=params.decay_factor)
        if params.decay_factor > 0
        else None
    )
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    loss_fn = torch.nn.CrossEntropyLoss()
    y_t = torch.as_tensor(y, dtype=torch.long)
    resident = device_images(images, device)  # None on the CPU
    data = images if resident is None else resident  # what validation and BN recalibration read
    if resident is not None:
        y_t = y_t.to(device)
    fingerprint = plain({"arch": arch, "n_train": len(train_idx), "n_valid": 0 if valid_idx is None else len(valid_idx),
                         "params": asdict(params), "input_size": input_size})  # fmt: skip
    state = {"epoch": 0, "history": [], "best_score": None, "best_epoch": 0, "best_state": None, "bad": 0,
             "stopped": False}  # fmt: skip
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt and ckpt.exists():
        saved = safe_load(ckpt)
        if saved.get("fingerprint") == fingerprint:
            model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["optimizer"])
            if sched:
                sched.load_state_dict(saved["scheduler"])
            scaler.load_state_dict(saved["scaler"])
            torch.set_rng_state(saved["rng"])
            state = saved["state"]
            log.info("%s: resumed from %s after epoch %d", arch, ckpt, state["epoch"])
        else:
            log.warning("%s: checkpoint %s is from other settings; starting afresh", arch, ckpt)

    rng = lambda epoch: np.random.default_rng([params.seed, epoch])  # noqa: E731  same order after resume
    while state["epoch"] < params.max_epochs and not state["stopped"]:
        epoch = state["epoch"]
        t0 = time.perf_counter()
        model.train()
        order = rng(epoch).permutation(train_idx)
        order_t = None if resident is None else torch.as_tensor(order, device=device)  # one copy per epoch
        losses, seen = [], 0
        for start in range(0, len(order), params.batch_size):
            idx = order[start : start + params.batch_size]
            if len(idx) < 2:  # batch norm cannot train on a single image
                continue
            if resident is None:
                xb, yb = batch_tensor(images, idx, device), y_t[idx].to(device)
            else:
                rows = order_t[start : start + params.batch_size]
                xb, yb = resident[rows].float(), y_t[rows]
            if cuda:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, enabled=device.type == "cuda"):
                out = model(xb)
                if aux:
                    loss = loss_fn(out.logits, yb) + AUX_WEIGHT * loss_fn(out.aux_logits, yb)
                else:
                    loss = loss_fn(out, yb)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            losses.append((loss.detach(), len(idx)))  # read once per epoch: no sync per step on a GPU
            seen += len(idx)
        values = torch.stack([v for v, _ in losses]).float().cpu().tolist() if losses else []
        loss_sum = sum(v * n for v, (_, n) in zip(values, losses))
        train_s = time.perf_counter() - t0
        lr = opt.param_groups[0]["lr"]
        if sched:
            sched.step()
        if params.recalibrate_bn:
            recalibrate_bn(model, data, train_idx, params.batch_size, device)
        row = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1), "learning_rate": lr,
               "images_per_s": seen / train_s if train_s > 0 else float("nan")}  # fmt: skip
        if valid_idx is not None and len(valid_idx):
            proba = predict_proba(model, data, valid_idx, device)
            score = float(balanced_accuracy_score(y[valid_idx], proba.argmax(axis=1)))
            row["valid_balanced_accuracy"] = score
            if state["best_score"] is None or score > state["best_score"]:
                state.update(best_score=score, best_epoch=epoch + 1, bad=0, best_proba=proba,
                             best_state=copy.deepcopy({k: v.cpu() for k, v in model.state_dict().items()}))  # fmt: skip
            else:
                state["bad"] += 1
            state["stopped"] = state["bad"] >= params.patience
        else:
            state.update(best_epoch=epoch + 1, best_state=None)
        row["seconds"] = time.perf_counter() - t0
        state["history"].append(row)
        state["epoch"] = epoch + 1
        log.info("%s epoch %d/%d: %s", arch, epoch + 1, params.max_epochs,
                 ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch"))  # fmt: skip
        if ckpt:
            save_torch_atomic({"fingerprint": fingerprint, "model": model.state_dict(), "optimizer": opt.state_dict(),
                          "scheduler": sched.state_dict() if sched else None, "scaler": scaler.state_dict(),
                          "rng": torch.get_rng_state(), "state": plain(state)}, ckpt)  # fmt: skip
        if on_epoch:
            on_epoch(epoch, state["best_score"])
    best = state["best_state"] or {k: v.cpu() for k, v in model.state_dict().items()}
    proba = state.get("best_proba")  # absent from checkpoints of earlier versions
    return FitResult(state["history"], state["best_epoch"], state["best_score"], best, state["stopped"],
                     None if proba is None else np.asarray(proba, dtype=np.float32))  # fmt: skip
