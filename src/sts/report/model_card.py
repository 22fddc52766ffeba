"""Model cards: one report section per served model, as markdown and as a standalone HTML page.

A card says what the model was trained on (cohort, datasets, usable cells per class in the
training and holdout splits, excluded cells by reason, from the manifest), how its inputs
were prepared (the parameters saved with the model), its holdout scores with their bootstrap
intervals and confusion matrix (its ``metrics.json``), whether its probabilities are
calibrated (a ``calibration.json`` beside the model, else "not calibrated"), its
out-of-distribution flag (detector, threshold, and the share of holdout cells it flags), and
the limits we know.

A model type joins by building a ``CardInputs`` (``cnn_card`` and ``lgbm_card`` here; a fusion
model gives its own ``preparation``, ``details`` and ``limits``) and calling ``write_card``.
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sts.settings import saved_scheme

GENERAL_LIMITS = [
    "Holdout scores describe cells like the training cohort's (same labs, protocols, rigs and labelling); they are "
    "not evidence about recordings made elsewhere.",
    "The bootstrap intervals cover which cells happened to be held out, not training variability (another seed or "
    "training set); a class with few holdout cells looks more certain than it is.",
    "CV scores and out-of-fold predictions (used to tune, and to calibrate or fuse models where that is done) come "
    "from fold models trained on part of the training cells, not from the served final fit.",
    "The out-of-distribution flag says a recording is unlike the training cells in the model's own input space; "
    "an in-distribution flag does not make a prediction right, and about 1 - quantile of typical cells are "
    "flagged by design.",
]
SYNTHETIC_LIMIT = (
    "Trained and scored on the synthetic demo cohort: its scores say the pipeline runs end to end, nothing about "
    "real cells (the study's published figures come from 5,590 real cells)."
)
NOT_CALIBRATED = (
    "Not calibrated: the probabilities are the model's raw outputs (softmax / booster), not checked against "
    "observed frequencies; read them as scores, not as chances."
)


@dataclass
class CardInputs:
    """What one card shows. ``preparation``: section -> {parameter: value}; ``ood``: the detector's
    summary (method, space, k, quantile, threshold, n_train; threshold_source and n_threshold
    where it is not the training cells' leave-one-out quantile); ``ood_holdout``: a CSV with an
    ``in_distribution`` column per holdout cell; ``details``: other facts about the model."""

    model: str
    family: str
    model_file: str
    manifest: str | Path
    metrics: str | Path
    confusion_png: str | Path | None = None
    cohort: str = ""
    preparation: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    ood: dict | None = None
    ood_holdout: str | Path | None = None
    calibration: str | Path | None = None
    limits: list[str] = field(default_factory=list)


# --- facts ---------------------------------------------------------------------------------
def training_data(manifest_csv: str | Path, classes=()) -> dict:
    """Usable cells per class (``classes`` first, in their order) and split, per dataset, and
    excluded cells by reason (numbers in a reason replaced by N, so one cause is one row)."""
    m = pd.read_csv(manifest_csv, dtype={"specimen_id": str, "label": str, "reason": str}, keep_default_na=False)
    ok = m[m["status"] == "ok"]
    per_class = pd.crosstab(ok["label"], ok["split"]).reindex(columns=["train", "test"], fill_value=0)
    order = [c for c in classes if c in per_class.index] + [c for c in per_class.index if c not in classes]
    per_class = per_class.reindex(order).rename(columns={"test": "holdout"})
    per_class.loc["total"] = per_class.sum()
    reasons = m.loc[m["status"] != "ok", "reason"].map(_reason_kind).value_counts()
    return {
        "n_cells": len(m), "n_usable": len(ok), "n_excluded": int((m["status"] != "ok").sum()),
        "per_class": per_class.astype(int), "datasets": ok["dataset"].value_counts().sort_index().to_dict(),
        "excluded": reasons.rename_axis("reason").reset_index(name="cells"),
    }  # fmt: skip


def _reason_kind(reason: str) -> str:
    from sts.io.text import clean_text  # manifests of older runs: escape codes and all

    return re.sub(r"-?\d+(\.\d+)?", "N", clean_text(str(reason).split("\n")[0], 200)) or "(no reason given)"


def holdout_flagged(ood_csv: str | Path) -> tuple[int, int] | None:
    """(cells flagged out of distribution, cells scored) of a holdout table, or None without scores."""
    t = pd.read_csv(ood_csv, keep_default_na=False)
    scored = t[t["in_distribution"].astype(str).isin(["True", "False"])]
    if scored.empty:
        return None
    return int((scored["in_distribution"].astype(str) == "False").sum()), len(scored)


CALIBRATION_SKIP = {"format", "format_version", "model_sha256", "classes", "reliability"}  # the figure has the bins


def read_calibration(path: str | Path | None) -> dict | None:
    """A calibration.json's scalar entries (nested ones flattened with dots; ``CALIBRATION_SKIP``
    left out), or None when absent."""
    if path is None or not Path(path).is_file():
        return None
    flat: dict = {}

    def walk(obj, prefix=""):
        for k, v in obj.items():
            if not prefix and k in CALIBRATION_SKIP:
                continue
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            elif isinstance(v, (str, int, float, bool)) or v is None:
                flat[f"{prefix}{k}"] = v
            elif isinstance(v, list) and len(v) <= 20 and all(isinstance(x, (int, float, str)) for x in v):
                flat[f"{prefix}{k}"] = v

    walk(json.loads(Path(path).read_text()))
    return flat


# --- model types ----------------------------------------------------------------------------
def cnn_card(arch: str, model_pt: str | Path, **kwargs) -> CardInputs:
    """A CNN's card from its model.pt (read without unpickling code) and the shared inputs."""
    from sts.cnn.safe_torch import safe_load

    meta = safe_load(model_pt)
    prep = meta.get("preparation") or {}
    tp = dict(meta.get("train_params") or {})
    ood = meta.get("ood")
    details = {"architecture": arch, "class scheme": saved_scheme(meta), "classes": ", ".join(meta["classes"]),
               "weights": tp.pop("weights", ""),
               "epochs": tp.pop("epochs", ""), "seed": tp.pop("seed", ""),
               "CV balanced accuracy (best trial)": meta.get("cv_balanced_accuracy"),
               "tuned parameters": ", ".join(f"{k}={v}" for k, v in tp.items())}  # fmt: skip
    preparation = {"sweep selection (sweeps:)": prep.get("sweeps") or {},
                   "scalogram (scalogram:)": prep.get("scalogram") or {},
                   "image": {"input_size": "x".join(map(str, meta["input_size"])), "storage": meta.get("image_dtype"),
                             **(meta.get("normalisation") or {})}}  # fmt: skip
    summary = None if ood is None else {k: ood[k] for k in ("method", "space", "k", "quantile", "threshold", "n_train")}
    limits = ["Inputs are prepared from the parameters saved in model.pt; recordings whose protocol cannot give a "
              "rheobase and a rheobase + 40 pA sweep within the window are excluded, not classified."]  # fmt: skip
    if ood is not None and ood.get("threshold_source") == "out_of_fold":  # absent: saved before it was recorded
        summary |= {"threshold_source": "out_of_fold", "n_threshold": ood.get("n_threshold")}
        limits.append("The OOD threshold comes from the CV fold networks' out-of-fold scores, not from the final "
                      "network's embedding space, whose distances are comparable in distribution only.")  # fmt: skip
    elif ood is not None:
        limits.append("The OOD threshold comes from the training cells' embeddings by the network fitted on them, "
                      "which sit closer together than unseen cells: expect more holdout cells above it than "
                      "1 - quantile (re-train to take it from out-of-fold embeddings).")  # fmt: skip
    if ood is None:
        limits.append("This model.pt was saved without an OOD detector: sts predict leaves ood_score empty.")
    return CardInputs(arch, "CNN", str(model_pt), preparation=preparation, details=details, ood=summary,
                      limits=limits, **kwargs)  # fmt: skip


def lgbm_card(model_json: str | Path | None, features_csv=None, **kwargs) -> CardInputs:
    """The LightGBM baseline's card from its model.json (None: fit on the published tables, not
    served); with ``features_csv`` the OOD flag is scored on the holdout cells of the manifest."""
    limits = ["The tuned parameters were chosen by CV on the training cells; only the holdout is untouched by the "
              "search."]  # fmt: skip
    if model_json is None:
        limits.append("Fit on the study's published feature tables: it cannot classify recordings (not served).")
        return CardInputs("lightgbm", "LightGBM", "(not saved)", preparation={"features": {"source": "published"}},
                          limits=limits, **kwargs)  # fmt: skip
    meta = json.loads(Path(model_json).read_text())
    ood = meta.get("ood")
    details = {"class scheme": saved_scheme(meta), "classes": ", ".join(meta["classes"]),
               f"features ({len(meta['features'])})": ", ".join(meta["features"]),
               "training cells": meta.get("n_train"), "seed": meta.get("seed"),
               "tuned parameters": ", ".join(f"{k}={v}" for k, v in (meta.get("best_params") or {}).items()),
               "missing values": meta.get("imputation")}  # fmt: skip
    preparation = {"EP features (FeatureParams)": meta.get("feature_params") or {}}
    summary = None
    if ood is not None:
        summary = {"method": "knn", "space": "EP features (training medians fill undefined ones, standardised)",
                   **{k: ood[k] for k in ("k", "quantile", "threshold")}, "n_train": len(ood["train_z"])}  # fmt: skip
    ood_holdout = None
    if ood is not None and features_csv is not None and kwargs.get("manifest") is not None:
        ood_holdout = _lgbm_holdout_ood(meta, features_csv, kwargs["manifest"])
    limits.append("Undefined features (e.g. ISI features of a single-spike sweep) enter the OOD score as the "
                  "training median, which pulls such cells towards typical values.")
    card = CardInputs("lightgbm", "LightGBM", str(model_json), preparation=preparation, details=details, ood=summary,
                      limits=limits, **kwargs)  # fmt: skip
    card.ood_holdout = ood_holdout
    return card


def _lgbm_holdout_ood(meta: dict, features_csv, manifest) -> pd.DataFrame:
    from sts.trust.ood import KnnNovelty

    ood = KnnNovelty.from_dict(meta["ood"], len(meta["features"]))
    m = pd.read_csv(manifest, dtype={"specimen_id": str}, keep_default_na=False)
    holdout = m.loc[(m["status"] == "ok") & (m["split"] == "test"), "specimen_id"]
    f = pd.read_csv(features_csv, dtype={"specimen_id": str}).set_index("specimen_id")
    f = f.reindex(holdout)
    scores = ood.score(f[meta["features"]].to_numpy(float))
    return pd.DataFrame({"specimen_id": holdout.to_numpy(), "ood_score": scores,
                         "in_distribution": [str(bool(s <= ood.threshold)) for s in scores]})  # fmt: skip


def fusion_card(model_json: str | Path, **kwargs) -> CardInputs:
    """The fusion's card from its model.json (members, stacker, what it was fitted on)."""
    meta = json.loads(Path(model_json).read_text())
    stacker = {k: v for k, v in (meta.get("stacker") or {}).items() if isinstance(v, (str, int, float))}
    details = {"class scheme": saved_scheme(meta), "classes": ", ".join(meta["classes"]),
               "members": ", ".join(f"{m['name']} ({m['kind']}, {m['path']})" for m in meta["members"]),
               "fitted on": meta.get("fitted_on"), "training cells": meta.get("n_train"),
               "CV balanced accuracy": meta.get("cv_balanced_accuracy")}  # fmt: skip
    preparation = {"stacker": stacker, "features": meta.get("features") or {}, "parameters": meta.get("params") or {}}
    limits = ["Each member prepares a file as it was trained (see the members' cards); a file a member cannot "
              "prepare cannot be fused.",
              "No out-of-distribution detector of its own: read the members' ood_score columns."]  # fmt: skip
    return CardInputs("fusion", "fusion", str(model_json), preparation=preparation, details=details, limits=limits,
                      **kwargs)  # fmt: skip


def build_card(family: str, name: str, model: str | Path | None, features_csv=None, **files) -> CardInputs:
    """The card of one served model by family (``cnn``, ``lightgbm``, ``fusion``); ``files``: the
    ``CardInputs`` fields (manifest, metrics, confusion_png, cohort, ood_holdout, calibration)."""
    if family == "cnn":
        return cnn_card(name, model, **files)
    if family == "lightgbm":
        files.pop("ood_holdout", None)  # scored here from the features table
        return lgbm_card(model, features_csv, **files)
    if family == "fusion":
        files.pop("ood_holdout", None)
        return fusion_card(model, **files)
    raise ValueError(f"no model card for family {family!r}: build a CardInputs and call write_card")


# --- rendering ------------------------------------------------------------------------------
def card_sections(card: CardInputs) -> list[tuple[str, list]]:
    """[(heading, blocks)]; a block is a paragraph (str), a list of bullets, or a DataFrame."""
    metrics = json.loads(Path(card.metrics).read_text())
    data = training_data(card.manifest, metrics["classes"])
    cohort = card.cohort or "unknown"
    limits = ([SYNTHETIC_LIMIT] if cohort == "synthetic" else []) + card.limits + GENERAL_LIMITS
    datasets = ", ".join(f"{k}: {v}" for k, v in data["datasets"].items()) or "none"
    sections = [
        ("Model", [f"{card.family} model, served from `{card.model_file}`.",
                   [f"{k}: {_fmt(v)}" for k, v in card.details.items() if v not in (None, "")]]),
        ("Training data", [
            f"Cohort `{cohort}`: {data['n_cells']} cells, {data['n_usable']} usable ({datasets}), "
            f"{data['n_excluded']} excluded.",
            data["per_class"].rename_axis("class").reset_index(),
            "Excluded cells by reason (numbers shown as N):" if data["n_excluded"] else "No cell was excluded.",
            *([data["excluded"]] if data["n_excluded"] else []),
        ]),
        ("Preparation", [[f"{section}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())
                          for section, params in card.preparation.items()] or "(none recorded)"]),
        ("Holdout metrics", _metric_blocks(metrics)),
        ("Confusion matrix", [_confusion(metrics),
                              *([f"Figure: `{card.confusion_png}`"] if card.confusion_png else [])]),
        ("Calibration", _calibration_blocks(card.calibration)),
        ("Out-of-distribution flag", _ood_blocks(card)),
        ("Known limits", [limits]),
    ]  # fmt: skip
    return sections


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(map(_fmt, v)) + "]"
    return str(v)


def _metric_blocks(metrics: dict) -> list:
    ci = metrics.get("bootstrap") or {}
    rows = []
    for key, name in (("balanced_accuracy", "balanced accuracy"), ("weighted_f1", "weighted F1"),
                      ("accuracy", "accuracy")):  # fmt: skip
        c = ci.get(key) or {}
        rows.append({"metric": name, "value": metrics[key], "low": c.get("low", np.nan), "high": c.get("high", np.nan)})
    note = (f"{metrics['n_test']} holdout cells; low/high: {100 * ci['confidence']:.0f} % intervals, {ci['method']} "
            f"({ci['n_resamples']} resamples, seed {ci['seed']})." if ci else
            f"{metrics['n_test']} holdout cells; no bootstrap intervals in metrics.json.")  # fmt: skip
    per_class = pd.DataFrame(metrics["per_class"]).T.rename_axis("class").reset_index()
    per_class["support"] = per_class["support"].astype(int)
    return [note, pd.DataFrame(rows), "Per class:", per_class]


def _confusion(metrics: dict) -> pd.DataFrame:
    cm = pd.DataFrame(metrics["confusion_matrix"], index=metrics["classes"], columns=metrics["classes"])
    return cm.rename_axis("true \\ predicted").reset_index()


def _calibration_blocks(path) -> list:
    values = read_calibration(path)
    if values is None:
        return [NOT_CALIBRATED]
    return [f"From `{path}`:", [f"{k}: {_fmt(v)}" for k, v in values.items()]]


def _ood_blocks(card: CardInputs) -> list:
    if card.ood is None:
        return ["No out-of-distribution detector saved with this model: `sts predict` leaves ood_score and "
                "in_distribution empty."]  # fmt: skip
    o = card.ood
    if o.get("threshold_source") == "out_of_fold":
        source = (f"the {o['n_threshold']} training cells' out-of-fold scores (each by the CV fold network that did "
                  "not train on it)")  # fmt: skip
    else:
        source = f"the {o['n_train']} training cells' leave-one-out scores"
    blocks = [f"`sts predict` adds ood_score (mean distance of the cell to its {o['k']} nearest training cells in "
              f"{o['space']}) and in_distribution (score <= {o['threshold']:.4g}, the {o['quantile']:g} quantile of "
              f"{source}; method {o['method']}): by construction about {100 * (1 - o['quantile']):.0f} % of those "
              "scores lie above it."]  # fmt: skip
    flagged = None
    if isinstance(card.ood_holdout, pd.DataFrame):
        flagged = (int((card.ood_holdout["in_distribution"] == "False").sum()), len(card.ood_holdout))
    elif card.ood_holdout is not None:
        flagged = holdout_flagged(card.ood_holdout)
    if flagged:
        n, total = flagged
        blocks.append(f"Holdout cells flagged out of distribution: {n} of {total} ({100 * n / total:.1f} %; the "
                      f"false-alarm rate on unseen cells of the training distribution).")  # fmt: skip
    return blocks


def to_markdown(card: CardInputs) -> str:
    out = [f"# Model card: {card.model} ({card.family})", ""]
    for heading, blocks in card_sections(card):
        out += [f"## {heading}", ""]
        for block in blocks:
            if isinstance(block, pd.DataFrame):
                out += [_md_table(block), ""]
            elif isinstance(block, list):
                out += [f"- {item}" for item in block] + [""]
            else:
                out += [block, ""]
    return "\n".join(out)


def _md_table(frame: pd.DataFrame) -> str:
    cell = lambda v: ("" if isinstance(v, float) and np.isnan(v) else f"{v:.3f}" if isinstance(v, float)  # noqa: E731
                      else str(v).replace("|", "\\|"))  # fmt: skip
    lines = ["| " + " | ".join(cell(c) for c in frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def to_html(card: CardInputs) -> str:
    """A standalone page (the confusion-matrix figure embedded) for the Snakemake report."""
    from sts.report.tables import STYLE

    body = [f"<h2>Model card: {html.escape(card.model)} ({html.escape(card.family)})</h2>"]
    for heading, blocks in card_sections(card):
        body.append(f"<h3>{html.escape(heading)}</h3>")
        for block in blocks:
            if isinstance(block, pd.DataFrame):
                body.append(block.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep=""))
            elif isinstance(block, list):
                body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block) + "</ul>")
            else:
                body.append(f"<p>{_inline(block)}</p>")
        if heading == "Confusion matrix" and card.confusion_png and Path(card.confusion_png).is_file():
            data = base64.b64encode(Path(card.confusion_png).read_bytes()).decode()
            body.append(f"<img alt='confusion matrix' style='max-width:100%' src='data:image/png;base64,{data}'>")
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Model card: {html.escape(card.model)}</title>"
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")  # fmt: skip


def _inline(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(str(text)))


def write_card(card: CardInputs, markdown_path: str | Path, html_path: str | Path | None = None) -> None:
    from sts.io.atomic import write_text_atomic

    write_text_atomic(markdown_path, to_markdown(card))
    if html_path is not None:
        write_text_atomic(html_path, to_html(card))


def model_card(family: str, name: str, model, features_csv, markdown_path, html_path, **files) -> CardInputs:
    """Rule ``report_model_card``: ``build_card`` then ``write_card``."""
    card = build_card(family, name, model, features_csv, **files)
    write_card(card, markdown_path, html_path)
    return card
