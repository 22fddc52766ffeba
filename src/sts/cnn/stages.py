"""The deep-learning stages, one entry function each, from files to files.

The workflow's scripts (``workflow/scripts/cnn_*.py``) map a rule's input, output, params and
threads onto these functions, and ``sts pack | tune | train | evaluate | explain`` (``sts.cnn.cli``)
map their arguments onto the same ones: a stage cannot be assembled two ways.
"""

from __future__ import annotations

import json
from pathlib import Path

from sts.settings import DEFAULT_DEVICE, NormParams, PackSettings, SaliencySettings, TuneSettings, default


def pack_stage(manifest_csv, scalogram_dir, out_path, size: int, norm: dict, classes: list[str] | None = None,
               dtype: str = default(PackSettings, "dtype")) -> int:  # fmt: skip
    """Rule ``cnn_pack``, ``sts pack``: the manifest's usable cells as one image array; returns their number.
    ``norm``: ``NormParams`` fields (absent: its defaults); ``classes`` None: the sorted labels."""
    from sts.cnn.pack import pack

    return pack(manifest_csv, scalogram_dir, out_path, size, NormParams.from_dict(norm), classes=classes, dtype=dtype)


def _tune_settings(settings: TuneSettings | dict) -> TuneSettings:
    return settings if isinstance(settings, TuneSettings) else TuneSettings(**settings)


def tune_stage(packed_path, out_dir, settings: TuneSettings | dict, worker: int = 0, per_gpu: int = 1,
               storage: str | None = None, threads: int | None = None) -> dict:  # fmt: skip
    """Rule ``cnn_tune``, ``sts tune --worker K``: one job of the architecture's shared search
    (``sts.cnn.tune.tune_job``); writes ``OUT_DIR/worker_{worker}.done``. ``settings`` may be the
    TuneSettings fields as a dict (the rule's params)."""
    from sts.cnn.tune import tune_job

    return tune_job(packed_path, out_dir, _tune_settings(settings), worker, per_gpu, storage, threads)


def tune_gather_stage(packed_path, out_dir, settings: TuneSettings | dict, storage: str | None = None,
                      reports: list | None = None) -> dict:  # fmt: skip
    """Rule ``cnn_tune_gather``, ``sts tune --gather``: the search's outputs once its workers are
    done (``reports``: their .done files; None: every one in OUT_DIR); returns best_params."""
    from sts.cnn.pack import load_packed
    from sts.cnn.tune import tune_gather

    return tune_gather(load_packed(packed_path), out_dir, _tune_settings(settings), storage, reports=reports)


def train_stage(packed_path, best_params_path, out_dir, arch: str, seed: int = default(TuneSettings, "seed"),
                weights: str = default(TuneSettings, "weights"), weights_path: str | None = None,
                device: str = DEFAULT_DEVICE, recalibrate_bn: bool = default(TuneSettings, "recalibrate_bn"),
                preparation: dict | None = None, threads: int | None = None,
                scheme: str = "study", ood_folds_path=None) -> Path:  # fmt: skip
    """Rule ``cnn_train``, ``sts train``: the final fit of ``arch`` with its tuned parameters
    (best_params.json of ``arch``'s search, checked by ``train_final``); returns model.pt's path.
    ``scheme``: the class scheme of the labels, stored in model.pt; ``ood_folds_path``: the
    search's ood_folds.npz, the OOD threshold's source."""
    from sts.cnn.final import train_final
    from sts.cnn.pack import load_packed

    best = json.loads(Path(best_params_path).read_text())
    return train_final(load_packed(packed_path), arch, best, out_dir, seed=seed, weights=weights,
                       weights_path=weights_path, device=device, preparation=preparation, threads=threads,
                       recalibrate_bn=recalibrate_bn, scheme=scheme, ood_folds=ood_folds_path)  # fmt: skip


def evaluate_stage(model_path, packed_path, out_dir, device: str = DEFAULT_DEVICE, threads: int | None = None) -> dict:
    """Rule ``cnn_evaluate``, ``sts evaluate``: holdout metrics of a model.pt; returns them."""
    from sts.cnn.evaluate import evaluate_model
    from sts.cnn.pack import load_packed

    return evaluate_model(model_path, load_packed(packed_path), out_dir, device=device, threads=threads)


def explain_stage(model_path, packed_path, out_dir, method: str = default(SaliencySettings, "method"),
                  ig_steps: int = default(SaliencySettings, "ig_steps"), device: str = DEFAULT_DEVICE,
                  threads: int | None = None) -> Path:  # fmt: skip
    """Rule ``cnn_explain``, ``sts explain``: per-class saliency maps of a model.pt; returns saliency.h5's path."""
    from sts.cnn.pack import load_packed
    from sts.cnn.saliency import explain

    return explain(model_path, load_packed(packed_path), out_dir, method=method, device=device, ig_steps=ig_steps,
                   threads=threads)  # fmt: skip
