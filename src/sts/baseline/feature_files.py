"""Command line of the per-cell EP features: ``sts ep-features`` and ``sts ep-features-aggregate``.

``sts ep-features NWB OUT.json --specimen-id ID [--dataset D] [--label L] [--params JSON] [ABF protocol]`` writes
``{specimen_id, dataset, label, status, reason, source_file, features: {...}, info: {...}, unexpected_error}``
(NaN features as JSON null) atomically, also for an excluded cell.
``sts ep-features-aggregate OUT.csv JSON...`` writes one row per cell: specimen_id, dataset,
label, status, reason, then the feature columns (in ``FEATURE_NAMES`` order; empty = NaN); like
``sts.cohort.manifest``, it stops when unexpected errors (``unexpected_error`` in the records) excluded
too many cells.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
from pathlib import Path

from sts.io.atomic import atomic_path, write_text_atomic

log = logging.getLogger(__name__)

META_COLUMNS = ("specimen_id", "dataset", "label", "status", "reason")


def _json_safe(value):
    """NaN/inf -> None (strict JSON), numpy scalars -> Python numbers, recursively."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def features_file(nwb, out, specimen_id: str, dataset: str = "", label: str = "", protocol=None,
                  params=None) -> dict:  # fmt: skip
    """Compute one cell's features and write its JSON record (atomically); returns the record.

    ``protocol``: the step ladder of an ABF file without a command waveform (``sts.recordings.abf.Protocol``);
    ``params``: ``FeatureParams`` (default: its defaults).
    """
    from sts.baseline.features import FeatureParams, compute_features

    result = compute_features(nwb, params or FeatureParams(), protocol)
    if result.status != "ok":
        log.warning("%s excluded: %s", specimen_id, result.reason)
    record = {
        "specimen_id": str(specimen_id), "dataset": dataset, "label": label,
        "status": result.status, "reason": result.reason, "source_file": str(nwb),
        "features": result.features, "info": result.info, "unexpected_error": result.unexpected_error,
    }
    write_text_atomic(out, json.dumps(_json_safe(record), indent=1, allow_nan=False) + "\n")
    return record


def aggregate(json_paths, out_csv) -> int:
    """One CSV row per per-cell JSON (any order in, sorted by specimen_id out); returns rows."""
    from sts.baseline.features import FEATURE_NAMES

    from sts.cohort.manifest import MAX_UNEXPECTED_SHARE, MIN_UNEXPECTED_CELLS, check_unexpected

    records = [json.loads(Path(p).read_text()) for p in json_paths]
    records.sort(key=lambda r: str(r["specimen_id"]))
    unexpected = {str(r["specimen_id"]): str(r["unexpected_error"]) for r in records if r.get("unexpected_error")}
    summary = check_unexpected(unexpected, len(records), "cells", MAX_UNEXPECTED_SHARE, MIN_UNEXPECTED_CELLS)
    extra = sorted({k for r in records for k in r.get("features", {})} - set(FEATURE_NAMES))
    columns = list(META_COLUMNS) + list(FEATURE_NAMES) + extra
    with atomic_path(out_csv, ".csv") as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for r in records:
            feats = r.get("features", {})
            row = [r.get(c, "") for c in META_COLUMNS]
            names = columns[len(META_COLUMNS):]
            row += ["" if feats.get(c) is None else repr(float(feats[c])) for c in names]
            writer.writerow(row)
    n_ok = sum(r["status"] == "ok" for r in records)
    log.info("%d cells (%d ok, %d excluded; %s) -> %s", len(records), n_ok, len(records) - n_ok, summary, out_csv)
    return len(records)


def feature_params_from_json(text: str | None):
    """``FeatureParams`` from --params (absent keys: the defaults); a bad key or value exits naming it."""
    from sts.baseline.features import FeatureParams
    from sts.settings import from_dict

    try:
        return from_dict(FeatureParams, json.loads(text or "{}"), "sts ep-features --params")
    except (ValueError, TypeError) as err:
        raise SystemExit(str(err)) from err


def _run_features(args: argparse.Namespace) -> int:
    from sts.prep.protocol_args import protocol_from_args

    rec = features_file(args.nwb, args.out, args.specimen_id, args.dataset, args.label, protocol_from_args(args),
                        feature_params_from_json(args.params))  # fmt: skip
    log.info("%s: %s %s", args.specimen_id, rec["status"], rec["reason"])
    return 0


def _run_aggregate(args: argparse.Namespace) -> int:
    aggregate(args.jsons, args.out)
    return 0


def add_parser(subparsers) -> None:
    """Register ``ep-features`` and ``ep-features-aggregate`` on the ``sts`` subparsers."""
    from sts.prep.protocol_args import add_cell_arguments, add_protocol_options

    p = subparsers.add_parser(
        "ep-features",
        help="ipfx EP features of one cell from its long-square sweeps (JSON)",
        description="Run ipfx's long-square analysis on all long squares of the cell and write "
        "the Allen-table features (f_i_curve_slope, avg_isi, adaptation, latency, *_long_square, "
        "...) as JSON. A cell whose features cannot be computed still gets OUT.json, with status "
        "'excluded' and the reason; undefined features are null.",
    )
    add_cell_arguments(p, "output JSON")
    p.add_argument("--params", default=None, metavar="JSON",
                   help="feature settings as JSON, e.g. {\"any_square_step\": true} (the workflow passes the keys "
                        "its sweeps: block sets: dv_cutoff_mv_ms, long_square_names, min_step_s, any_square_step)")  # fmt: skip
    add_protocol_options(p)
    p.set_defaults(func=_run_features)

    p = subparsers.add_parser(
        "ep-features-aggregate",
        help="combine per-cell EP-feature JSON files into one CSV",
        description="One row per cell: specimen_id, dataset, label, status, reason, then the "
        "feature columns (empty = undefined).",
    )
    p.add_argument("out", help="output CSV")
    p.add_argument("jsons", nargs="+", help="per-cell JSON files from ep-features")
    p.set_defaults(func=_run_aggregate)
