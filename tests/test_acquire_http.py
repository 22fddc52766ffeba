"""sts.acquire.http against the loopback server: retries, resume, verification, atomic rename."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from fakeserver import FakeServer
from sts.acquire.http import CHUNK, DownloadError, RetryPolicy, checked_url, download, get_json, part_path

FAST = RetryPolicy(retries=3, backoff_s=0.01, timeout_s=10)


@pytest.fixture(scope="module")
def server():
    srv = FakeServer().start()
    srv.files["/f.bin"] = np.random.default_rng(0).bytes(300_000)
    srv.route(r"/j", lambda m, q: (200, {"ok": True}))
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def clean(server):
    server.reset_counters()
    server.faults.clear()


def test_500_then_200_is_retried(server, tmp_path):
    server.faults["/f.bin"] = ["500"]
    result = download(f"{server.url}/f.bin", tmp_path / "f.bin", policy=FAST)
    assert result.attempts == 2 and server.requests["/f.bin"] == 2
    assert (tmp_path / "f.bin").read_bytes() == server.files["/f.bin"]
    server.faults["/j"] = ["500", "500"]
    assert get_json(f"{server.url}/j", policy=FAST) == {"ok": True} and server.requests["/j"] == 3


def test_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    data = server.files["/f.bin"]
    server.faults["/f.bin"] = ["truncate"]  # connection dies after half the body
    result = download(f"{server.url}/f.bin", tmp_path / "f.bin", policy=FAST)
    assert (tmp_path / "f.bin").read_bytes() == data
    first, second = server.ranges["/f.bin"]
    resumed_at = int(second.removeprefix("bytes=").rstrip("-"))
    # Resumed where the kept bytes end (a broken read may lose at most the chunk in flight).
    assert first == "truncate" and len(data) // 2 - CHUNK <= resumed_at <= len(data) // 2
    assert result.bytes_fetched == len(data)
    assert server.bytes_sent["/f.bin"] == len(data) // 2 + (len(data) - resumed_at)


def test_partial_file_from_a_killed_run_is_resumed(server, tmp_path):
    data = server.files["/f.bin"]
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(data[:123_456])
    result = download(f"{server.url}/f.bin", dest, policy=FAST)
    assert result.resumed and result.bytes_fetched == len(data) - 123_456
    assert dest.read_bytes() == data and not part_path(dest).exists()


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    data = server.files["/f.bin"]
    server.files["/norange.bin"] = data
    server.no_range.add("/norange.bin")
    dest = tmp_path / "n.bin"
    part_path(dest).write_bytes(b"stale" * 1000)
    result = download(f"{server.url}/norange.bin", dest, policy=FAST)  # 200 to a Range request
    assert dest.read_bytes() == data and result.bytes_fetched == len(data)


@pytest.mark.parametrize("expected_size", [None, 300_000])
def test_stale_partial_longer_than_the_file_is_discarded(server, tmp_path, expected_size):
    """A 416 says 'bytes */N': a partial file longer than N is not the remote file (issue 15, 7).
    Without an expected size (Allen files) the partial used to be accepted as complete."""
    data = server.files["/f.bin"]
    dest = tmp_path / "s.bin"
    part_path(dest).write_bytes(data + b"extra")  # the server answers 416 to its Range
    result = download(f"{server.url}/f.bin", dest, expected_size=expected_size, policy=FAST)
    assert dest.read_bytes() == data and not part_path(dest).exists()
    assert result.attempts == 1 and result.bytes_fetched == len(data)  # restarted at once, no backoff
    assert server.requests["/f.bin"] == 2 and server.ranges["/f.bin"] == [f"bytes={len(data) + 5}-"]


@pytest.mark.parametrize("fault", ["416", "416-bare"])
def test_416_that_does_not_give_the_partial_size_restarts(server, tmp_path, fault):
    """A 416 whose remote size differs from the partial file's (or is not given) is no proof
    that the partial file is complete: it is discarded and the file fetched afresh."""
    data = server.files["/f.bin"]
    dest = tmp_path / "d.bin"
    part_path(dest).write_bytes(data[:1000])
    server.faults["/f.bin"] = [fault]
    download(f"{server.url}/f.bin", dest, policy=FAST)
    assert dest.read_bytes() == data and server.ranges["/f.bin"] == ["bytes=1000-"]


def test_416_for_a_complete_partial_file_finishes_it(server, tmp_path):
    """Only with a checksum, which proves the bytes are the file's (without one: restarted, below)."""
    data = server.files["/f.bin"]
    dest = tmp_path / "k.bin"
    part_path(dest).write_bytes(data)  # a run killed between the last byte and the rename
    result = download(f"{server.url}/f.bin", dest, checksum=("sha256", hashlib.sha256(data).hexdigest()), policy=FAST)
    assert dest.read_bytes() == data and result.bytes_fetched == 0 and server.requests["/f.bin"] == 1


@pytest.mark.parametrize("url, why", [
    ("http://127.0.0.1:8000@evil.example/x", "user info"),  # what '@evil.example/x' appended to the base gives
    ("http://user:pw@127.0.0.1:8000/x", "user info"),
    ("http://evil.example:8000/x", "not to the API's"),
    ("http://127.0.0.1:8001/x", "not to the API's"),
    ("https://127.0.0.1:8000/x", "not to the API's"),
    ("ftp://127.0.0.1:8000/x", "scheme"),
    ("http://127.0.0.1:8000\\@evil.example/x", "backslash"),  # urllib and urllib3 disagree on the host
    ("http://127.0.0.1:8000/x y", "whitespace"),
    ("http://127.0.0.1:8000/x\n", "whitespace"),
    ("http://127.0.0.1:notaport/x", "unparsable"),
])
def test_checked_url_refuses_links_to_elsewhere(url, why):
    with pytest.raises(DownloadError, match=why) as err:
        checked_url(url, "http://127.0.0.1:8000", "specimen 123: download_link")
    assert err.value.permanent and str(err.value).startswith("specimen 123: ")


def test_checked_url_keeps_links_to_the_api_and_refuses_downgrades():
    base = "https://api.brain-map.org"
    for url in (f"{base}/api/v2/well_known_file_download/1", "https://API.brain-map.org:443/x", f"{base}//x/@y"):
        assert checked_url(url, base, "specimen 1") == url
    content = "https://dandiarchive.s3.amazonaws.com/blobs/abc"  # DANDI content lives on S3
    assert checked_url(content, "https://api.dandiarchive.org/api", "specimen 1", same_host=False) == content
    with pytest.raises(DownloadError, match="plain http where the API is https"):
        checked_url("http://dandiarchive.s3.amazonaws.com/blobs/abc", "https://api.dandiarchive.org/api",
                    "specimen 1", same_host=False)


def test_checksum_and_size_mismatch_are_detected(server, tmp_path):
    data = server.files["/f.bin"]
    good = hashlib.sha256(data).hexdigest()
    dest = tmp_path / "c.bin"
    assert download(f"{server.url}/f.bin", dest, checksum=("sha256", good), policy=FAST).size == len(data)
    dest.unlink()
    with pytest.raises(DownloadError, match="sha256 mismatch") as err:
        download(f"{server.url}/f.bin", dest, checksum=("sha256", "0" * 64), policy=FAST)
    assert err.value.permanent and not dest.exists() and not part_path(dest).exists()
    assert server.requests["/f.bin"] == 3  # one good download, then one fresh retry of the bad one
    server.files["/short.bin"] = data[: len(data) // 3]  # a truncated file on the server
    with pytest.raises(DownloadError, match="size mismatch"):
        download(f"{server.url}/short.bin", dest, expected_size=len(data), policy=FAST)
    assert not dest.exists()


def test_404_fails_at_once_and_permanently(server, tmp_path):
    with pytest.raises(DownloadError) as err:
        download(f"{server.url}/missing.bin", tmp_path / "m.bin", policy=FAST)
    assert err.value.status == 404 and err.value.permanent and server.requests["/missing.bin"] == 1


def test_transient_failures_past_the_retries_keep_the_partial_file(server, tmp_path):
    dest = tmp_path / "t.bin"
    server.faults["/f.bin"] = ["truncate", "500", "500", "500"]
    with pytest.raises(DownloadError) as err:
        download(f"{server.url}/f.bin", dest, policy=FAST)
    assert not err.value.permanent and not dest.exists()
    kept = part_path(dest).stat().st_size  # kept for the next run
    assert len(server.files["/f.bin"]) // 2 - CHUNK <= kept <= len(server.files["/f.bin"]) // 2
    server.reset_counters()
    assert download(f"{server.url}/f.bin", dest, policy=FAST).bytes_fetched == len(server.files["/f.bin"]) - kept
    assert server.ranges["/f.bin"] == [f"bytes={kept}-"]


# ---------------------------------------------------------------- issue 27: redirects, body sizes, 416


@pytest.fixture
def elsewhere():
    other = FakeServer().start()
    other.files["/f.bin"] = b"not the file you asked for" * 100
    yield other
    other.stop()


def test_a_redirect_to_another_host_is_refused_before_it_is_requested(server, elsewhere, tmp_path):
    """The host rule applies to every hop, not only to the first URL (issue 27, 6)."""
    server.route(r"/moved-away", lambda m, q: (302, f"{elsewhere.url}/f.bin"))
    dest = tmp_path / "r.bin"
    with pytest.raises(DownloadError, match=r"refused URL .*127\.0\.0\.1:\d+/f\.bin.*not to the API's") as err:
        download(f"{server.url}/moved-away", dest, policy=FAST)
    assert err.value.permanent and dict(elsewhere.requests) == {}  # never asked, nothing written
    assert server.requests["/moved-away"] == 1 and not dest.exists() and not part_path(dest).exists()


def test_redirects_within_the_host_are_followed_and_bounded(server, tmp_path):
    server.route(r"/hop/(\d+)", lambda m, q: (302, f"/hop/{int(m[1]) - 1}" if int(m[1]) else "/f.bin"))
    dest = tmp_path / "h.bin"
    assert download(f"{server.url}/hop/3", dest, policy=FAST).size == len(server.files["/f.bin"])
    assert dest.read_bytes() == server.files["/f.bin"]
    with pytest.raises(DownloadError, match="more than 5 redirects") as err:
        download(f"{server.url}/hop/9", tmp_path / "loop.bin", policy=FAST)
    assert err.value.permanent and server.requests["/hop/9"] == 1  # not retried


def test_a_redirect_with_a_host_rule_of_the_caller(server, elsewhere, tmp_path):
    """DANDI content lives on another host than its API: any host, but never user info or a downgrade."""
    from sts.acquire.http import HostRule

    server.route(r"/to-s3", lambda m, q: (302, f"{elsewhere.url}/f.bin"))
    server.route(r"/to-user", lambda m, q: (302, f"http://x@{elsewhere.url.removeprefix('http://')}/f.bin"))
    anywhere = HostRule(server.url, same_host=False)
    dest = tmp_path / "s3.bin"
    download(f"{server.url}/to-s3", dest, policy=FAST, hosts=anywhere)
    assert dest.read_bytes() == elsewhere.files["/f.bin"]
    elsewhere.reset_counters()
    with pytest.raises(DownloadError, match="user info"):
        download(f"{server.url}/to-user", tmp_path / "u.bin", policy=FAST, hosts=anywhere)
    with pytest.raises(DownloadError, match="plain http where the API is https"):
        download(f"{server.url}/to-s3", tmp_path / "d.bin", policy=FAST, hosts=HostRule("https://api.example",
                                                                                         same_host=False))
    assert dict(elsewhere.requests) == {}


@pytest.mark.parametrize("expected_size", [100_000, None])
def test_a_body_longer_than_expected_is_cut_at_once(server, tmp_path, expected_size):
    """64 MiB sent without a length: reading stops past the expected size (or past max_bytes when
    nothing is expected), the partial file is deleted and the download fails at once, not retried."""
    server.streams["/endless"] = 1024
    dest = tmp_path / "e.bin"
    limit = expected_size or 200_000
    with pytest.raises(DownloadError, match=f"sends more than {limit} bytes") as err:
        kw = {"expected_size": expected_size} if expected_size else {"max_bytes": limit}
        download(f"{server.url}/endless", dest, policy=FAST, **kw)
    assert err.value.permanent and server.requests["/endless"] == 1
    assert not dest.exists() and not part_path(dest).exists()
    # What the server managed to push into the socket buffers before the client hung up, not 64 MiB.
    assert server.bytes_sent["/endless"] < 24 << 20


def test_a_resumed_body_longer_than_announced_is_cut(server, tmp_path):
    data = server.files["/f.bin"]
    dest = tmp_path / "a.bin"
    part_path(dest).write_bytes(data[:1000])
    with pytest.raises(DownloadError, match="sends more than 1000 bytes"):  # the part is already as long
        download(f"{server.url}/f.bin", dest, expected_size=1000, policy=FAST)
    assert not part_path(dest).exists()


def test_416_without_a_checksum_restarts_even_at_the_same_size(server, tmp_path):
    """A stale partial file exactly as long as the remote one is not taken for it (issue 27, 6)."""
    data = server.files["/f.bin"]
    dest = tmp_path / "z.bin"
    part_path(dest).write_bytes(bytes(len(data)))  # same size, other bytes
    result = download(f"{server.url}/f.bin", dest, policy=FAST)
    assert dest.read_bytes() == data and result.bytes_fetched == len(data)
    assert server.ranges["/f.bin"] == [f"bytes={len(data)}-"] and server.requests["/f.bin"] == 2
