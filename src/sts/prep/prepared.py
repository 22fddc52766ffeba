"""One recording on its way to a served model (``sts predict``): what every kind of served model
(CNN, LightGBM baseline, fusion) makes of a file before classifying it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sts.io.text import clean_text


@dataclass
class Prepared:
    """One recording prepared for a model: its traces, scalogram and image (CNN), EP features
    (LightGBM) or each member's preparation (fusion), or the reason it was excluded."""

    path: Path
    specimen_id: str
    status: str  # 'ok' or 'excluded'
    reason: str = ""
    readable: bool = True  # the file opened (an excluded cell may still be readable)
    traces_mv: np.ndarray | None = None  # (2, n_times)
    scalogram: np.ndarray | None = None  # (2, n_freqs, n_times) float32 (before the storage rounding)
    image: np.ndarray | None = None  # (3, H, W) in the packed storage type
    attrs: dict = field(default_factory=dict)
    features: np.ndarray | None = None  # (n_features,) EP features (LightGBM baseline)
    feature_sweeps: dict | None = None  # LightGBM: "rheobase"/"hero" -> (sweep, pA, t_s, v_mv) its features read
    members: dict | None = None  # member name -> its Prepared (fusion)

    def __post_init__(self):
        # Every served model's exclusions pass here: readers' and exceptions' text on one line, cut.
        self.reason = clean_text(self.reason) if self.reason else ""

def with_protocol_hint(reason: str) -> str:
    """An ABF file without its ladder: name the options that give one (sts predict has no CSV row)."""
    from sts.recordings.abf import NO_PROTOCOL

    if NO_PROTOCOL in reason:
        reason += ("; give the file's ladder in a --table CSV (first_amplitude_pa, step_pa, onset_s, "
                   "duration_s) or with --first-amplitude-pa/--step-pa/--onset-s/--duration-s")  # fmt: skip
    return reason
