"""Acquire one cell: its NWB file at ``{nwb_dir}/{specimen_id}.nwb`` and a JSON report.

Allen cells (``clamp``): sweep table from the API first (a cell with no usable long square is
excluded without downloading), then the whole NWB v1 file (resumable, verified). DANDI cells
(``seq``): the two needed sweeps by range requests (``stream``), or the whole file (``whole``,
SHA-256 checked). A permanent failure (404, unusable file, checksum) writes the marker file
with the reason; transient failures that outlast the retries raise, so the job fails and a
re-run resumes.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from sts.acquire.http import DownloadError, HostRule, RetryPolicy, checked_url, download, session
from sts.acquire.marker import write_marker
from sts.io.atomic import write_text_atomic
from sts.settings import ACQUIRE_DEFAULTS
from sts.io.text import clean_text, spreadsheet_safe

log = logging.getLogger(__name__)


@dataclass
class Sources:
    allen_api: str = ACQUIRE_DEFAULTS["allen_api"]
    dandi_api: str = ACQUIRE_DEFAULTS["dandi_api"]
    dandiset: str = ACQUIRE_DEFAULTS["dandiset"]
    dandiset_version: str | None = None
    dandi_mode: str = ACQUIRE_DEFAULTS["dandi_mode"]  # stream | whole
    block_size: int = ACQUIRE_DEFAULTS["block_size_kb"] * 1024  # bytes per range request when streaming


@dataclass
class CellReport:
    specimen_id: str
    dataset: str
    status: str = "ok"  # ok | excluded
    reason: str = ""
    mode: str = ""  # whole | stream | none
    url: str = ""
    bytes_fetched: int = 0
    remote_size: int = 0  # size of the whole remote file (bytes), when known
    local_size: int = 0
    sweeps: list = field(default_factory=list)
    seconds: float = 0.0


def _usable_nwb(path: Path) -> str:
    """'' if the file opens as a recording with sweeps, else why not."""
    from sts.recordings import NwbReadError, open_recording

    try:
        with open_recording(path) as rec:
            if not rec.sweep_numbers:
                return f"no sweeps in {path.name}"
    except NwbReadError as err:
        return str(err)
    return ""


def _allen(specimen_id: str, out: Path, src: Sources, policy: RetryPolicy, rep: CellReport) -> None:
    from sts.acquire import allen

    sess = session()
    sweeps = allen.ephys_sweeps(src.allen_api, specimen_id, policy, sess)
    reason = allen.long_square_check(sweeps)
    if reason:
        rep.status, rep.reason, rep.mode = "excluded", reason, "none"
        return
    rep.url = allen.nwb_url(src.allen_api, specimen_id, policy, sess)
    rep.mode = "whole"
    result = download(rep.url, out, policy=policy, sess=sess, hosts=HostRule(src.allen_api))  # redirects too
    rep.bytes_fetched, rep.remote_size = result.bytes_fetched, result.size
    problem = _usable_nwb(out)
    if problem:
        rep.status, rep.reason = "excluded", f"unusable NWB file from {rep.url}: {problem}"


def _dandi(specimen_id: str, out: Path, src: Sources, policy: RetryPolicy, rep: CellReport,
           asset_table: str | Path, selection) -> None:
    from sts.acquire.dandi_stream import asset_source, stream_cell

    assets = pd.read_csv(asset_table, dtype=str)
    match = assets[assets["specimen_id"] == str(specimen_id)]
    if match.empty:
        rep.status, rep.reason, rep.mode = "excluded", f"no DANDI:{src.dandiset} asset for this specimen", "none"
        return
    if len(match) > 1:
        log.warning("%s: %d assets, using %s", specimen_id, len(match), match.iloc[0]["path"])
    asset = asset_source(src.dandi_api, src.dandiset, src.dandiset_version, match.iloc[0]["asset_id"])
    # The content lives on another host (S3) than the API: only user info and downgrades are refused.
    checked_url(asset.url, src.dandi_api, f"specimen {specimen_id}: DANDI content URL", same_host=False)
    rep.url, rep.remote_size, rep.mode = asset.url, asset.size, src.dandi_mode
    if src.dandi_mode == "whole":
        checksum = ("sha256", asset.sha256) if asset.sha256 else None
        result = download(asset.url, out, expected_size=asset.size, checksum=checksum, policy=policy,
                          hosts=HostRule(src.dandi_api, same_host=False))
        rep.bytes_fetched = result.bytes_fetched
        problem = _usable_nwb(out)
        if problem:
            rep.status, rep.reason = "excluded", f"unusable NWB file from {asset.url}: {problem}"
        return
    streamed = stream_cell(asset.url, out, selection, src.block_size, policy, asset.size)
    rep.bytes_fetched, rep.sweeps = streamed.bytes_fetched, streamed.sweep_numbers
    if streamed.status != "ok":
        rep.status, rep.reason = "excluded", f"{streamed.reason} (streamed from {asset.url})"


def acquire_cell(specimen_id: str, dataset: str, out_nwb: str | Path, report_json: str | Path,
                 src: Sources = Sources(), policy: RetryPolicy = RetryPolicy(), asset_table=None,
                 selection=None) -> CellReport:
    """Fetch one cell; always leaves ``out_nwb`` (data or marker) and ``report_json`` unless it raises."""
    out = Path(out_nwb)
    rep = CellReport(str(specimen_id), dataset)
    t0 = time.monotonic()
    try:
        if dataset == "clamp":
            _allen(str(specimen_id), out, src, policy, rep)
        elif dataset == "seq":
            if asset_table is None:
                raise ValueError("seq cells need the DANDI asset table")
            _dandi(str(specimen_id), out, src, policy, rep, asset_table, selection)
        else:
            raise ValueError(f"cell {specimen_id}: unknown dataset {dataset!r} (expected clamp or seq)")
    except DownloadError as err:
        if not err.permanent:
            raise
        rep.status, rep.reason = "excluded", f"download failed: {err}"
    if rep.status != "ok":
        rep.reason = clean_text(rep.reason)  # quotes servers' and files' text: one line, cut
        log.warning("cell %s excluded: %s", specimen_id, rep.reason)
        write_marker(out, str(specimen_id), rep.reason)
    rep.local_size = out.stat().st_size
    rep.seconds = round(time.monotonic() - t0, 3)
    write_text_atomic(report_json, json.dumps(asdict(rep), indent=1))
    log.info("cell %s: %s, %d bytes fetched (remote file %d bytes) in %.1f s", specimen_id, rep.status,
             rep.bytes_fetched, rep.remote_size, rep.seconds)
    return rep


def write_report(report_files, out_csv: str | Path) -> pd.DataFrame:
    """One row per cell (bytes fetched, remote size, status, reason) and a log line with the totals."""
    from sts.io.atomic import write_csv_atomic

    rows = [json.loads(Path(p).read_text()) for p in report_files]
    table = pd.DataFrame(rows, columns=list(CellReport.__dataclass_fields__))
    table["fraction_of_file"] = table["bytes_fetched"] / table["remote_size"].where(table["remote_size"] > 0)
    table["reason"] = table["reason"].fillna("").map(clean_text)  # reports of older runs too
    write_csv_atomic(out_csv, spreadsheet_safe(table.sort_values("specimen_id")))  # users open it
    for dataset, group in table.groupby("dataset"):
        log.info("%s: %d cells, %.2f MB fetched in all, median %.3f MB/cell (%.1f%% of the file)", dataset,
                 len(group), group["bytes_fetched"].sum() / 1e6, group["bytes_fetched"].median() / 1e6,
                 100 * group["fraction_of_file"].median())
    return table
