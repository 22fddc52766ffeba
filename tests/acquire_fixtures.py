"""Fake Allen Cell Types and DANDI 000020 services built from synthetic cells (real layouts).

Every fact the real services carry and the pipeline uses is derived from the written files:
Allen sweep tables (stimulus name, amplitude, spike count) from the NWB v1 file, DANDI asset
metadata (size, SHA-256, contentUrl) from the MIES NWB 2 bytes. Labels are expressed the
way the real metadata does (Cre line + dendrite type; patch-seq T-type), so deriving the
class is a real step. See shared/DATA_FORMATS.md.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from fakeserver import FakeServer, paginate

# How the real metadata names each synthetic class (DATA_FORMATS.md §3).
ALLEN_META = {
    "Pvalb": ("Pvalb-IRES-Cre", "aspiny"),
    "Sst": ("Sst-IRES-Cre", "aspiny"),
    "Vip/Lamp5": ("Vip-IRES-Cre", "aspiny"),
    "Excitatory": ("Cux2-CreERT2", "spiny"),
    "Unsure": ("Gad2-IRES-Cre", "aspiny"),
}
TTYPE = {
    "Pvalb": "Pvalb Reln Itm2a",
    "Sst": "Sst Calb2 Pdlim5",
    "Vip/Lamp5": "Lamp5 Lsp1",
    "Excitatory": "L2/3 IT VISp Agmat",
    "Unsure": "Sncg Vip Itih5",
}
DANDISET = "000020"
VERSION = "0.210913.1639"
TIMESTAMP = "2021-09-13T16:39:00.000000Z"
GHOST_ID = "399999999"  # listed by the Allen API, but its NWB file answers 404


@dataclass
class Services:
    server: FakeServer
    cells: pd.DataFrame  # specimen_id, dataset, label, defect
    nwb: dict[str, Path]  # the original full files
    asset_ids: dict[str, str] = field(default_factory=dict)  # seq specimen -> asset id
    well_known: dict[str, int] = field(default_factory=dict)  # clamp specimen -> file id
    patchseq_csv: Path | None = None

    def allen_file_path(self, sid: str) -> str:
        return f"/api/v2/well_known_file_download/{self.well_known[sid]}"

    def blob_path(self, sid: str) -> str:
        return f"/blobs/{self.asset_ids[sid]}"


# Sweeps a real MIES file carries besides the long squares (DATA_FORMATS.md §2: noise, ramps,
# chirps, stored uncompressed at 50 kHz), so fixture files weigh what real ones do (~20 MB)
# and a reader that fetches more than the sweeps it needs shows it in the byte counts.
EXTRA_MIES_SWEEPS = (("C1NSSEED_2", 14.0), ("C1NSSEED_2", 14.0), ("C1RP25PR1S", 8.0), ("C1CHIRP171", 12.0))


def add_mies_extras(path: Path, seed: int) -> None:
    """Append the non-long-square sweeps of a real MIES file, uncompressed, in the MIES layout."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "r+") as f:
        first = 1 + max(int(g.attrs["sweep_number"]) for g in f["acquisition"].values())
        fs = float(next(iter(f["acquisition"].values()))["starting_time"].attrs["rate"])
        for k, (code, seconds) in enumerate(EXTRA_MIES_SWEEPS):
            n = first + k
            stim_pa = (rng.standard_normal(int(seconds * fs)) * 30).astype(np.float32)
            resp_mv = (-70 + np.cumsum(rng.standard_normal(stim_pa.size)) * 0.01).astype(np.float32)
            for group, kind, suffix, data, conversion, unit in (
                ("acquisition", "CurrentClampSeries", "AD0", resp_mv, 1e-3, "volts"),
                ("stimulus/presentation", "CurrentClampStimulusSeries", "DA0", stim_pa, 1e-12, "amperes"),
            ):
                g = f.create_group(f"{group}/data_{n:05d}_{suffix}")
                g.attrs["neurodata_type"] = kind
                g.attrs["namespace"] = "core"
                g.attrs["sweep_number"] = np.uint32(n)
                g.attrs["stimulus_description"] = f"{code}_DA_0"
                d = g.create_dataset("data", data=data)
                d.attrs["conversion"], d.attrs["unit"], d.attrs["resolution"] = conversion, unit, np.nan
                t = g.create_dataset("starting_time", data=0.0)
                t.attrs["rate"], t.attrs["unit"] = fs, "seconds"


def allen_sweep_table(path: Path) -> list[dict]:
    """The API's EphysSweep rows of one cell, read from its NWB v1 file."""
    rows = []
    with h5py.File(path, "r") as f:
        for name, stim in f["stimulus/presentation"].items():
            n = int(name.split("_")[1])
            spikes = f.get(f"analysis/spike_times/{name}")
            raw = stim["aibs_stimulus_name"][()]
            rows.append({
                "id": 900_000_000 + n, "sweep_number": n,
                "stimulus_name": raw.decode() if isinstance(raw, bytes) else str(raw),
                "stimulus_absolute_amplitude": float(stim["aibs_stimulus_amplitude_pa"][()]),
                "stimulus_units": "Amps", "num_spikes": int(spikes.shape[0]) if spikes is not None else None,
                "workflow_state": "auto_passed",
            })
    return sorted(rows, key=lambda r: r["sweep_number"])


def _rma(services: Services, cells_rows, sweeps_by_id, files_by_id):
    def handler(m, query):
        q = query.get("q", [""])[0]
        model = re.match(r"model::(\w+)", q)
        if not model:
            return 400, {"success": False, "msg": "bad query"}
        start = int((re.search(r"start_row\$eq(\d+)", q) or [0, 0])[1])
        num = re.search(r"num_rows\$eq(\d+)", q)
        if model[1] == "ApiCellTypesSpecimenDetail":
            rows = cells_rows
        elif model[1] == "EphysSweep":
            rows = sweeps_by_id.get(re.search(r"specimen_id\$eq(\d+)", q)[1], [])
        elif model[1] == "Specimen":
            sid = re.search(r"\[id\$eq(\d+)\]", q)[1]
            rows = [] if sid not in files_by_id else [{
                "id": int(sid),
                "ephys_result": {"id": 1, "well_known_files": [{
                    "id": files_by_id[sid], "download_link": f"/api/v2/well_known_file_download/{files_by_id[sid]}",
                    "well_known_file_type": {"name": "NWBDownload"},
                }]},
            }]
        else:
            return 200, {"success": False, "msg": f"unknown model {model[1]}"}
        page = rows[start : start + int(num[1])] if num else rows[start:]
        return 200, {"success": True, "id": 0, "start_row": start, "num_rows": len(page), "total_rows": len(rows),
                     "msg": page}

    return handler


def build_services(cells: pd.DataFrame, nwb: dict[str, Path], out_dir: Path) -> Services:
    """Start a FakeServer serving ``cells`` (clamp -> Allen API, seq -> DANDI API)."""
    server = FakeServer().start()
    services = Services(server, cells, nwb)
    clamp = cells[cells["dataset"] == "clamp"]
    seq = cells[cells["dataset"] == "seq"]

    cells_rows, sweeps_by_id, files_by_id = [], {}, {}
    for k, row in enumerate(clamp.to_dict("records")):
        sid = row["specimen_id"]
        line, dendrite = ALLEN_META[row["label"]]
        cells_rows.append({
            "specimen__id": int(sid), "specimen__name": f"{line.split('-')[0]};SYN-{sid}.01.01",
            "donor__species": "Mus musculus", "line_name": line, "tag__dendrite_type": dendrite,
            "structure_parent__acronym": "VISp", "structure__acronym": "VISp4", "structure__layer": "4",
            "cell_reporter_status": "positive", "csl__x": 0, "csl__y": 0, "csl__z": 0,
        })
        source = nwb[sid]
        if row.get("defect") == "corrupt_file":  # the API knows the sweeps; only the file is damaged
            from sts.synth import write_cell

            source = out_dir / f"intact_{sid}.nwb"
            write_cell({**row, "defect": ""}, source)
        sweeps_by_id[sid] = allen_sweep_table(source)
        files_by_id[sid] = 500_000_000 + k
        services.well_known[sid] = files_by_id[sid]
        server.files[services.allen_file_path(sid)] = nwb[sid].read_bytes()
    # A listed cell whose NWB file is gone from the server (404 on download).
    if cells_rows:
        template = cells_rows[0]
        cells_rows.append({**template, "specimen__id": int(GHOST_ID)})
        sweeps_by_id[GHOST_ID] = sweeps_by_id[str(template["specimen__id"])]
        files_by_id[GHOST_ID] = 599_999_999
        services.well_known[GHOST_ID] = files_by_id[GHOST_ID]
    # A human cell, which the mouse-only listing must drop.
    cells_rows.append({"specimen__id": 999000001, "donor__species": "Homo Sapiens", "line_name": "",
                       "tag__dendrite_type": "spiny", "structure__layer": "3"})
    server.route(r"/api/v2/data/query\.json", _rma(services, cells_rows, sweeps_by_id, files_by_id))

    assets, metadata = [], {}
    for k, row in enumerate(seq.to_dict("records")):
        sid = row["specimen_id"]
        data = nwb[sid].read_bytes()
        asset_id = f"{k:08d}-aaaa-bbbb-cccc-{int(sid):012d}"
        services.asset_ids[sid] = asset_id
        donor = f"{600000 + k}"
        path = f"sub-{donor}/sub-{donor}_ses-{sid}_icephys.nwb"
        assets.append({"asset_id": asset_id, "blob": f"blob-{asset_id}", "zarr": None, "path": path,
                       "size": len(data), "created": TIMESTAMP, "modified": TIMESTAMP})
        metadata[asset_id] = {
            "id": f"dandiasset:{asset_id}", "identifier": asset_id, "path": path, "contentSize": len(data),
            "encodingFormat": "application/x-nwb",
            "digest": {"dandi:sha2-256": hashlib.sha256(data).hexdigest()},
            "contentUrl": [f"{server.url}/api/assets/{asset_id}/download/", f"{server.url}/blobs/{asset_id}"],
            "wasAttributedTo": [{"identifier": donor, "species": {"name": "Mus musculus - House mouse"}}],
        }
        server.files[services.blob_path(sid)] = data
    # A non-NWB asset that the listing must skip.
    assets.append({"asset_id": "ffffffff-0000", "blob": "blob-x", "zarr": None, "path": "dandiset.yaml",
                   "size": 10, "created": TIMESTAMP, "modified": TIMESTAMP})
    by_id = {a["asset_id"]: a for a in assets}
    version = {"version": VERSION, "name": "Patch-seq recordings from mouse visual cortex", "asset_count": len(assets),
               "size": sum(a["size"] for a in assets), "created": TIMESTAMP, "modified": TIMESTAMP,
               "status": "Valid", "dandiset": {"identifier": DANDISET}}
    info = {"version": "0.4.0", "cli-minimal-version": "0.60.0", "cli-bad-versions": [],
            "services": {"api": {"url": f"{server.url}/api"}, "webui": {"url": server.url}}}
    server.route(r"/server-info", lambda m, q: (200, info))
    server.route(r"/api/info/", lambda m, q: (200, info))
    server.route(rf"/api/dandisets/{DANDISET}/", lambda m, q: (200, {
        "identifier": DANDISET, "created": TIMESTAMP, "modified": TIMESTAMP, "contact_person": "Allen Institute",
        "embargo_status": "OPEN", "most_recent_published_version": version,
        "draft_version": {**version, "version": "draft", "status": "Valid"}}))
    server.route(rf"/api/dandisets/{DANDISET}/versions/([^/]+)/assets/",
                 lambda m, q: (200, paginate(server.url, m.group(0), assets, q, default_size=4)))
    server.route(rf"/api/dandisets/{DANDISET}/versions/([^/]+)/assets/([^/]+)/info/",
                 lambda m, q: (200, {**by_id[m[2]], "metadata": metadata[m[2]]}) if m[2] in by_id else (404, {}))
    server.route(r"/api/assets/([^/]+)/", lambda m, q: (200, metadata[m[1]]) if m[1] in metadata else (404, {}))
    server.route(r"/api/assets/([^/]+)/download/", lambda m, q: (302, f"{server.url}/blobs/{m[1]}"))

    services.patchseq_csv = out_dir / "patchseq_metadata.csv"
    pd.DataFrame({"cell_specimen_id": seq["specimen_id"], "corresponding_AIT2.3.1_alias": seq["label"].map(TTYPE),
                  "dendrite_type": seq["label"].map(lambda c: "spiny" if c == "Excitatory" else "aspiny")}).to_csv(
        services.patchseq_csv, index=False)  # the real file's column names (ipfx's shipped metadata)
    return services


def write_fixture_cells(out_dir: Path, n_cells: int, seed: int, defect_fraction: float = 0.0):
    """A synthetic cohort written in the real layouts, seq files with the extras of real MIES files."""
    from sts.synth import make_cohort, write_cell

    cohort = make_cohort(n_cells, seed, defect_fraction).drop_duplicates("specimen_id").reset_index(drop=True)
    nwb = {}
    for row in cohort.to_dict("records"):
        path = Path(out_dir) / f"{row['specimen_id']}.nwb"
        write_cell(row, path)
        if row["dataset"] == "seq" and row["defect"] != "corrupt_file":
            add_mies_extras(path, int(row["cell_seed"]))
        nwb[row["specimen_id"]] = path
    return cohort, nwb
