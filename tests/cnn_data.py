"""Small learnable scalogram cohorts for the deep-learning tests (no CWT, no network), and an
untrained model.pt for the tests of what serves it.

Each class puts its energy in its own frequency band and its own time window, on noise, so a
small CNN can learn it in a few epochs; the files look like the scalogram step's output.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

CLASSES = ["Pvalb", "Sst", "Vip/Lamp5"]
N_FREQS, N_TIMES, FS_HZ = 24, 240, 4000.0


def scalogram(label_index: int, rng: np.random.Generator) -> np.ndarray:
    x = rng.normal(0, 0.2, size=(2, N_FREQS, N_TIMES)).astype(np.float32)
    band = slice(2 + 7 * label_index, 7 + 7 * label_index)
    window = slice(20 + 60 * label_index, 90 + 60 * label_index)
    x[0, band, window] += 3.0 * np.sign(rng.normal(size=(5, 70)))
    x[1, band, :] += 1.5
    return x


def write_cohort(root: Path, per_class: int = 12, seed: int = 0, classes=CLASSES) -> tuple[Path, Path]:
    """Scalogram files and a manifest (split test/train, 3 folds) for ``per_class`` cells per class."""
    rng = np.random.default_rng(seed)
    scal_dir = root / "scalograms"
    scal_dir.mkdir(parents=True, exist_ok=True)
    freqs = np.linspace(20, 200, N_FREQS)
    rows = []
    for c, label in enumerate(classes):
        for i in range(per_class):
            sid = f"cell{c}{i:03d}"
            with h5py.File(scal_dir / f"{sid}.h5", "w") as f:
                f.create_dataset("scalogram", data=scalogram(c, rng))
                f.attrs.update(freqs_hz=freqs, fs_hz=FS_HZ, wavelet="mexh", status="ok")
            split = "test" if i % 4 == 3 else "train"
            rows.append({"specimen_id": sid, "dataset": "seq", "label": label, "status": "ok", "reason": "",
                         "split": split, "fold": i % 3 if split == "train" else -1})  # fmt: skip
    rows.append({"specimen_id": "bad1", "dataset": "seq", "label": classes[0], "status": "excluded",
                 "reason": "no spiking sweep", "split": "", "fold": -1})  # fmt: skip
    manifest = root / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest, scal_dir


def save_untrained_model(path: Path, preparation: dict, classes=("Pvalb", "Sst", "Vip/Lamp5", "Excitatory"),
                         size: int = 32, arch: str = "mobilenet_v2", scalogram_dtype: str | None = "float16") -> Path:
    """model.pt as sts train writes it, with seeded untrained weights; ``scalogram_dtype=None``: as
    saved before it was recorded."""
    import torch

    from sts.cnn.models import build_model
    from sts.cnn.pack import NormParams

    torch.manual_seed(0)
    model = build_model(arch, len(classes), 0.0, size)
    dtype = {"scalogram_dtype": scalogram_dtype} if scalogram_dtype else {}
    torch.save({"state_dict": model.state_dict(), "arch": arch, "classes": list(classes), "input_size": [size, size],
                "normalisation": asdict(NormParams()), "image_dtype": "float16", "dropout": 0.0,
                "train_params": {"weights": "none"}, "preparation": preparation, **dtype}, path)  # fmt: skip
    return path
