"""Downloads that an API answer or a left-over file could misdirect (issue 15, item 7): https by
default, Allen download links kept on the API's host, stale partial files not taken for the file."""

from __future__ import annotations

import re

import pytest
import yaml

from conftest import REPO
from fakeserver import FakeServer
from sts.acquire.cell import Sources, acquire_cell
from sts.acquire.http import RetryPolicy, part_path
from sts.recordings import NwbReadError, open_recording

FAST = RetryPolicy(retries=2, backoff_s=0.01, timeout_s=20)
SID = "123456789"
LONG_SQUARE = {"sweep_number": 40, "stimulus_name": "Long Square", "stimulus_absolute_amplitude": 110.0,
               "num_spikes": 4, "workflow_state": "auto_passed"}


def test_allen_api_is_https_by_default(monkeypatch, tmp_path):
    from sts.cli import main
    from sts.settings import ACQUIRE_DEFAULTS

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    seen = {}
    monkeypatch.setattr("sts.acquire.cell.acquire_cell", lambda sid, ds, out, rep, src, *a: seen.setdefault("src", src))
    main(["acquire", "cell", SID, str(tmp_path / "x.nwb"), "--report", str(tmp_path / "x.json"), "--dataset", "clamp"],
         warm=False)
    defaults = {
        "schema": schema["properties"]["acquire"]["properties"]["allen_api"]["default"],
        "ACQUIRE_DEFAULTS": ACQUIRE_DEFAULTS["allen_api"],
        "Sources": Sources().allen_api,
        "sts acquire cell": seen["src"].allen_api,
        "config/paper.yaml": paper["acquire"]["allen_api"],
    }
    assert set(defaults.values()) == {"https://api.brain-map.org"}, defaults


@pytest.fixture
def allen_api():
    """An Allen API serving one spiking cell whose NWB link is ``server.link`` (set by the test),
    and a second server holding a file at /file.nwb, where a crafted link would send the download."""
    api, other = FakeServer().start(), FakeServer().start()
    other.files["/file.nwb"] = b"\x89HDF\r\n\x1a\n" + bytes(1000)

    def rma(m, query):
        q = query["q"][0]
        if q.startswith("model::EphysSweep"):
            rows = [LONG_SQUARE]
        else:
            rows = [{"id": int(SID), "ephys_result": {"id": 1, "well_known_files": [
                {"id": 7, "download_link": api.link, "well_known_file_type": {"name": "NWBDownload"}}]}}]
        return 200, {"success": True, "start_row": 0, "num_rows": len(rows), "total_rows": len(rows), "msg": rows}

    api.route(r"/api/v2/data/query\.json", rma)
    yield api, other
    api.stop()
    other.stop()


@pytest.mark.parametrize("link", [
    "@{other}/file.nwb",  # appended to the base URL: 'http://127.0.0.1:<api port>@127.0.0.1:<other port>/...'
    "http://{other}/file.nwb",
    "https://{api}/file.nwb",
    "\\@{other}/file.nwb",  # urllib reads host <other>, urllib3 (requests) host <api>: refused as ambiguous
])
def test_allen_download_link_to_another_host_is_refused(allen_api, tmp_path, link):
    api, other = allen_api
    api.link = link.format(other=other.url.removeprefix("http://"), api=api.url.removeprefix("http://"))
    out = tmp_path / f"{SID}.nwb"
    rep = acquire_cell(SID, "clamp", out, tmp_path / "r.json", Sources(allen_api=api.url), FAST)
    assert dict(other.requests) == {}  # nothing was fetched from the other host
    assert rep.status == "excluded" and rep.reason.startswith(f"download failed: specimen {SID}: download_link ")
    assert "refused URL" in rep.reason and rep.bytes_fetched == 0
    with pytest.raises(NwbReadError, match=f"cell {SID}: .*refused URL"):  # the marker, not a downloaded file
        open_recording(out)
    assert not part_path(out).exists()


def test_allen_download_redirected_to_another_host_is_refused(allen_api, tmp_path):
    """The link is the API's own, but its answer redirects elsewhere: every hop meets the host rule (issue 27, 6)."""
    api, other = allen_api
    api.link = "/api/v2/well_known_file_download/7"
    api.route(r"/api/v2/well_known_file_download/7", lambda m, q: (302, f"{other.url}/file.nwb"))
    out = tmp_path / f"{SID}.nwb"
    rep = acquire_cell(SID, "clamp", out, tmp_path / "r.json", Sources(allen_api=api.url), FAST)
    assert dict(other.requests) == {} and rep.bytes_fetched == 0
    assert rep.status == "excluded" and rep.reason.startswith(f"download failed: redirect of {api.url}/api/v2/")
    assert "refused URL" in rep.reason and "not to the API's" in rep.reason
    assert api.requests["/api/v2/well_known_file_download/7"] == 1 and not part_path(out).exists()


def test_stale_partial_allen_file_longer_than_the_remote_one_is_refetched(acquire_services, tmp_path):
    """A partial file left by an earlier run, longer than the file now on the server: the 416
    answer to its resume request says the remote size, so it is discarded, not renamed into place."""
    svc = acquire_services
    c = svc.cells
    sid = c.loc[(c["dataset"] == "clamp") & (c["defect"] == ""), "specimen_id"].iloc[0]
    data = svc.nwb[sid].read_bytes()
    out = tmp_path / f"{sid}.nwb"
    part_path(out).write_bytes(data + bytes(4096))
    svc.server.reset_counters()
    rep = acquire_cell(sid, "clamp", out, tmp_path / "r.json",
                       Sources(allen_api=svc.server.url, dandi_api=f"{svc.server.url}/api"), FAST)
    assert rep.status == "ok" and out.read_bytes() == data and not part_path(out).exists()
    assert rep.bytes_fetched == len(data)
    path = svc.allen_file_path(sid)
    assert svc.server.requests[path] == 2 and re.fullmatch(r"bytes=\d+-", svc.server.ranges[path][0])
