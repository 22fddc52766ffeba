"""HTTP downloads that survive real networks: retries, resume, verification, atomic rename.

``download(url, dest)`` writes ``dest`` only once the whole file has arrived and passed the
size and checksum checks; until then bytes accumulate in ``.dest.part`` and a later call
resumes from there with a ``Range`` request. 5xx answers, timeouts and broken connections
are retried with exponential backoff; 4xx answers (404 ...) fail at once as permanent.
Every result reports the bytes that came over the wire. ``checked_url`` vets a download URL
that an API answer supplied before anything fetches it; ``download`` follows redirects itself and
vets every hop's ``Location`` with the same rule (``HostRule``) before requesting it, and stops
reading a body as soon as it outgrows the expected or announced size.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from sts.settings import AcquireSettings

log = logging.getLogger(__name__)

CHUNK = 1 << 16
RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
USER_AGENT = "sts-acquire/0.1 (+https://github.com/smilies-polito/spike-train-scalograms)"
DEFAULT_PORTS = {"http": 80, "https": 443}
UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)\s*$")  # Content-Range of a 416 answer
REDIRECTS = {301, 302, 303, 307, 308}
MAX_REDIRECTS = 5
MAX_BYTES = 16 << 30  # a body of unknown size (none expected, none announced) is cut here


class DownloadError(Exception):
    """A download that failed; ``permanent`` when retrying cannot help (404, bad checksum)."""

    def __init__(self, message: str, status: int | None = None, permanent: bool = False):
        super().__init__(message)
        self.status = status
        self.permanent = permanent


@dataclass
class RetryPolicy:
    retries: int = AcquireSettings.retries  # attempts after the first
    backoff_s: float = AcquireSettings.backoff_s  # first wait; doubles every attempt
    timeout_s: float = float(AcquireSettings.timeout_s)  # connect and read timeout per request

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


def _origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL; ValueError for anything that is not a plain one.

    Two parsers must agree: urllib's and urllib3's (the one requests connects with). They differ
    on backslashes and user info, which is how a crafted link reaches another host.
    """
    if any(ord(c) <= 32 or ord(c) == 127 or c == "\\" for c in url):
        raise ValueError("whitespace, control characters or backslashes")
    try:
        ours, theirs = urlsplit(url), parse_url(url)
        port = ours.port
    except (ValueError, LocationParseError) as err:
        raise ValueError(f"unparsable ({err})") from None
    scheme = ours.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"scheme {ours.scheme!r} (expected http or https)")
    if "@" in ours.netloc or theirs.auth is not None:
        raise ValueError(f"user info before '@' (it would send the request to {ours.hostname!r})")
    host = (ours.hostname or "").lower()
    if not host or host != (theirs.host or "").lower() or (theirs.port or port) != port:
        raise ValueError("ambiguous host")
    return scheme, host, port or DEFAULT_PORTS[scheme]


def checked_url(url: str, api_base: str, what: str, same_host: bool = True) -> str:
    """``url`` if it may be fetched on behalf of ``what`` (e.g. "specimen 123: download_link '/x'").

    Refused with a permanent DownloadError: user info (``api@evil/...`` fetches from ``evil``),
    whitespace, control characters, backslashes, a scheme other than http(s), plain http where
    the API (``api_base``) is https and, with ``same_host``, another scheme, host or port than
    the API's.
    """
    try:
        base = _origin(api_base)
    except ValueError as err:
        raise DownloadError(f"API base URL {api_base!r} is not usable: {err}", permanent=True) from None
    try:
        got = _origin(url)
    except ValueError as err:
        raise DownloadError(f"{what}: refused URL {url!r}: {err}", permanent=True) from None
    if same_host and got != base:
        raise DownloadError(f"{what}: refused URL {url!r}: it points to {got[0]}://{got[1]}:{got[2]}, "
                            f"not to the API's {base[0]}://{base[1]}:{base[2]}", permanent=True)
    if base[0] == "https" and got[0] != "https":
        raise DownloadError(f"{what}: refused URL {url!r}: plain http where the API is https", permanent=True)
    return url


@dataclass(frozen=True)
class HostRule:
    """Where a download (and every redirect it follows) may go: ``checked_url`` against ``api_base``."""

    api_base: str
    same_host: bool = True

    def check(self, url: str, what: str) -> str:
        return checked_url(url, self.api_base, what, self.same_host)


def file_digest(path: str | Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def part_path(dest: str | Path) -> Path:
    dest = Path(dest)
    return dest.with_name(f".{dest.name}.part")


def _int(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else None


def _total_from_headers(r: requests.Response, start: int) -> int | None:
    """Full file size from Content-Range (206, 416) or Content-Length (200); None if not announced."""
    content_range = r.headers.get("Content-Range", "")
    if r.status_code == 416:
        m = UNSATISFIED_RANGE.match(content_range.strip())
        return int(m[1]) if m else None
    if "/" in content_range:
        return _int(content_range.rsplit("/", 1)[1])
    if r.status_code == 200 and "Content-Length" in r.headers:
        return _int(r.headers["Content-Length"])
    return None


def _get(sess, url: str, headers: dict, policy: RetryPolicy, hosts: HostRule) -> requests.Response:
    """GET ``url`` (streamed), following at most MAX_REDIRECTS redirects; each ``Location`` must pass
    ``hosts`` before it is requested, so a refused hop costs no request to it and no byte of a body."""
    first = url
    for _hop in range(MAX_REDIRECTS + 1):
        r = sess.get(url, headers=headers, stream=True, timeout=policy.timeout_s, allow_redirects=False)
        if r.status_code not in REDIRECTS:
            return r
        location = r.headers.get("Location", "")
        r.close()
        if not location:
            raise DownloadError(f"HTTP {r.status_code} without a Location for {url}", r.status_code, permanent=True)
        try:
            target = urljoin(url, location)
        except ValueError:
            target = location  # checked_url says why it is unusable
        try:
            hosts.check(target, f"redirect of {first} (HTTP {r.status_code} from {url})")
        except DownloadError as err:  # with the status: not retried
            raise DownloadError(str(err), r.status_code, permanent=True) from None
        url = target
    raise DownloadError(f"more than {MAX_REDIRECTS} redirects for {first}", r.status_code, permanent=True)


def download(
    url: str,
    dest: str | Path,
    expected_size: int | None = None,
    checksum: tuple[str, str] | None = None,
    policy: RetryPolicy = RetryPolicy(),
    sess=None,
    hosts: HostRule | None = None,
    max_bytes: int = MAX_BYTES,
) -> DownloadResult:
    """Fetch ``url`` into ``dest`` (resumable, verified, atomic).

    ``checksum`` is ``(algorithm, hexdigest)``, e.g. ``("sha256", "...")``. A size or checksum
    mismatch discards the partial file and counts as a failed attempt (the next one starts
    afresh); after the last attempt it raises a permanent DownloadError. Without
    ``expected_size`` the size the server announces is checked.

    Redirects are followed by hand (MAX_REDIRECTS at most), each target checked with ``hosts``
    (default: the scheme, host and port of ``url`` itself) before it is requested; a refused one
    raises a permanent DownloadError and nothing is written. A body longer than ``expected_size``,
    else than the size the server announced, else than ``max_bytes``, is cut as soon as it
    outgrows it: the partial file is deleted and a permanent DownloadError raised at once.

    A 416 answer to a resume request completes the partial file only with a ``checksum`` (which
    then verifies it) and when its ``Content-Range: bytes */N`` gives exactly the partial file's
    size; otherwise (a stale part of another file of the same size cannot be told apart) the
    partial file is discarded and the download restarts from zero.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    sess = sess or session()
    hosts = hosts or HostRule(url)
    resumed = part.exists() and part.stat().st_size > 0
    fetched = 0
    last_error: DownloadError | None = None
    mismatches = 0
    for attempt in range(policy.retries + 1):
        try:
            while True:
                start = part.stat().st_size if part.exists() else 0
                headers = {"Range": f"bytes={start}-"} if start else {}
                with _get(sess, url, headers, policy, hosts) as r:
                    if r.status_code == 416 and start:
                        # Nothing after the part's end: complete only if the remote file is exactly
                        # as long and a checksum will tell whether these are its bytes. A stale part
                        # of another file, or an answer that does not say the remote size, is thrown
                        # away and the file fetched afresh.
                        total = _total_from_headers(r, start)
                        if total != start or checksum is None:
                            log.warning("partial %s has %d bytes, the remote file %s%s: starting afresh", part,
                                        start, "an unknown size" if total is None else f"{total} bytes",
                                        "" if checksum else ", no checksum to verify it")
                            part.unlink()
                            continue
                    elif r.status_code in RETRY_STATUS:
                        raise DownloadError(f"HTTP {r.status_code} for {url}", r.status_code)
                    elif r.status_code >= 400:
                        raise DownloadError(f"HTTP {r.status_code} for {url}", r.status_code, permanent=True)
                    else:
                        append = r.status_code == 206 and r.headers.get("Content-Range", "").startswith(
                            f"bytes {start}-")
                        total = _total_from_headers(r, start)
                        want = expected_size if expected_size is not None else total
                        cap = want if want is not None else max_bytes
                        size, too_long = (start if append else 0), False
                        with open(part, "ab" if append else "wb") as fh:
                            for block in r.iter_content(CHUNK):
                                too_long = size + len(block) > cap
                                if too_long:  # stop reading at once, not after the whole body
                                    break
                                fh.write(block)
                                size += len(block)
                                fetched += len(block)
                        if too_long:
                            part.unlink()
                            what = ("expected" if expected_size is not None
                                    else "announced by the server" if total is not None else "the most accepted")
                            raise DownloadError(f"{url} sends more than {cap} bytes ({what}): stopped, nothing kept",
                                                r.status_code, permanent=True)
                break
            size = part.stat().st_size
            want = expected_size if expected_size is not None else total
            if want is None:
                log.warning("%s: no expected size and none announced by the server; size unverified", url)
            elif size != want:
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
