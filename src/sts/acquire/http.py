"""HTTP downloads that survive real networks: retries, resume, verification, atomic rename.

``download(url, dest)`` writes ``dest`` only once the whole file has arrived and passed the
size and checksum checks; until then bytes accumulate in ``.dest.part`` and a later call
resumes from there with a ``Range`` request. 5xx answers, timeouts and broken connections
are retried with exponential backoff; 4xx answers (404 ...) fail at once as permanent.
Every result reports the bytes that came over the wire.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import requests

log = logging.getLogger(__name__)

CHUNK = 1 << 16
RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
USER_AGENT = "sts-acquire/0.1 (+https://github.com/smilies-polito/spike-train-scalograms)"


class DownloadError(Exception):
    """A download that failed; ``permanent`` when retrying cannot help (404, bad checksum)."""

    def __init__(self, message: str, status: int | None = None, permanent: bool = False):
        super().__init__(message)
        self.status = status
        self.permanent = permanent


@dataclass
class RetryPolicy:
    retries: int = 4  # attempts after the first
    backoff_s: float = 1.0  # first wait; doubles every attempt
    timeout_s: float = 60.0  # connect and read timeout per request

    def wait(self, attempt: int) -> None:
        time.sleep(self.backoff_s * 2**attempt)


@dataclass
class DownloadResult:
    path: Path
    size: int  # bytes of the finished file
    bytes_fetched: int  # body bytes received over the wire, all attempts
    attempts: int
    resumed: bool  # started from a partial file left by an earlier call


def session() -> requests.Session:
    s = requests.Session()
    s.headers["User-Agent"] = USER_AGENT
    return s


def _transient(err: Exception) -> bool:
    return isinstance(err, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError))


def get_json(url: str, params: dict | None = None, policy: RetryPolicy = RetryPolicy(), sess=None):
    """GET ``url`` and decode JSON, retrying transient failures."""
    sess = sess or session()
    for attempt in range(policy.retries + 1):
        try:
            r = sess.get(url, params=params, timeout=policy.timeout_s)
            if r.status_code in RETRY_STATUS and attempt < policy.retries:
                log.warning("HTTP %d from %s, retry %d", r.status_code, r.url, attempt + 1)
                policy.wait(attempt)
                continue
            if r.status_code >= 400:
                raise DownloadError(f"HTTP {r.status_code} for {r.url}", r.status_code, r.status_code < 500)
            return r.json()
        except requests.RequestException as err:
            if not _transient(err) or attempt == policy.retries:
                raise DownloadError(f"{type(err).__name__} for {url}: {err}") from err
            log.warning("%s for %s, retry %d", type(err).__name__, url, attempt + 1)
            policy.wait(attempt)
    raise AssertionError("unreachable")


def file_digest(path: str | Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def part_path(dest: str | Path) -> Path:
    dest = Path(dest)
    return dest.with_name(f".{dest.name}.part")


def _total_from_headers(r: requests.Response, start: int) -> int | None:
    """Full file size from Content-Range (206) or Content-Length (200)."""
    content_range = r.headers.get("Content-Range", "")
    if "/" in content_range and not content_range.endswith("/*"):
        return int(content_range.rsplit("/", 1)[1])
    if r.status_code == 200 and "Content-Length" in r.headers:
        return int(r.headers["Content-Length"])
    return None


def download(
    url: str,
    dest: str | Path,
    expected_size: int | None = None,
    checksum: tuple[str, str] | None = None,
    policy: RetryPolicy = RetryPolicy(),
    sess=None,
) -> DownloadResult:
    """Fetch ``url`` into ``dest`` (resumable, verified, atomic).

    ``checksum`` is ``(algorithm, hexdigest)``, e.g. ``("sha256", "...")``. A size or checksum
    mismatch discards the partial file and counts as a failed attempt (the next one starts
    afresh); after the last attempt it raises a permanent DownloadError.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    sess = sess or session()
    resumed = part.exists() and part.stat().st_size > 0
    fetched = 0
    last_error: DownloadError | None = None
    mismatches = 0
    for attempt in range(policy.retries + 1):
        start = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={start}-"} if start else {}
        try:
            with sess.get(url, headers=headers, stream=True, timeout=policy.timeout_s) as r:
                if r.status_code == 416 and start:  # nothing left to send: the part is complete
                    total = expected_size or start
                elif r.status_code in RETRY_STATUS:
                    raise DownloadError(f"HTTP {r.status_code} for {url}", r.status_code)
                elif r.status_code >= 400:
                    raise DownloadError(f"HTTP {r.status_code} for {url}", r.status_code, permanent=True)
                else:
                    append = r.status_code == 206 and r.headers.get("Content-Range", "").startswith(f"bytes {start}-")
                    total = _total_from_headers(r, start)
                    with open(part, "ab" if append else "wb") as fh:
                        for block in r.iter_content(CHUNK):
                            fh.write(block)
                            fetched += len(block)
            size = part.stat().st_size
            want = expected_size if expected_size is not None else total
            if want is not None and size != want:
                raise DownloadError(f"size mismatch for {url}: got {size} bytes, expected {want}", permanent=True)
            if checksum is not None:
                algorithm, digest = checksum
                got = file_digest(part, algorithm)
                if got != digest.lower():
                    raise DownloadError(f"{algorithm} mismatch for {url}: got {got}, expected {digest}", permanent=True)
            os.replace(part, dest)
            return DownloadResult(dest, size, fetched, attempt + 1, resumed)
        except DownloadError as err:
            last_error = err
            if err.status is not None and err.permanent:  # 404 and friends: retrying cannot help
                raise
            if err.permanent:  # bad size or checksum: one fresh try, then give up
                part.unlink(missing_ok=True)
                mismatches += 1
                if mismatches > 1:
                    raise
        except requests.RequestException as err:
            if not _transient(err):
                raise DownloadError(f"{type(err).__name__} for {url}: {err}") from err
            last_error = DownloadError(f"{type(err).__name__} for {url}: {err}")
        if attempt < policy.retries:
            log.warning("%s; retry %d of %d", last_error, attempt + 1, policy.retries)
            policy.wait(attempt)
    assert last_error is not None
    raise last_error
