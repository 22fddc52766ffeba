"""``sts predict`` for a fusion model: every member prepares and classifies the same file, the
saved stacker combines their raw probabilities. CNN members share each file's preparation stages
where their saved parameters agree (``CnnPredictor.stage_keys``): members trained with the same
sweeps and CWT read and transform the file once, and one that differs only in input size redoes
only its image; the arrays, hence the probabilities, are those each member makes alone.

A file excluded by any member is excluded, with that member's name and reason (the first
member, in the model's order, that excludes it). The row's sweep columns are the first CNN
member's (the LightGBM member fills only rheobase); extra columns: ``predicted_<member>`` per
member, ``ood_score_<member>`` and ``in_distribution_<member>`` per member with an
out-of-distribution detector (each in its own space: the scores do not combine), and
``in_distribution``: False when any member flags the file, True when every member that has a
verdict says in distribution, empty when none has one.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from sts.settings import DEFAULT_DEVICE

log = logging.getLogger(__name__)


class FusionPredictor:
    """``load_member(path, device, threads, selection_overrides, calibrate=False)`` loads each
    member's predictor (``sts.serve.predict.load_predictor``)."""

    def __init__(self, model_path, load_member, device: str = DEFAULT_DEVICE, threads: int | None = None,
                 selection_overrides: dict | None = None):  # fmt: skip
        from sts.fusion.model import load_fusion

        self.saved = load_fusion(model_path)
        self.model_path = Path(model_path)
        self.classes = self.saved.classes
        self.floor = self.saved.floor
        # Raw members: the stacker was fitted on their uncalibrated probabilities.
        self.members = {}
        for m in self.saved.members:
            predictor = load_member(m["path"], device, threads, selection_overrides, calibrate=False)
            if [str(c) for c in predictor.classes] != self.classes:
                raise ValueError(f"{model_path}: member {m['name']} has classes {predictor.classes}, "
                                 f"the fusion {self.classes}")  # fmt: skip
            self.members[m["name"]] = predictor
        keys = [p.stage_keys for p in self.members.values() if hasattr(p, "stage_keys")]  # the CNN members'
        if keys:
            log.info("%s: %d CNN members prepare each file with %s distinct sweep selections, CWTs and images",
                     model_path, len(keys), "/".join(str(len(set(k))) for k in zip(*keys)))  # fmt: skip
        self.scheme = next(iter(self.members.values())).scheme  # the members' (same classes, same scheme)
        self.sweep_member = next((n for m, n in zip(self.saved.members, self.members) if m["kind"] == "cnn"),
                                 next(iter(self.members)))  # fmt: skip
        self.ood_members = [n for n, p in self.members.items() if "ood_score" in p.extra_columns]
        self.extra_columns = (*(f"predicted_{n}" for n in self.members),
                              *(f"{c}_{n}" for n in self.ood_members for c in ("ood_score", "in_distribution")),
                              *(("in_distribution",) if self.ood_members else ()))  # fmt: skip
        self._figure_note = False  # what the figures cannot draw: logged once

    def prepare(self, path, protocol=None, specimen_id: str | None = None):
        """Every member's preparation of the file; excluded as soon as one member excludes it.
        Members share the stages their preparations have in common (``shared``, see
        ``CnnPredictor.prepare``): a file is read, selected and transformed once per distinct
        preparation, and members of equal preparation get the same arrays."""
        from sts.prep.prepared import Prepared

        path = Path(path)
        sid = specimen_id or path.stem
        prepared, shared = {}, {}
        for name, member in self.members.items():
            p = member.prepare(path, protocol, sid, shared)
            if p.status != "ok":
                return Prepared(path, sid, "excluded", f"{name}: {p.reason}", readable=p.readable, attrs=p.attrs)
            prepared[name] = p
        return Prepared(path, sid, "ok", attrs=prepared[self.sweep_member].attrs, members=prepared)

    def member_probabilities(self, prepared) -> tuple[dict, dict]:
        """Each member's raw probabilities and extra columns of one prepared file."""
        out, extras = {}, {}
        for name, member in self.members.items():
            out[name], extras[name] = member.classify(prepared.members[name])
        return out, extras

    def classify(self, prepared) -> tuple[np.ndarray, dict]:
        from sts.fusion.stack import features, stacker_proba

        probas, extras = self.member_probabilities(prepared)
        x = features([probas[n][None] for n in self.members], self.floor)
        proba = stacker_proba(self.saved.stacker, x, self.classes)[0]
        extra = {f"predicted_{n}": self.classes[int(np.argmax(p))] for n, p in probas.items()}
        verdicts = []
        for n in self.ood_members:
            verdict = extras[n].get("in_distribution")
            extra.update({f"ood_score_{n}": extras[n].get("ood_score"), f"in_distribution_{n}": verdict})
            if verdict is not None:
                verdicts.append(bool(verdict))
        if self.ood_members:  # a file unlike any member's training cells is out of distribution
            extra["in_distribution"] = all(verdicts) if verdicts else None
        return proba, extra

    def figure(self, prepared, proba, path) -> None:
        """The sweeps and |CWT| as the first CNN member prepares them, each CNN member's saliency of
        the fused prediction, the fused probabilities with each member's vote (``sts.serve.figure``)."""
        from sts.serve.figure import plot_cell, scalogram_maps, window_sweeps

        target = int(np.argmax(proba))
        votes, _ = self.member_probabilities(prepared)
        cnns = [m["name"] for m in self.saved.members if m["kind"] == "cnn"]
        others = [n for n in self.members if n not in cnns]
        sweeps, maps, notes = [], [], []
        if cnns:
            first, mine = self.members[cnns[0]], prepared.members[cnns[0]]
            sweeps = window_sweeps(mine, first.selection.fs_hz)
            maps = [scalogram_maps(mine, first.selection.fs_hz, first.scalogram.freqs_hz)]
            maps += [self.members[n].saliency_row(prepared.members[n], target, f"{n}: ") for n in cnns]
            if any(self.members[n].stage_keys[1] != first.stage_keys[1] for n in cnns):
                notes.append(f"sweeps and |CWT| as {cnns[0]} prepares them (members' preparations differ)")
            if others:
                notes.append(f"no saliency of {', '.join(others)} (EP features)")
        else:
            notes.append("not drawn: sweeps, scalograms and saliency (no CNN member)")
        if notes and not self._figure_note:
            log.warning("--figures with the fusion: %s", "; ".join(notes))
            self._figure_note = True
        plot_cell(path, prepared, proba, self.classes, sweeps, maps, votes=votes, notes=notes, title="fusion")
