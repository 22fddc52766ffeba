"""Pack every usable cell's scalogram into one contiguous (N, 3, H, W) array.

Channels: rheobase, rheobase + 40 pA, rheobase again (the study's RGB layout). Each image is
resized (bilinear, anti-aliased) from (n_freqs, n_times) to (H, W) and normalised as
``NormParams`` says: magnitude, optional log1p, per-image scaling to [0, 1], ImageNet
mean/std. Row 0 of an image is the lowest frequency.

The packed HDF5 file holds ``images`` (contiguous, float16 or float32, so training can
memory-map it without copies), ``specimen_id``, ``label``, ``split``, ``fold`` and
attributes ``classes``, ``input_size``, ``norm`` (JSON), ``freqs_hz``, ``fs_hz``,
``n_times``, ``scalogram_dtype`` (the per-cell files' storage type: float16, or float32 for
files written before it; ``sts predict`` rounds its scalograms to it). Training reads batches
from it, never from per-cell files.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from sts.io.atomic import atomic_h5
from sts.settings import NormParams, PackSettings, default

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHANNELS = (0, 1, 0)  # scalogram channel behind each image channel


def prepare_images(scalograms, size: tuple[int, int], norm: NormParams):
    """(B, 2, n_freqs, n_times) scalograms -> (B, 3, H, W) float32 torch tensor."""
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(np.asarray(scalograms, dtype=np.float32))
    if norm.magnitude:
        x = x.abs()
    if norm.log:
        x = torch.log1p(x.clamp_min(0) if norm.magnitude else x.abs())
    x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    x = x[:, list(CHANNELS)]
    if norm.scaling != "none":
        dims = (1, 2, 3) if norm.scaling == "image" else (2, 3)
        lo, hi = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
        x = (x - lo) / (hi - lo).clamp_min(1e-12)
    if norm.imagenet:
        x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return x.contiguous()


def read_scalogram(path: str | Path) -> tuple[np.ndarray, dict]:
    """One cell's scalogram (2, n_freqs, n_times) as stored (float16, or float32 in older files)
    and its axes (freqs_hz, fs_hz)."""
    with h5py.File(path, "r") as f:
        if "scalogram" not in f:
            raise ValueError(f"{path}: no 'scalogram' dataset (cell excluded upstream?)")
        return f["scalogram"][()], {"freqs_hz": f.attrs["freqs_hz"][()], "fs_hz": float(f.attrs["fs_hz"])}


def usable_cells(manifest_csv: str | Path) -> pd.DataFrame:
    """Manifest rows with status ok, in manifest order."""
    m = pd.read_csv(manifest_csv, dtype={"specimen_id": str}, keep_default_na=False)
    return m[m["status"] == "ok"].reset_index(drop=True)


def pack(
    manifest_csv: str | Path,
    scalogram_dir: str | Path,
    out_path: str | Path,
    size: int | tuple[int, int],
    norm: NormParams = NormParams(),
    classes: list[str] | None = None,
    dtype: str = default(PackSettings, "dtype"),
) -> int:
    """Write the packed file for one input size; return the number of cells."""
    from tqdm import tqdm

    size = (size, size) if isinstance(size, int) else tuple(size)
    cells = usable_cells(manifest_csv)
    classes = list(classes) if classes else sorted(cells["label"].unique())
    unknown = sorted(set(cells["label"]) - set(classes))
    if unknown:
        raise ValueError(f"{manifest_csv}: labels {unknown} are not among classes {classes}")
    empty = [c for c in classes if not (cells["label"] == c).any()]
    if empty:
        raise ValueError(f"{manifest_csv}: no usable cell of class(es) {empty}")
    if cells.empty:
        raise ValueError(f"{manifest_csv}: no usable cells")
    axes = None
    with atomic_h5(out_path) as f:
        images = f.create_dataset("images", shape=(len(cells), 3, *size), dtype=dtype)  # contiguous
        for i, sid in enumerate(tqdm(cells["specimen_id"], desc=f"pack {size[0]}x{size[1]}", mininterval=5)):
            path = Path(scalogram_dir) / f"{sid}.h5"
            try:
                scal, cell_axes = read_scalogram(path)
            except (OSError, KeyError, ValueError) as err:
                raise ValueError(f"cell {sid}: cannot read scalogram {path}: {err}") from err
            if axes is None:
                axes = {**cell_axes, "n_times": scal.shape[-1], "dtype": scal.dtype.name}
            elif scal.shape[1:] != (len(axes["freqs_hz"]), axes["n_times"]):
                raise ValueError(f"cell {sid}: scalogram shape {scal.shape} differs from the first cell's")
            elif scal.dtype.name != axes["dtype"]:  # served cells are rounded to one type
                raise ValueError(f"cell {sid}: scalogram stored as {scal.dtype.name}, the first cell's as "
                                 f"{axes['dtype']}: re-run the scalogram step for all cells")  # fmt: skip
            images[i] = prepare_images(scal[None], size, norm)[0].numpy().astype(dtype)
        str_dt = h5py.string_dtype()
        for col in ("specimen_id", "label", "split"):
            f.create_dataset(col, data=cells[col].astype(str).to_numpy(dtype=object), dtype=str_dt)
        f.create_dataset("fold", data=pd.to_numeric(cells["fold"], errors="coerce").fillna(-1).astype(int).to_numpy())
        f.attrs.update(classes=json.dumps(classes), input_size=list(size), norm=norm.to_json(),
                       freqs_hz=axes["freqs_hz"], fs_hz=axes["fs_hz"], n_times=axes["n_times"],
                       scalogram_dtype=axes["dtype"])  # fmt: skip
    log.info("packed %d cells at %dx%d into %s", len(cells), *size, out_path)
    return len(cells)


@dataclass
class Packed:
    """A packed file opened for training: ``images`` is a read-only memory map."""

    images: np.ndarray  # (N, 3, H, W)
    specimen_id: np.ndarray
    label: np.ndarray
    split: np.ndarray
    fold: np.ndarray
    classes: list[str]
    input_size: tuple[int, int]
    norm: NormParams
    freqs_hz: np.ndarray
    fs_hz: float
    n_times: int
    scalogram_dtype: str = "float32"  # storage type of the per-cell scalograms it was packed from

    @property
    def y(self) -> np.ndarray:
        """Class indices in ``classes`` order."""
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[v] for v in self.label], dtype=np.int64)

    def indices(self, split: str, fold: int | None = None, exclude_fold: bool = False) -> np.ndarray:
        mask = self.split == split
        if fold is not None:
            mask &= (self.fold != fold) if exclude_fold else (self.fold == fold)
        return np.flatnonzero(mask)


def load_packed(path: str | Path) -> Packed:
    """Open a packed file; the image array is memory-mapped (no copy)."""
    with h5py.File(path, "r") as f:
        ds = f["images"]
        offset = ds.id.get_offset()
        if offset is None:
            raise ValueError(f"{path}: 'images' is not contiguous, cannot memory-map it")
        images = np.memmap(path, dtype=ds.dtype, mode="r", offset=offset, shape=ds.shape)
        read = lambda name: f[name].asstr()[()] if f[name].dtype.kind == "O" else f[name][()]  # noqa: E731
        return Packed(
            images=images, specimen_id=read("specimen_id"), label=read("label"), split=read("split"),
            fold=f["fold"][()], classes=json.loads(f.attrs["classes"]),
            input_size=tuple(int(v) for v in f.attrs["input_size"]), norm=NormParams(**json.loads(f.attrs["norm"])),
            freqs_hz=f.attrs["freqs_hz"][()], fs_hz=float(f.attrs["fs_hz"]), n_times=int(f.attrs["n_times"]),
            scalogram_dtype=str(f.attrs.get("scalogram_dtype", "float32")),  # packed before it was recorded
        )  # fmt: skip
