"""``sts predict`` for the LightGBM baseline saved by ``sts.baseline.saved``: EP features of each file
with the saved feature parameters, then the saved booster."""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from sts.baseline.saved import load_model

log = logging.getLogger(__name__)


class LgbmPredictor:
    """``sts predict`` for a saved LightGBM baseline: EP features of each file by
    ``compute_features`` with the saved parameters, then the saved booster."""

    def __init__(self, model_path, threads: int | None = None, selection_overrides: dict | None = None):
        """``selection_overrides`` as for CNNs: ``long_square_names`` and ``any_square_step`` change
        which NWB sweeps count as the ladder (the step itself is found in the stimulus either way);
        ``tolerance_pa`` does not apply (every long square is used)."""
        self.saved = load_model(model_path)
        self.model_path = Path(model_path)
        self.threads = threads
        self.classes = self.saved.classes
        self.scheme = self.saved.scheme
        self.params = self.saved.feature_params
        if self.params.delay_fit == "ipfx":
            log.warning("%s: saved before delay_ratio had a reproducible fit: served with ipfx's, which may differ "
                        "from call to call (retrain for reproducible predictions)", model_path)  # fmt: skip
        self.extra_columns = ("ood_score", "in_distribution")  # empty for a model saved without ood
        if self.saved.ood is None:
            log.warning("%s: saved without out-of-distribution statistics: ood_score and in_distribution stay "
                        "empty", model_path)  # fmt: skip
        overrides = {k: v for k, v in (selection_overrides or {}).items() if v is not None}
        if overrides.get("any_square_step"):
            self.params = replace(self.params, any_square_step=True)
        if "tolerance_pa" in overrides:
            log.info("--tolerance-pa does not apply to the LightGBM baseline (its features use every long square)")
        if overrides.get("long_square_names"):
            self.params = replace(self.params, long_square_names=tuple(overrides["long_square_names"]))
        unknown = set(overrides) - {"any_square_step", "tolerance_pa", "long_square_names"}
        if unknown:
            raise ValueError(f"only --long-square-names may differ from the model's feature parameters, not {unknown}")
        self._figure_note = False  # what the figures cannot draw: logged once

    def prepare(self, path, protocol=None, specimen_id: str | None = None, shared: dict | None = None):
        """EP features of one file in the model's order; never raises for a bad recording. ``shared``
        (a fusion's stages of the file, ``CnnPredictor.prepare``) is not used: ipfx reads the file
        its own way."""
        from sts.baseline.features import compute_features
        from sts.prep.prepared import Prepared, with_protocol_hint

        path = Path(path)
        sid = specimen_id or path.stem
        try:
            result = compute_features(path, self.params, protocol)
        except Exception as err:  # a reader's unexpected failure: that file only
            log.warning("%s: cannot open", path, exc_info=True)
            return Prepared(path, sid, "excluded", f"unreadable file {path}: {type(err).__name__}: {err}",
                            readable=False)  # fmt: skip
        # compute_features records the file's layout once it has read the sweeps; without it the
        # file could not be read at all.
        readable = "layout" in result.info
        if result.status != "ok":
            return Prepared(path, sid, "excluded", with_protocol_hint(result.reason), readable=readable)
        # As features_file writes them: a non-finite value is stored as null and read back as NaN.
        values = [result.features.get(f, math.nan) for f in self.saved.features]
        features = np.array([v if v is not None and math.isfinite(v) else math.nan for v in values])
        rheobase = result.features.get("threshold_i_long_square", math.nan)
        attrs = {"amplitudes_pa": [rheobase, math.nan], "sweep_numbers": [result.info.get("rheobase_sweep"), None]}
        return Prepared(path, sid, "ok", features=features, attrs=attrs, feature_sweeps=result.sweeps)

    def classify(self, prepared) -> tuple[np.ndarray, dict]:
        """Class probabilities (model class order) and the OOD columns of one prepared cell."""
        proba = self.saved.predict_proba(prepared.features[None], self.threads)[0]
        extra = {"ood_score": math.nan, "in_distribution": None}
        if self.saved.ood is not None:
            score = float(self.saved.ood.score(prepared.features[None])[0])
            extra = {"ood_score": score, "in_distribution": bool(score <= self.saved.ood.threshold)}
        return proba, extra

    def figure(self, prepared, proba, path) -> None:
        """The rheobase and hero sweeps, the class probabilities and the cell's features in training
        SDs (``sts.serve.figure``); no scalogram or saliency (said in the figure, logged once)."""
        from sts.serve.figure import Features, feature_sweeps, plot_cell

        notes = ["not drawn: scalograms and saliency (the LightGBM baseline classifies EP features, not scalograms)"]
        features = None
        ood = self.saved.ood
        if ood is None:
            notes.append("not drawn: the features in training SDs (model saved without training statistics)")
        else:
            x = prepared.features[None]
            features = Features(list(self.saved.features), ood.standardise(x)[0], ~np.isfinite(x[0]),
                                f"LightGBM baseline: EP features; OOD score {ood.score(x)[0]:.2f} "
                                f"(threshold {ood.threshold:.2f})")  # fmt: skip
        if not self._figure_note:
            log.warning("--figures with the LightGBM baseline: %s", "; ".join(notes))
            self._figure_note = True
        plot_cell(path, prepared, proba, self.classes, feature_sweeps(prepared), features=features, notes=notes,
                  title="LightGBM baseline")  # fmt: skip
