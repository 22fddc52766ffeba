"""Loopback HTTP server (127.0.0.1 only) that answers like the real services the pipeline uses.

* Allen Brain Map RMA API: ``/api/v2/data/query.json?q=model::...`` (ApiCellTypesSpecimenDetail,
  EphysSweep, Specimen with its NWBDownload well-known file) and
  ``/api/v2/well_known_file_download/<id>``.
* DANDI API: ``/server-info``, ``/api/info/``, ``/api/dandisets/<id>/``, paginated
  ``.../versions/<v>/assets/``, ``.../assets/<asset>/info/``, ``/api/assets/<asset>/`` (metadata
  with contentUrl, contentSize, digest), ``/api/assets/<asset>/download/`` -> 302 to ``/blobs/<asset>``.
* Files with HTTP Range support (206 / Content-Range, 416), HEAD, and per-path counters of
  requests and body bytes sent.
* Fault injection per path, consumed one per request: ``"500"``, ``"404"``, ``"truncate"``
  (announces the full length, sends half the body, closes the connection), ``"416"`` (range not
  satisfiable, whatever was asked, with ``Content-Range: bytes */<size>``), ``"416-bare"`` (the same
  without Content-Range), ``"pass"`` (none).
* Endless bodies: ``streams[path] = n`` sends ``n`` blocks of 64 KiB, chunked, without announcing a
  length (the bytes the client took are counted as they go).
"""

from __future__ import annotations

import json
import re
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # clients that drop connections are expected
        pass


class FakeServer:
    def __init__(self):
        self.files: dict[str, bytes] = {}  # path -> content
        self.routes: dict[str, object] = {}  # path -> callable(query) -> JSON-able, or a regex route list
        self.patterns: list[tuple[re.Pattern, object]] = []
        self.faults: dict[str, list[str]] = defaultdict(list)
        self.no_range: set[str] = set()  # paths served as by a server without Range support
        self.streams: dict[str, int] = {}  # path -> 64 KiB blocks sent chunked, no length announced
        self.requests: dict[str, int] = defaultdict(int)
        self.bytes_sent: dict[str, int] = defaultdict(int)
        self.ranges: dict[str, list[str]] = defaultdict(list)
        self.lock = threading.Lock()
        self.httpd = _QuietServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> "FakeServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def route(self, pattern: str, func) -> None:
        """JSON route: func(match, query) -> (status, body) ; pattern is a full-path regex."""
        self.patterns.append((re.compile(pattern + r"$"), func))

    def reset_counters(self) -> None:
        with self.lock:
            self.requests.clear()
            self.bytes_sent.clear()
            self.ranges.clear()

    def count(self, path: str, sent: int = 0, rng: str | None = None) -> None:
        with self.lock:
            self.requests[path] += 1
            self.bytes_sent[path] += sent
            if rng:
                self.ranges[path].append(rng)


def _handler(server: FakeServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out as separate writes

        def log_message(self, *args):  # quiet
            pass

        def _json(self, status: int, body) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _fault(self, path: str) -> bool:
            with server.lock:
                action = server.faults[path].pop(0) if server.faults.get(path) else None
            if action == "pass":  # lets a request through: place a fault at the N-th request
                return False
            if action in ("500", "404"):
                server.count(path)
                self._json(int(action), {"detail": f"injected {action}"})
                return True
            if action in ("416", "416-bare"):
                server.count(path, 0, self.headers.get("Range"))
                self.send_response(416)
                if action == "416":
                    self.send_header("Content-Range", f"bytes */{len(server.files[path])}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return True
            if action == "truncate":
                data = server.files[path]
                half = len(data) // 2
                server.count(path, half, "truncate")
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                self.wfile.write(data[:half])
                self.wfile.flush()
                self.close_connection = True
                return True
            return False

        def _file(self, path: str) -> None:
            data = server.files[path]
            size = len(data)
            header = self.headers.get("Range") if path not in server.no_range else None
            start, end, status = 0, size - 1, 200
            if header:
                m = RANGE.match(header.strip())
                if not m:
                    self._json(400, {"detail": "bad range"})
                    return
                a, b = m.groups()
                if a == "":  # suffix range: last b bytes
                    start, end = max(size - int(b), 0), size - 1
                else:
                    start, end = int(a), min(int(b), size - 1) if b else size - 1
                if start >= size:
                    server.count(path, 0, header)
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
            body = data[start : end + 1]
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(body)))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if self.command == "HEAD":
                server.count(path, 0, "HEAD")
                return
            server.count(path, len(body), header)
            self.wfile.write(body)

        def _stream(self, path: str) -> None:
            server.count(path, 0, self.headers.get("Range"))
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            block = bytes(1 << 16)
            try:
                for _ in range(server.streams[path]):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
                    with server.lock:
                        server.bytes_sent[path] += len(block)
                self.wfile.write(b"0\r\n\r\n")
            except OSError:  # the client stopped reading
                self.close_connection = True

        def do_GET(self):
            parts = urlsplit(self.path)
            path, query = parts.path, parse_qs(parts.query)
            if self._fault(path):
                return
            if path in server.streams:
                self._stream(path)
                return
            if path in server.files:
                self._file(path)
                return
            for pattern, func in server.patterns:
                m = pattern.match(path)
                if m:
                    server.count(path)
                    status, body = func(m, query)
                    if status in (301, 302):
                        self.send_response(status)
                        self.send_header("Location", body)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                    else:
                        self._json(status, body)
                    return
            server.count(path)
            self._json(404, {"detail": f"no route {path}"})

        do_HEAD = do_GET

    return Handler


def paginate(server_url: str, path: str, items: list, query: dict, default_size: int = 100) -> dict:
    """DANDI-style page: count, next (page=2 form, so the dandi client fetches the rest), results."""
    size = int(query.get("page_size", [default_size])[0])
    page = int(query.get("page", [1])[0])
    results = items[(page - 1) * size : page * size]
    nxt = None
    if page * size < len(items):
        q = {k: v[0] for k, v in query.items()}
        q.update(page=page + 1, page_size=size)
        nxt = f"{server_url}{path}?{urlencode(q)}"
    return {"count": len(items), "next": nxt, "previous": None, "results": results}
