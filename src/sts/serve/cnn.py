"""``sts predict`` for a CNN: a saved ``model.pt`` with the preparation that made its training inputs.

Each file is prepared exactly as the training cells were, from the parameters saved in ``model.pt``
and never from the current config (see ``sts.serve.predict``); inference goes through the evaluation
step's own ``predict_proba``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

import sts.cnn  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
from sts.prep.prepared import Prepared, with_protocol_hint
from sts.settings import DEFAULT_DEVICE, saved_scheme

log = logging.getLogger(__name__)

# Which sweeps qualify may follow the lab's protocol; the window, rate and spike threshold that
# shaped the training inputs may not (train/serve parity).
SELECTION_OVERRIDES = ("tolerance_pa", "any_square_step", "long_square_names")
DEFAULT_IMAGE_DTYPE = "float16"  # sts pack's default, for model.pt files without image_dtype
LEGACY_SCALOGRAM_DTYPE = "float32"  # per-cell scalogram files of models saved without scalogram_dtype


class CnnPredictor:
    """A loaded model.pt with the preparation that made its training inputs."""

    extra_columns: tuple[str, ...] = ("ood_score", "in_distribution")  # columns after SWEEP_COLUMNS

    def __init__(self, model_path: str | Path, device: str = DEFAULT_DEVICE, threads: int | None = None,
                 selection_overrides: dict | None = None):
        """``selection_overrides``: sweep settings that only decide which sweeps qualify
        (``tolerance_pa``, ``any_square_step``, ``long_square_names``), never how they are prepared."""
        import torch

        from sts.cnn.final import load_model
        from sts.cnn.model_meta import ModelMetaError, check_serving
        from sts.cnn.train import select_device
        from sts.prep.sweeps import SelectionParams
        from sts.io.untrusted import UntrustedFileError

        if threads:
            torch.set_num_threads(threads)
        self.model_path = Path(model_path)
        self.device = select_device(device)
        from sts.cnn.safe_torch import UnsafeModelError

        try:
            self.model, self.meta = load_model(model_path, self.device)
        except (UnsafeModelError, UntrustedFileError, ModelMetaError):
            raise
        except Exception as err:  # missing, not a torch file, or not ours
            raise ValueError(f"{model_path}: not a model.pt written by sts train: {err}") from err
        # Bounded (sizes a served cell's arrays) before anything is prepared. Unknown keys are an
        # error (they shaped training); numbers cast as the per-cell commands cast them (4000 ->
        # 4000.0), so results are identical.
        self.selection, self.scalogram, self.norm = check_serving(self.meta, model_path)
        overrides = {k: v for k, v in (selection_overrides or {}).items() if v is not None}
        if set(overrides) - set(SELECTION_OVERRIDES):
            raise ValueError(f"only {SELECTION_OVERRIDES} may differ from the model's sweep selection")
        if overrides:
            self.selection = SelectionParams.from_dict({**asdict(self.selection), **overrides})
        self.input_size = tuple(int(v) for v in self.meta["input_size"])
        self.image_dtype = np.dtype(self.meta.get("image_dtype", DEFAULT_IMAGE_DTYPE))
        self.scalogram_dtype = np.dtype(self.meta.get("scalogram_dtype", LEGACY_SCALOGRAM_DTYPE))
        self.classes = [str(c) for c in self.meta["classes"]]
        self.scheme = saved_scheme(self.meta)  # the class scheme (study for older model.pt)
        from sts.cnn.evaluate import read_ood

        self.ood = read_ood(self.meta, model_path, self.model)  # None (logged) for an older model.pt
        axes = self.meta.get("scalogram_axes")
        if axes and not np.allclose(axes["freqs_hz"], self.scalogram.freqs_hz):
            raise ValueError(f"{model_path}: saved frequencies differ from its preparation.scalogram parameters")

    def prepare(self, path: str | Path, protocol=None, specimen_id: str | None = None,
                shared: dict | None = None) -> Prepared:
        """Select the sweeps, compute the scalogram and the network image of one file; never raises
        for a bad recording (excluded, with the reason). ``shared``: one file's stages other models
        already computed (a fusion's members, ``sts.serve.fusion``), by ``stage_keys``; this model
        reuses those of equal key and adds its own, so equal preparations run once."""
        path = Path(path)
        sid = specimen_id or path.stem
        shared = {} if shared is None else shared
        sweeps_key, cwt_key, image_key = self.stage_keys
        if sweeps_key not in shared:
            shared[sweeps_key] = self._select(path, protocol, sid)
        sel = shared[sweeps_key]
        if sel.status != "ok":
            return sel
        if cwt_key not in shared:
            from sts.prep.scalogram_file import scalogram_of

            shared[cwt_key] = scalogram_of(sel.traces_mv, self.selection.fs_hz, self.scalogram)
        scal = shared[cwt_key]
        if image_key not in shared:
            shared[image_key] = self._image(scal)
        image, reason = shared[image_key]
        if image is None:
            return Prepared(path, sid, "excluded", reason, attrs=sel.attrs)
        return Prepared(path, sid, "ok", traces_mv=sel.traces_mv, scalogram=scal, image=image, attrs=sel.attrs)

    @property
    def stage_keys(self) -> tuple:
        """What decides each preparation stage's output: the sweeps (selection), their CWT, the
        network image; two models with equal keys make equal arrays of a file."""
        sweeps = ("sweeps", self.selection)
        cwt = (sweeps, replace(self.scalogram, compression="none"))  # the file's compression keeps the values
        return sweeps, cwt, (cwt, self.scalogram_dtype.str, self.input_size, self.norm, self.image_dtype.str)

    def _select(self, path: Path, protocol, sid: str) -> Prepared:
        """The file's two sweeps (``traces_mv``, ``attrs``), or why it is excluded."""
        from sts.recordings import NwbReadError, open_recording
        from sts.prep.sweeps import select_from_recording

        try:
            rec = open_recording(path, protocol)
        except NwbReadError as err:
            return Prepared(path, sid, "excluded", with_protocol_hint(str(err)), readable=False)
        except Exception as err:  # a reader's unexpected failure: that file only
            log.warning("%s: cannot open", path, exc_info=True)
            return Prepared(path, sid, "excluded", f"unreadable file {path}: {type(err).__name__}: {err}",
                            readable=False)  # fmt: skip
        try:
            with rec:
                sel = select_from_recording(rec, self.selection)
        except Exception as err:  # e.g. a damaged dataset inside an otherwise readable file
            log.warning("%s: sweep selection failed", path, exc_info=True)
            return Prepared(path, sid, "excluded", f"cannot read sweeps of {path}: {type(err).__name__}: {err}")
        if sel.status != "ok":
            return Prepared(path, sid, "excluded", predict_hint(sel.reason))
        return Prepared(path, sid, "ok", traces_mv=sel.traces_mv, attrs=sel.attrs)

    def _image(self, scal: np.ndarray) -> tuple[np.ndarray | None, str]:
        """The network image of a scalogram rounded as the training cells' files held it, or (None, why not)."""
        from sts.cnn.pack import prepare_images
        from sts.prep.scalogram_file import as_stored

        stored, reason = as_stored(scal, self.scalogram_dtype)
        if stored is None:
            return None, reason
        return prepare_images(stored[None], self.input_size, self.norm)[0].numpy().astype(self.image_dtype), ""

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(B, n_classes) softmax of (B, 3, H, W) prepared images, as ``sts evaluate`` computes them."""
        from sts.cnn.train import predict_proba

        return predict_proba(self.model, images, np.arange(len(images)), self.device)

    def classify(self, prepared: Prepared) -> tuple[np.ndarray, dict]:
        """Class probabilities of one prepared cell and its OOD columns (one forward pass)."""
        from sts.cnn.embed import proba_and_embeddings

        proba, emb = proba_and_embeddings(self.model, prepared.image[None], np.arange(1), self.device)
        if self.ood is None:
            return proba[0], {"ood_score": np.nan, "in_distribution": None}
        score = float(self.ood.score(emb)[0])
        return proba[0], {"ood_score": score, "in_distribution": bool(score <= self.ood.threshold)}

    def figure(self, prepared: Prepared, proba: np.ndarray, path: Path) -> None:
        """Traces, scalograms, the saliency of the predicted class, the probabilities (``sts.serve.figure``)."""
        from sts.serve.figure import plot_cell, scalogram_maps, window_sweeps

        fs = self.selection.fs_hz
        target = int(np.argmax(proba))
        maps = [scalogram_maps(prepared, fs, self.scalogram.freqs_hz), self.saliency_row(prepared, target)]
        plot_cell(path, prepared, proba, self.classes, window_sweeps(prepared, fs), maps, title=self.meta["arch"])

    def saliency_row(self, prepared: Prepared, target: int, label: str = ""):
        """The figure's row of this model's saliency of class ``target``, titled ``label`` + "saliency of ..."."""
        from sts.serve.figure import saliency_maps

        return saliency_maps(f"{label}saliency of {self.classes[target]}", self.saliency(prepared, target),
                             self.selection.fs_hz, self.scalogram.freqs_hz)  # fmt: skip

    def saliency(self, prepared: Prepared, target: int, method: str = "gradient") -> np.ndarray:
        """(2, n_freqs, n_times) |attribution| of class ``target`` on the scalogram's axes."""
        from sts.cnn.saliency import attribute, to_scalogram_axes
        from sts.cnn.train import batch_tensor

        x = batch_tensor(prepared.image[None], np.arange(1), self.device).requires_grad_(True)
        maps = attribute(self.model, x, target, method)[0].float().cpu().numpy()
        return to_scalogram_axes(maps, *prepared.scalogram.shape[1:])


def predict_hint(reason: str) -> str:
    """Sweep selection names config keys; here the options of ``sts predict`` say what can change
    (the window cannot: it shaped the model's inputs)."""
    import re

    reason = re.sub(r"sweeps\.tolerance_pa >= ([\d.]+)", r"--tolerance-pa \1", reason)
    reason = reason.replace("add the ladder's name to sweeps.long_square_names or set sweeps.any_square_step",
                            "give the ladder's name with --long-square-names or use --any-square-step")  # fmt: skip
    return re.sub(r"sweeps\.window_s <= ([\d.]+) would fit",
                  r"a model trained with sweeps.window_s <= \1 would fit (sts predict keeps the model's window)",
                  reason)  # fmt: skip
