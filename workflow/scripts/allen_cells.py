"""Snakemake adapter: the Allen Cell Types cell list (mouse) as a CSV of raw RMA columns.

Runs in workflow/envs/allensdk.yaml, where AllenSDK's CellTypesApi sends the query. It imports
neither sts nor pandas (that env pins old numpy/pandas); its column list and mouse filter
mirror sts.acquire.allen.CELL_COLUMNS / list_cells, which the default (pip) environment uses
when the DAG is built and the listing is missing (sts.cohort.table); tests/test_acquire_allensdk.py
checks that both write the same table.
"""

import csv
import logging
import os

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
api, out = snakemake.params.api, snakemake.output.cells
COLUMNS = [
    "specimen__id", "donor__species", "line_name", "tag__dendrite_type", "structure_parent__acronym",
    "structure__acronym", "structure__layer", "cell_reporter_status",
]
try:
    from allensdk.api.queries.cell_types_api import CellTypesApi
except ImportError as err:  # only its own env has it; the sts client is `sts acquire allen-cells`
    raise SystemExit(
        f"AllenSDK is not installed ({err}): run this rule with --software-deployment-method conda "
        f"(workflow/envs/allensdk.yaml), or list the cells with: sts acquire allen-cells {out} --api {api}"
    )
else:
    logging.info("AllenSDK CellTypesApi on %s", api)
    rows = CellTypesApi(base_uri=api).list_cells_api()
    mouse = [r for r in rows if str(r.get("donor__species") or "").lower() == "mus musculus"]
    mouse.sort(key=lambda r: int(r["specimen__id"]))
    tmp = f"{out}.tmp{os.getpid()}"
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS} for r in mouse)
    os.replace(tmp, out)
    logging.info("%d API rows, %d mouse cells", len(rows), len(mouse))
