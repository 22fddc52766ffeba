"""The warm server of ``sts.warm.client``: one per user, code version and placement; see ``sts.warm.client`` for what it
guarantees. Single-threaded: a selector reads every request and watches every client and command, and a
forked child runs each command (``python -m sts.warm.server SOCKET``, started by the first client)."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import resource
import selectors
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Callable

from sts.warm.client import ACK, INT, NAK, RLIMITS, Unavailable, minimal_env, open_private, peer_uid, per_cell, socket_path

PRELOAD = (
    "sts.prep.sweeps", "sts.prep.scalogram_file", "sts.baseline.feature_files", "sts.baseline.features",
    "ipfx.spike_train_features", "ipfx.feature_extractor", "ipfx.stimulus_protocol_analysis", "ipfx.sweep",
    "sts.synth.cli", "sts.synth", "sts.synth.write_allen_v1", "sts.synth.write_mies_nwb2",
)  # fmt: skip
IDLE_S = float(os.environ.get("STS_WARM_IDLE_S", "120"))
REQUEST_S = 30.0  # a connection must have sent its whole request by then
MAX_REQUEST = 1 << 20
FDS_PER_CLIENT = 5  # its connection, the three descriptors it sends, its command's pidfd
PAUSE_S = 0.1  # out of descriptors and none in reserve: the listener is not watched for this long


def max_clients() -> int:
    """Clients served at once; one more is turned away at once (it runs in-process). What the descriptor limit
    allows, at most 256; ``STS_WARM_MAX_CLIENTS`` overrides it (tests)."""
    if os.environ.get("STS_WARM_MAX_CLIENTS", "").isdigit():
        return max(1, int(os.environ["STS_WARM_MAX_CLIENTS"]))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return 256
    return max(1, min(256, (soft - 16) // FDS_PER_CLIENT))


class _Client:
    def __init__(self, conn: socket.socket):
        self.conn, self.deadline, self.data, self.fds, self.pid = conn, time.monotonic() + REQUEST_S, b"", [], None


class _BadRequest(Exception):
    pass


def serve(path: Path, command: Callable[..., int]) -> int:
    """Serve on ``path`` until IDLE_S without work; 0 if another server owns it, 1 if this one cannot.
    ``command(argv, warm=False)`` runs one request (``sts.cli.main``, which starts this server)."""
    os.umask(0o077)
    if path != socket_path():  # checks the directory too; another code version must not serve this name
        print(f"sts.warm: {path} is not this code's socket ({socket_path()})", file=sys.stderr)
        return 1
    lock = open_private(path.with_suffix(".lock"), os.O_RDWR)
    deadline = time.monotonic() + 1.0  # a server that is shutting down holds the lock a moment longer
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if path.exists() or time.monotonic() > deadline:
                return 0
            time.sleep(0.01)
    os.ftruncate(lock, 0)
    os.write(lock, f"{os.getpid()}\n".encode())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # clean up below
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o600)
    listener.listen(64)  # clients queue here while the imports run
    server = _Server(listener, lock, command)
    try:
        server.preload()
        server.loop()
    finally:
        path.unlink(missing_ok=True)  # no new clients; queued ones get no answer and retry
        listener.close()
        for pid in server.running:
            _kill(pid)
    return 0


class _Server:
    def __init__(self, listener: socket.socket, lock: int, command: Callable[..., int]):
        self.listener, self.lock, self.command = listener, lock, command
        self.sel = selectors.DefaultSelector()
        self.sel.register(listener, selectors.EVENT_READ)
        listener.setblocking(False)
        self.clients: set[_Client] = set()
        self.running: dict[int, tuple[_Client, int | None]] = {}  # pid -> client, pidfd
        self.max_clients = max_clients()
        # Freed to accept (and turn away) a connection when the descriptors run out: a pending one keeps the
        # listener readable, so the loop would spin and its client wait until some descriptor freed.
        self.reserve: int | None = _reserve()
        self.paused_until: float | None = None  # the listener is unregistered until then

    def preload(self) -> None:
        import ctypes

        from sts.io.threads import single_threaded

        self.prctl = ctypes.CDLL(None, use_errno=True).prctl
        single_threaded()
        for module in PRELOAD:
            try:
                __import__(module)
            except Exception as exc:  # the command imports it itself, and says what is wrong
                print(f"sts.warm: cannot preload {module}: {exc!r}", file=sys.stderr)
        import gc

        gc.freeze()  # children do not copy the preloaded heap when they collect

    def loop(self) -> None:
        idle_since = time.monotonic()
        while self.clients or time.monotonic() - idle_since < IDLE_S:
            polling = any(pidfd is None for _, pidfd in self.running.values())
            timeout = 0.02 if polling else 1.0
            if self.paused_until is not None:
                timeout = min(timeout, max(self.paused_until - time.monotonic(), 0.0))
            for key, _ in self.sel.select(timeout=timeout):
                if key.fileobj is self.listener:
                    self.accept()
                elif isinstance(key.data, _Client):
                    try:
                        self.readable(key.data)
                    except Exception as exc:  # anything wrong with one request ends that request only
                        self.answer(key.data, NAK + str(exc).encode()[:200])
                        self.drop(key.data)
            if self.reap():
                idle_since = time.monotonic()
            for client in [c for c in self.clients if c.pid is None and c.deadline < time.monotonic()]:
                self.drop(client)  # silent
            if self.paused_until is not None and time.monotonic() >= self.paused_until:
                self.paused_until = None
                self.sel.register(self.listener, selectors.EVENT_READ)

    def accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError as exc:  # none left, or out of descriptors
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    self.turn_away()
                return
            try:
                ours = peer_uid(conn) == os.getuid()
            except OSError:
                ours = False
            if not ours:
                conn.close()  # another user's: unread
                continue
            if len(self.clients) >= self.max_clients:
                _refuse(conn, f"busy ({self.max_clients} clients)")
                continue
            conn.setblocking(False)
            client = _Client(conn)
            self.clients.add(client)
            self.sel.register(conn, selectors.EVENT_READ, client)

    def turn_away(self) -> None:
        """Out of descriptors: accept the pending connection with the reserve one and refuse it (its client runs
        in-process at once), then take the reserve back. Without a reserve, stop watching the listener for
        PAUSE_S instead of spinning on it."""
        if self.reserve is not None:
            os.close(self.reserve)
            self.reserve = None
            try:
                conn, _ = self.listener.accept()
            except OSError:
                conn = None
            if conn is not None:
                _refuse(conn, "out of file descriptors")
            self.reserve = _reserve()
            if conn is not None:
                return
        if self.reserve is None:
            self.reserve = _reserve()
        self.sel.unregister(self.listener)
        self.paused_until = time.monotonic() + PAUSE_S

    def readable(self, client: _Client) -> None:
        if client.pid is not None:  # running: the only news can be that the client went away
            try:
                gone = not client.conn.recv(4096)
            except BlockingIOError:
                return
            except OSError:
                gone = True
            if gone:
                _kill(client.pid)
                self.sel.unregister(client.conn)
            return
        while len(client.data) < INT.size or len(client.data) < INT.size + INT.unpack_from(client.data)[0]:
            try:
                data, fds, flags, _ = socket.recv_fds(client.conn, 65536, 3)
            except BlockingIOError:
                return
            client.fds += fds
            if not data:
                raise _BadRequest("closed before the end of its request")
            if len(client.fds) > 3 or flags & socket.MSG_CTRUNC:
                raise _BadRequest("too many file descriptors")
            client.data += data
            if len(client.data) >= INT.size and not 0 < INT.unpack_from(client.data)[0] <= MAX_REQUEST:
                raise _BadRequest("bad length")
        if len(client.data) != INT.size + INT.unpack_from(client.data)[0] or len(client.fds) != 3:
            raise _BadRequest("bad framing")
        self.fork(client, _parse(client.data[INT.size :]))

    def fork(self, client: _Client, request: dict) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        server = os.getpid()
        pid = os.fork()
        if pid == 0:
            _become_command(client, request, lambda: self.close_all_but(client), server, self.prctl, self.command)
        try:
            os.setpgid(pid, pid)  # the child does it too: whoever comes first
        except OSError:
            pass
        for fd in client.fds:
            os.close(fd)
        client.fds, client.pid = [], pid
        try:
            pidfd = os.pidfd_open(pid)
            self.sel.register(pidfd, selectors.EVENT_READ, pid)  # wakes the loop when the command ends
        except (AttributeError, OSError):
            pidfd = None
        self.running[pid] = client, pidfd

    def close_all_but(self, client: _Client) -> None:
        """In a child: close the server's descriptors, so that only the server holds them."""
        self.sel.close()
        self.listener.close()
        os.close(self.lock)
        if self.reserve is not None:
            os.close(self.reserve)
        for other in self.clients - {client}:
            other.conn.close()
            for fd in other.fds:
                os.close(fd)
        for _, pidfd in self.running.values():
            if pidfd is not None:
                os.close(pidfd)

    def reap(self) -> bool:
        reaped = False
        while self.running:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            if pid not in self.running:
                continue
            client, pidfd = self.running.pop(pid)
            if pidfd is not None:
                self.sel.unregister(pidfd)
                os.close(pidfd)
            code = os.waitstatus_to_exitcode(status)
            self.answer(client, INT.pack(code if code >= 0 else 128 - code))
            self.drop(client)
            reaped = True
        return reaped

    def answer(self, client: _Client, data: bytes) -> None:
        try:
            client.conn.send(data)
        except OSError:
            pass  # the client is gone

    def drop(self, client: _Client) -> None:
        if client.pid in self.running:
            _kill(client.pid)  # reaped later
        if client in self.clients:
            self.clients.discard(client)
            try:
                self.sel.unregister(client.conn)
            except KeyError:
                pass  # a client that went away while its command ran
            client.conn.close()
            for fd in client.fds:
                os.close(fd)


def _reserve() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def _refuse(conn: socket.socket, why: str) -> None:
    """Close a connection unread; a client of ours is told why first, and runs its command in-process."""
    try:
        if peer_uid(conn) == os.getuid():
            conn.setblocking(False)
            conn.send(NAK + f"server {why}".encode())
    except OSError:
        pass
    conn.close()


def _parse(body: bytes) -> dict:
    try:
        r = json.loads(body)
        ok = (
            isinstance(r["argv"], list) and all(isinstance(a, str) for a in r["argv"]) and isinstance(r["cwd"], str)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in r["env"].items())
            and isinstance(r["umask"], int) and isinstance(r["nice"], int)
            and all(k in RLIMITS and [type(x) for x in v] == [int, int] for k, v in r["limits"].items())
            and all(isinstance(c, int) for c in r["cpus"])
        )  # fmt: skip
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise _BadRequest(f"malformed request ({exc})") from None
    if not ok:
        raise _BadRequest("malformed request")
    if not per_cell(r["argv"]):
        raise _BadRequest(f"not a per-cell command: {' '.join(r['argv'][:2])}")
    return r


def _kill(pid: int) -> None:
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _become_command(client: _Client, request: dict, close_server, server: int, prctl, command) -> None:
    """The forked child: take on the caller's state, acknowledge, run the command, exit with its status."""
    code = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        if prctl(1, int(signal.SIGKILL), 0, 0, 0) != 0 or os.getppid() != server:  # PR_SET_PDEATHSIG
            os._exit(1)  # the server is already gone
        os.setpgid(0, 0)
        close_server()
        conn = client.conn
        conn.setblocking(True)
        try:
            _take_on(request)
        except (OSError, ValueError) as exc:  # e.g. a limit above the server's hard one
            conn.sendall(NAK + f"cannot take on the caller's state: {exc}".encode()[:200])
            os._exit(0)
        for target, fd in enumerate(client.fds):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(minimal_env(request["env"]))
        time.tzset()
        try:
            conn.sendall(ACK)
        except OSError:
            os._exit(1)  # the client gave up or went away: nothing to run for
        conn.close()
        sys.argv = ["sts", *request["argv"]]
        try:
            code = command(request["argv"], warm=False)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _take_on(request: dict) -> None:
    os.umask(request["umask"] & 0o777)
    if os.getpriority(os.PRIO_PROCESS, 0) != request["nice"]:
        os.setpriority(os.PRIO_PROCESS, 0, request["nice"])
    for name, limits in request["limits"].items():
        if list(resource.getrlimit(getattr(resource, name))) != limits:
            resource.setrlimit(getattr(resource, name), tuple(limits))
    if request["cpus"] and set(request["cpus"]) != os.sched_getaffinity(0):
        os.sched_setaffinity(0, request["cpus"])
    os.chdir(request["cwd"])


def main(socket: str, command: Callable[..., int]) -> int | str:
    """The server process (``python -m sts.cli --warm-server SOCKET``): its exit status or message."""
    try:
        return serve(Path(socket), command)
    except Unavailable as exc:
        return f"sts.warm: {exc}"
