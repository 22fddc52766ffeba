"""The cached API listings of the real datasets: the Allen Cell Types cells and the DANDI assets
(``sts acquire allen-cells | dandi-assets``; read back by ``sts.cohort.table``)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import pandas as pd

from sts.io.atomic import write_csv_atomic


def listing_path(acq: Mapping, dataset: str) -> Path:
    name = {"clamp": "allen_cells.csv", "seq": "dandi_assets.csv"}[dataset]
    return Path(acq["metadata_dir"]) / name


def write_allen_listing(acq: Mapping, path: str | Path) -> pd.DataFrame:
    from sts.acquire.allen import list_cells
    from sts.acquire.http import RetryPolicy

    table = list_cells(acq["allen_api"], RetryPolicy(acq["retries"], acq["backoff_s"], acq["timeout_s"]))
    write_csv_atomic(path, table)
    return table


def write_dandi_listing(acq: Mapping, path: str | Path) -> pd.DataFrame:
    from sts.acquire.dandi_stream import list_assets

    table = list_assets(acq["dandi_api"], acq["dandiset"], acq["dandiset_version"])
    write_csv_atomic(path, table)
    return table
