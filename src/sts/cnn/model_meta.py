"""A model.pt's metadata checked against bounds before anything is built from it.

A model.pt sent by someone else decides how large the network and every served cell's arrays
are: ``fs_hz`` 5e8 or ``n_freqs`` 5e6 would allocate gigabytes per cell, 3 M classes a huge
head, a missing or bogus key would end ``sts predict`` in a traceback. ``check_network``
(``sts.cnn.final.load_model``: architecture, classes, dropout, input size, finite weights) and
``check_serving`` (``sts predict``: normalisation, storage types, the saved preparation, the
frequency axis) raise ModelMetaError (a ValueError) with one line naming the first bad key. Bounds are the config
schema's (``workflow/schemas/config.schema.yaml``) where it has them; the others bound the
memory of one served cell (``MAX_SCALOGRAM_CELLS``) and the class count.
"""

from __future__ import annotations

import math
from dataclasses import asdict

from sts.settings import DTYPES, SCALINGS, NormParams, ScalogramParams, SelectionParams

MAX_CLASSES = 1000
MAX_INPUT_SIZE = 1024  # schema: cnn.input_size maximum
MAX_DROPOUT = 1.0  # schema: dropout exclusiveMaximum
MAX_WINDOW_S = 10.0  # schema: sweeps.window_s maximum
MAX_N_FREQS = 1000  # schema: scalogram.n_freqs maximum
MAX_FS_HZ = 50_000.0  # schema: sweeps.fs_hz maximum (the resampled rate)
# Wavelets of the schema's scalogram.wavelet enum: support (pywt lower..upper bound), centre frequency.
WAVELETS = {"mexh": (16.0, 0.25), "morl": (16.0, 0.8125), **{f"gaus{k}": (10.0, None) for k in range(1, 9)}}
# n_freqs x (window samples + longest kernel): the CWT's filter bank and output for one cell
# (float64: 160 MB at the bound; the default grid, 180 x 5,600, is 1 M).
MAX_SCALOGRAM_CELLS = 20_000_000
STORAGE_DTYPES = ("float16", "float32")


class ModelMetaError(ValueError):
    """model.pt metadata outside what sts train writes (a key missing, a value out of bounds)."""


def _number(value, where: str, low: float, high: float, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ModelMetaError(f"{where}: {value!r} is not a finite number")
    if value > high or value < low or (low_open and value == low):
        raise ModelMetaError(f"{where}: {value!r} outside {'(' if low_open else '['}{low:g}, {high:g}]")
    return float(value)


def _finite(tensor) -> bool:
    import numpy as np
    import torch

    try:  # numpy's pass is ~30x faster than torch's on a loaded state dict (16 ms for inception_v3)
        return bool(np.isfinite(tensor.detach().cpu().numpy()).all())
    except TypeError:  # bfloat16 and other types numpy lacks
        return bool(torch.isfinite(tensor).all())


def check_network(meta, where) -> None:
    """The keys that build the network (``model_from_meta``) and its weights; ModelMetaError if not."""
    import torch

    from sts.settings import ARCHITECTURES, MIN_SIZE

    if not isinstance(meta, dict):
        raise ModelMetaError(f"{where}: not a model.pt written by sts train (no metadata dict)")
    missing = [k for k in ("arch", "classes", "dropout", "input_size", "state_dict") if k not in meta]
    if missing:
        raise ModelMetaError(f"{where}: not a model.pt written by sts train: no {', '.join(missing)}")
    arch = meta["arch"]
    if arch not in ARCHITECTURES:
        raise ModelMetaError(f"{where}: arch {str(arch)[:40]!r} is not one of {ARCHITECTURES}")
    classes = meta["classes"]
    if (not isinstance(classes, list) or not 2 <= len(classes) <= MAX_CLASSES
            or not all(isinstance(c, str) and 0 < len(c) <= 200 for c in classes) or len(set(classes)) != len(classes)):
        raise ModelMetaError(f"{where}: classes must be 2..{MAX_CLASSES} distinct names")  # fmt: skip
    _number(meta["dropout"], f"{where}: dropout", 0.0, MAX_DROPOUT)
    if meta["dropout"] == MAX_DROPOUT:
        raise ModelMetaError(f"{where}: dropout must be below 1")
    size = meta["input_size"]
    if (not isinstance(size, list) or len(size) != 2 or size[0] != size[1]
            or not all(type(v) is int and MIN_SIZE[arch] <= v <= MAX_INPUT_SIZE for v in size)):
        raise ModelMetaError(f"{where}: input_size {str(size)[:40]} is not [n, n] with {MIN_SIZE[arch]} <= n <= "
                         f"{MAX_INPUT_SIZE} ({arch})")  # fmt: skip
    if "train_params" in meta and not isinstance(meta["train_params"], dict):
        raise ModelMetaError(f"{where}: train_params is not a dict")
    state = meta["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise ModelMetaError(f"{where}: state_dict is not a dict of named tensors")
    for name, tensor in state.items():
        if tensor.is_floating_point() and not _finite(tensor):
            raise ModelMetaError(f"{where}: weights {name} hold NaN or infinite values: refused")


def check_serving(meta, where) -> tuple[SelectionParams, ScalogramParams, NormParams]:
    """The keys ``sts predict`` prepares each file with: (selection, scalogram, normalisation);
    ModelMetaError naming the first bad key."""
    norm = meta.get("normalisation")
    fields = set(asdict(NormParams()))
    if not isinstance(norm, dict) or set(norm) != fields:
        raise ModelMetaError(f"{where}: normalisation must have exactly the keys {sorted(fields)}")
    if not all(type(norm[k]) is bool for k in ("magnitude", "log", "imagenet")) or norm["scaling"] not in SCALINGS:
        raise ModelMetaError(f"{where}: normalisation: magnitude/log/imagenet must be true or false, scaling one of "
                         f"{SCALINGS}")  # fmt: skip
    for key, allowed in (("image_dtype", DTYPES), ("scalogram_dtype", STORAGE_DTYPES)):
        if key in meta and meta[key] not in allowed:
            raise ModelMetaError(f"{where}: {key} {str(meta[key])[:40]!r} is not one of {allowed}")
    prep = meta.get("preparation")
    if not isinstance(prep, dict) or not all(isinstance(prep.get(k), dict) and prep[k] for k in ("sweeps",
                                                                                                 "scalogram")):
        raise ModelMetaError(f"{where}: no preparation.sweeps/scalogram parameters saved with the model "
                         "(train it with --preparation, as the workflow does)")  # fmt: skip
    sw, sc = prep["sweeps"], prep["scalogram"]
    for key in ("window_s", "fs_hz"):
        if key not in sw:
            raise ModelMetaError(f"{where}: preparation.sweeps has no {key}")
    for key in ("wavelet", "fmin_hz", "fmax_hz", "n_freqs"):
        if key not in sc:
            raise ModelMetaError(f"{where}: preparation.scalogram has no {key}")
    window_s = _number(sw["window_s"], f"{where}: preparation.sweeps.window_s", 0.0, MAX_WINDOW_S, low_open=True)
    fs_hz = _number(sw["fs_hz"], f"{where}: preparation.sweeps.fs_hz", 0.0, MAX_FS_HZ, low_open=True)
    for key in ("plus_pa", "tolerance_pa", "dvdt_cutoff_mv_ms", "margin_s", "min_step_s"):
        if key in sw:
            _number(sw[key], f"{where}: preparation.sweeps.{key}", 0.0, 1e6)
    if sc["wavelet"] not in WAVELETS:
        raise ModelMetaError(f"{where}: preparation.scalogram.wavelet {str(sc['wavelet'])[:40]!r} is not one of "
                         f"{sorted(WAVELETS)}")  # fmt: skip
    n_freqs = _number(sc["n_freqs"], f"{where}: preparation.scalogram.n_freqs", 2, MAX_N_FREQS)
    if n_freqs != int(n_freqs):
        raise ModelMetaError(f"{where}: preparation.scalogram.n_freqs {n_freqs!r} is not a whole number")
    fmin = _number(sc["fmin_hz"], f"{where}: preparation.scalogram.fmin_hz", 0.0, fs_hz / 2, low_open=True)
    fmax = _number(sc["fmax_hz"], f"{where}: preparation.scalogram.fmax_hz", 0.0, fs_hz / 2, low_open=True)
    if not fmin < fmax < fs_hz / 2:
        raise ModelMetaError(f"{where}: preparation.scalogram needs fmin_hz < fmax_hz < fs_hz / 2 (Nyquist): "
                         f"{fmin:g}, {fmax:g}, {fs_hz / 2:g}")  # fmt: skip
    support, centre = WAVELETS[sc["wavelet"]]
    if centre is None:
        import pywt

        centre = float(pywt.central_frequency(sc["wavelet"]))
    kernel = support * centre * fs_hz / fmin  # samples of the widest (lowest-frequency) kernel
    cells = n_freqs * (window_s * fs_hz + kernel)
    if cells > MAX_SCALOGRAM_CELLS:
        raise ModelMetaError(f"{where}: preparation: {n_freqs:g} frequencies x ({window_s:g} s x {fs_hz:g} Hz + a "
                         f"{kernel:.0f}-sample kernel at {fmin:g} Hz) = {cells:.3g} values per channel and cell, "
                         f"more than {MAX_SCALOGRAM_CELLS:.0e}")  # fmt: skip
    try:
        selection = SelectionParams.from_dict(sw, "preparation.sweeps")
        scalogram = ScalogramParams.from_dict(sc, "preparation.scalogram")
        norm_params = NormParams(**norm)
    except (TypeError, ValueError) as err:
        raise ModelMetaError(f"{where}: {err}") from None
    axes = meta.get("scalogram_axes")
    if axes is not None:
        freqs = axes.get("freqs_hz") if isinstance(axes, dict) else None
        if (not isinstance(freqs, list) or len(freqs) != scalogram.n_freqs
                or not all(isinstance(f, (int, float)) and not isinstance(f, bool) for f in freqs)):
            raise ModelMetaError(f"{where}: scalogram_axes.freqs_hz is not a list of {scalogram.n_freqs} "
                                 "numbers")  # fmt: skip
    return selection, scalogram, norm_params
