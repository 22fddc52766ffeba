"""Allen Cell Types Database through the Allen Brain Map RMA API (what AllenSDK's CellTypesApi asks).

The queries are those of ``allensdk.api.queries.cell_types_api`` (list_cells_api,
get_ephys_sweeps, save_ephys_data), sent with ``requests`` so that this module runs in the
main environment; AllenSDK itself lives in its own env (workflow/envs/allensdk.yaml).
Responses are the RMA envelope ``{"success", "start_row", "num_rows", "total_rows", "msg"}``.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import pandas as pd

from sts.acquire.http import DownloadError, RetryPolicy, checked_url, get_json

log = logging.getLogger(__name__)

MOUSE = "Mus musculus"
NWB_FILE_TYPE = "NWBDownload"
# ApiCellTypesSpecimenDetail columns kept in the cached cell table (raw RMA names).
CELL_COLUMNS = [
    "specimen__id", "donor__species", "line_name", "tag__dendrite_type", "structure_parent__acronym",
    "structure__acronym", "structure__layer", "cell_reporter_status",
]
SWEEP_COLUMNS = ["sweep_number", "stimulus_name", "stimulus_absolute_amplitude", "num_spikes", "workflow_state"]
PAGE_ROWS = 2000


def rma_query(api_base: str, stage: str, policy: RetryPolicy = RetryPolicy(), sess=None) -> list[dict]:
    """All rows of one RMA model stage, paged with start_row/num_rows."""
    url = f"{api_base.rstrip('/')}/api/v2/data/query.json"
    rows: list[dict] = []
    while True:
        q = f"{stage},rma::options[num_rows$eq{PAGE_ROWS}][start_row$eq{len(rows)}]"
        env = get_json(url, params={"q": q}, policy=policy, sess=sess)
        if not env.get("success", False):
            raise DownloadError(f"RMA query failed at {url} ({stage}): {env.get('msg')!r}", permanent=True)
        page = env.get("msg") or []
        rows.extend(page)
        if not page or len(rows) >= int(env.get("total_rows", len(rows))):
            return rows


def list_cells(api_base: str, policy: RetryPolicy = RetryPolicy()) -> pd.DataFrame:
    """Mouse cells of the Cell Types Database with the metadata the labels need (raw RMA columns)."""
    rows = rma_query(api_base, "model::ApiCellTypesSpecimenDetail", policy)
    table = pd.DataFrame(rows).reindex(columns=CELL_COLUMNS)
    table = table[table["donor__species"].fillna("").str.lower() == MOUSE.lower()]
    log.info("Allen API %s: %d cells, %d mouse", api_base, len(rows), len(table))
    return table.astype({"specimen__id": "int64"}).sort_values("specimen__id").reset_index(drop=True)


def ephys_sweeps(api_base: str, specimen_id: int | str, policy: RetryPolicy = RetryPolicy(), sess=None) -> pd.DataFrame:
    """The cell's sweep table: sweep_number, stimulus_name, stimulus_absolute_amplitude (pA), num_spikes."""
    rows = rma_query(api_base, f"model::EphysSweep,rma::criteria,[specimen_id$eq{int(specimen_id)}]", policy, sess)
    return pd.DataFrame(rows).reindex(columns=SWEEP_COLUMNS).sort_values("sweep_number").reset_index(drop=True)


def nwb_url(api_base: str, specimen_id: int | str, policy: RetryPolicy = RetryPolicy(), sess=None) -> str:
    """Download URL of the cell's NWB file (its well-known file of type NWBDownload).

    The API gives a path (``/api/v2/well_known_file_download/<id>``), appended to ``api_base``.
    A link that would take the download elsewhere (another host, scheme or port, user info as in
    ``@host/...``) raises a permanent DownloadError naming the specimen. The listing carries no
    size or checksum of the file: ``download`` checks the size the server announces.
    """
    stage = (
        f"model::Specimen,rma::criteria,[id$eq{int(specimen_id)}],"
        f"ephys_result(well_known_files(well_known_file_type[name$eq{NWB_FILE_TYPE}])),"
        "rma::include,ephys_result(well_known_files(well_known_file_type))"
    )
    rows = rma_query(api_base, stage, policy, sess)
    try:
        link = rows[0]["ephys_result"]["well_known_files"][0]["download_link"]
    except (IndexError, KeyError, TypeError):
        raise DownloadError(f"specimen {specimen_id} has no NWB file in the Allen API", 404, permanent=True)
    if not isinstance(link, str) or not link:
        raise DownloadError(f"specimen {specimen_id}: no usable download_link ({link!r}) in the Allen API",
                            permanent=True)
    try:
        absolute = bool(urlsplit(link).scheme)
    except ValueError:  # unbalanced brackets: checked_url refuses what the concatenation gives
        absolute = False
    url = link if absolute else f"{api_base.rstrip('/')}{link}"
    return checked_url(url, api_base, f"specimen {specimen_id}: download_link {link!r}")


def long_square_check(sweeps: pd.DataFrame) -> str:
    """Why a cell cannot be used, judged from its sweep table alone ('' if it may be)."""
    ls = sweeps[sweeps["stimulus_name"].fillna("").str.startswith("Long Square")]
    if ls.empty:
        return "no long-square sweeps in the Allen sweep table"
    if "workflow_state" in ls and ls["workflow_state"].notna().any():
        ls = ls[~ls["workflow_state"].fillna("").str.contains("failed")]
        if ls.empty:
            return "all long-square sweeps failed QC in the Allen sweep table"
    spikes = pd.to_numeric(ls["num_spikes"], errors="coerce")
    if spikes.notna().any() and not (spikes > 0).any():  # unknown counts: let the file decide
        return "no long-square sweep with a spike in the Allen sweep table"
    return ""
