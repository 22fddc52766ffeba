"""Warm start for per-cell commands: pay the imports once per machine, not once per cell.

A per-cell job (``sts select-sweeps``, ``sts scalogram``, ``sts ep-features``, ``sts synth``) spends most of
its time starting Python and importing numpy, h5py (and ipfx: ~1 s). With thousands of
cells, that dominates. The first such command on a machine starts a small server
(``python -m sts.warm SOCKET``) that imports those modules once and listens on a Unix
socket; each later command is a thin client that sends its arguments, working directory,
environment and its stdin/stdout/stderr file descriptors, and the server forks a child that
runs the command exactly as the client would have (same ``sts.cli.main``), writing to the
client's own stdout/stderr (so to the job's log). The client exits with the child's status.

Semantics kept:
- Killing the client (Snakemake cancelling a job, ``kill -9`` of the run) kills the child:
  the server watches the connection and sends SIGKILL to the child when it closes.
- Code changes never reach a stale server: the socket's name hashes the Python executable
  and the size and mtime of every file of the ``sts`` package.
- Anything unusual (no socket support, server cannot start within STARTUP_S) falls back to
  running in-process; ``STS_WARM=0`` disables the server altogether.
The server is single-threaded (forking from a threaded process is unsafe), exits after
IDLE_S seconds without work, and holds a lock file so that only one runs per socket.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
from pathlib import Path

COMMANDS = ("select-sweeps", "scalogram", "ep-features", "synth")
PRELOAD = (
    "sts.sweeps", "sts.scalogram_step", "sts.baseline.features_cli", "sts.baseline.features",
    "ipfx.spike_train_features", "ipfx.feature_extractor", "ipfx.stimulus_protocol_analysis", "ipfx.sweep",
    "sts.synth_cli", "sts.synth", "sts.synth.write_allen_v1", "sts.synth.write_mies_nwb2",
)  # fmt: skip
IDLE_S = float(os.environ.get("STS_WARM_IDLE_S", "120"))
STARTUP_S = 60.0
_EXIT = struct.Struct("!i")
_ACK = b"+"


def enabled(argv: list[str]) -> bool:
    return bool(argv) and argv[0] in COMMANDS and os.environ.get("STS_WARM", "1") != "0" and hasattr(socket, "AF_UNIX")


def socket_path() -> Path:
    """Per user, interpreter and exact package source: a code change gets a fresh server."""
    base = os.environ.get("STS_WARM_DIR") or os.environ.get("TMPDIR") or "/tmp"
    return Path(base) / f"sts-warm-{os.getuid()}-{source_hash(Path(__file__).resolve().parent)}.sock"


def source_hash(package: Path) -> str:
    """Hash of the interpreter and of every .py file's path, size and mtime under ``package``."""
    h = hashlib.sha1(sys.executable.encode())
    for root, dirs, files in os.walk(package):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                st = os.stat(os.path.join(root, name))
                h.update(f"{root}/{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------- client


def run_remote(argv: list[str]) -> int | None:
    """Run ``sts ARGV`` in the warm server; None if it cannot be reached (run locally then).

    The server acknowledges each command once its child is forked: a connection that closes
    before that (e.g. a server just ending its idle time) is retried on a fresh server; one
    that closes after it lost a running command, and the job fails with that message.
    """
    request = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
    path = socket_path()
    for _attempt in range(3):
        conn = _connect(path)
        if conn is None:
            _start_server(path)
            deadline = time.monotonic() + STARTUP_S
            while conn is None and time.monotonic() < deadline:
                time.sleep(0.02)
                conn = _connect(path)
            if conn is None:
                return None
        with conn:
            try:
                socket.send_fds(conn, [_EXIT.pack(len(request)) + request], _stdio())
            except OSError:
                continue
            if _recv_exactly(conn, 1) != _ACK:
                continue  # the command never started
            status = _recv_exactly(conn, _EXIT.size)
        if status is None:  # the server died while the command ran: fail the job, say so
            print(f"sts: the warm server ({path}) lost the command; rerun, or set STS_WARM=0", file=sys.stderr)
            return 1
        return _EXIT.unpack(status)[0]
    return None


def _stdio() -> list[int]:
    """This process's stdin, stdout, stderr (/dev/null for a closed one)."""
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            fds.append(os.open(os.devnull, os.O_RDWR))
    return fds


def _connect(path: Path) -> socket.socket | None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
        return s
    except OSError:
        s.close()
        return None


def _start_server(path: Path) -> None:
    import subprocess

    log = open(path.with_suffix(".log"), "ab")
    subprocess.Popen(
        [sys.executable, "-m", "sts.warm", str(path)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True,
    )  # fmt: skip
    log.close()


def _recv_exactly(conn: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        try:
            chunk = conn.recv(n - len(buf))
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    return buf


# ---------------------------------------------------------------- server


def serve(path: Path) -> None:
    lock = open(path.with_suffix(".lock"), "a+")  # not "w": the owner's pid must survive
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another server owns this socket
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # clean up below
    from sts.cli import single_threaded

    single_threaded()
    for module in PRELOAD:
        __import__(module)
    import gc

    gc.freeze()  # children do not copy the preloaded heap when they collect
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(64)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}  # pid -> client connection
    idle_since = time.monotonic()
    try:
        while children or time.monotonic() - idle_since < IDLE_S:
            for key, _ in sel.select(timeout=0.02):
                if key.fileobj is listener:
                    conn, _ = listener.accept()
                    pid = _fork_command(conn, listener)
                    if pid:
                        children[pid] = conn
                        sel.register(conn, selectors.EVENT_READ, pid)
                else:  # a client went away (killed): kill its command
                    try:
                        gone = not key.fileobj.recv(1, socket.MSG_PEEK)
                    except OSError:
                        gone = True
                    if gone:
                        _kill(key.data)
            for pid, conn in list(children.items()):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    code = os.waitstatus_to_exitcode(status)
                    sel.unregister(conn)
                    try:
                        conn.sendall(_EXIT.pack(code if code >= 0 else 128 - code))
                    except OSError:
                        pass
                    conn.close()
                    del children[pid]
                    idle_since = time.monotonic()
    finally:
        path.unlink(missing_ok=True)  # no new clients; queued ones get no ack and retry
        listener.close()
        for pid in children:
            _kill(pid)


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _fork_command(conn: socket.socket, listener: socket.socket) -> int | None:
    """Read one request and fork its child; return the child's pid (None on a bad request)."""
    conn.settimeout(10)
    try:
        head, fds, _, _ = socket.recv_fds(conn, _EXIT.size, 3)
        body = _recv_exactly(conn, _EXIT.unpack(head)[0]) if len(head) == _EXIT.size else None
    except OSError:
        head, fds, body = b"", [], None
    if body is None or len(fds) != 3:
        for fd in fds:
            os.close(fd)
        conn.close()
        return None
    conn.setblocking(True)
    request = json.loads(body)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        for fd in fds:
            os.close(fd)
        try:
            conn.sendall(_ACK)
        except OSError:
            pass  # the client is gone: the main loop sees it and kills the command
        return pid
    code = 1
    try:  # the child: become the client's command
        os.setpgid(0, 0)
        listener.close()
        conn.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        sys.argv = ["sts", *request["argv"]]
        from sts.cli import main

        code = main(request["argv"], warm=False)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
