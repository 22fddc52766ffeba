"""Warm start for per-cell commands: pay the imports once per machine, not once per cell.

A per-cell job (``sts select-sweeps``, ``sts scalogram``, ``sts ep-features``, ``sts synth cell``) spends
most of its time starting Python and importing numpy, h5py (and ipfx: ~1 s). With thousands of
cells, that dominates. The first such command starts a small server (``python -m sts.cli --warm-server SOCKET``)
that binds a Unix socket, imports those modules once and serves; each later command is a thin
client that sends its arguments, working directory, a minimal environment, its umask, nice value,
resource limits and CPU affinity, and its stdin/stdout/stderr file descriptors. The server forks a
child that takes on all of these and runs the command exactly as the client would have (same
``sts.cli.main``), writing to the client's own stdout/stderr (so to the job's log). The client
exits with the child's status.

Guarantees (issue 15):
- Private: the socket lives in ``$STS_WARM_DIR``, else ``$XDG_RUNTIME_DIR/sts``, else
  ``${TMPDIR:-/tmp}/sts-<uid>``, a directory created 0700 and checked with lstat (a real directory,
  ours, no group/other bits); the socket is 0600; the lock and log files are opened with
  O_NOFOLLOW and must be our own regular files with one link. Both ends check the other's uid
  (SO_PEERCRED) on every connection: a client sends nothing to another user's socket, and the
  server closes another user's connection unread. Only the per-cell commands are served, and the
  command gets only the environment it needs (``minimal_env``), not the caller's secrets.
- Robust: requests are read through the server's selector with a size bound and a deadline, and
  each is handled on its own: a malformed or silent client harms only itself. A command dies with
  its client (the server kills it when the connection closes) and with the server
  (PR_SET_PDEATHSIG). A server that cannot start is noticed within STARTUP_S (the socket is bound
  before the slow imports), and the command then runs in-process, as it does whenever the
  directory or socket path (108 bytes at most) is unusable or the caller's limits cannot be applied.
  A server serving as many clients as its descriptor limit allows (``sts.warm.server.max_clients``), or out of
  descriptors, refuses further connections at once (a reserve descriptor accepts them; it never spins on a
  listener it cannot accept from): their commands run in-process (issue 27).
- Placement: the socket's name hashes the interpreter, the size and mtime of every file of the
  ``sts`` package (code changes never reach a stale server), the caller's groups, cgroups and SLURM
  job step: a command never runs with other groups or in another job's cgroup.
- SLURM: with ``SLURM_JOB_ID`` set the server is off unless ``STS_WARM=1``. The SLURM executor runs
  every job, those of a group too, as its own job step (``srun``), and SLURM kills what a step started
  when its one command ends: a server would serve one cell and cost its start-up (see the README).
  ``STS_WARM=0`` disables the server everywhere.
The server is single-threaded (forking from a threaded process is unsafe), exits after IDLE_S
seconds without work, and holds a lock file so that only one runs per socket.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import socket
import stat
import struct
import sys
import time
from pathlib import Path

COMMANDS = (("select-sweeps",), ("scalogram",), ("ep-features",), ("synth", "cell"))
STARTUP_S = 2.0  # for a new server's socket to appear; the imports come after it
ANSWER_S = 120.0  # for the first answer to a request (a new server's imports, on a slow file system)
SUN_PATH_MAX = 107  # sockaddr_un.sun_path holds 108 bytes, the final NUL included
# What a command may see of its caller's environment: locale, time zone, thread pools, HDF5, ours.
ENV_NAMES = frozenset(
    "PATH HOME USER LOGNAME LANG LANGUAGE TZ TMPDIR XDG_RUNTIME_DIR SLURM_JOB_ID SLURM_STEP_ID".split()
)
ENV_PREFIXES = ("LC_", "STS_", "HDF5_", "OMP_", "MKL_", "OPENBLAS_", "NUMEXPR_")
RLIMITS = tuple(name for name in dir(resource) if name.startswith("RLIMIT_"))
WARM_SERVER_FLAG = "--warm-server"  # python -m sts.cli --warm-server SOCKET: the server process
INT = struct.Struct("!i")  # on the wire (sts.warm.server too): request length, exit status
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
ACK, NAK = b"+", b"-"  # the server took the command on, or refused it (with why)


class Unavailable(Exception):
    """The warm server cannot be used safely here: the command runs in-process."""


def per_cell(argv: list[str]) -> bool:
    return any(tuple(argv[: len(command)]) == command for command in COMMANDS)


def enabled(argv: list[str]) -> bool:
    mode = os.environ.get("STS_WARM", "")
    if mode == "0" or not per_cell(argv) or not hasattr(socket, "SO_PEERCRED"):
        return False
    return mode == "1" or "SLURM_JOB_ID" not in os.environ  # SLURM: see the module's docstring


def minimal_env(env: dict[str, str]) -> dict[str, str]:
    """The variables a per-cell command needs (``ENV_NAMES``, ``ENV_PREFIXES``); tokens and the rest stay out."""
    return {k: v for k, v in env.items() if k in ENV_NAMES or k.startswith(ENV_PREFIXES)}


def private_dir() -> Path:
    """This user's directory for the server, created 0700; Unavailable unless it is a real directory of ours
    that nobody else can enter."""
    if os.environ.get("STS_WARM_DIR"):
        d = Path(os.environ["STS_WARM_DIR"])
    elif os.environ.get("XDG_RUNTIME_DIR", "").startswith("/"):
        d = Path(os.environ["XDG_RUNTIME_DIR"]) / "sts"
    else:
        d = Path(os.environ.get("TMPDIR") or "/tmp") / f"sts-{os.getuid()}"
    try:
        os.mkdir(d, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise Unavailable(f"cannot create {d}: {exc.strerror}") from None
    st = os.lstat(d)
    if not stat.S_ISDIR(st.st_mode):
        raise Unavailable(f"{d} is not a directory (a symlink?)")
    if st.st_uid != os.getuid():
        raise Unavailable(f"{d} belongs to uid {st.st_uid}")
    if st.st_mode & 0o077:
        raise Unavailable(f"{d} has mode {stat.S_IMODE(st.st_mode):04o}, not 0700")
    return d


def socket_path() -> Path:
    """Per user (private directory), interpreter, exact package source, groups and placement (cgroups, SLURM
    job step): a command never runs with another group set or in another job's cgroup."""
    try:
        cgroups = Path("/proc/self/cgroup").read_text()
    except OSError:
        cgroups = ""
    slurm = ".".join(os.environ.get(v, "") for v in ("SLURM_JOB_ID", "SLURM_STEP_ID"))
    groups = f"{os.getgid()}:{sorted(os.getgroups())}"
    key = f"{source_hash(Path(__file__).resolve().parents[1])}\n{groups}\n{cgroups}\n{slurm}"
    path = private_dir() / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.sock"
    if len(os.fsencode(path)) > SUN_PATH_MAX:
        raise Unavailable(f"socket path longer than {SUN_PATH_MAX} bytes: set STS_WARM_DIR to a shorter one")
    return path


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


def open_private(path: Path, flags: int) -> int:
    """Open (creating 0600) a file of ours: never through a symlink, never another's file or a hard link."""
    fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_nlink != 1:
        os.close(fd)
        raise PermissionError(f"{path} is not a private file of ours")
    return fd


def peer_uid(conn: socket.socket) -> int:
    return _CRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))[1]


# ---------------------------------------------------------------- client


def run_remote(argv: list[str]) -> int | None:
    """Run ``sts ARGV`` in the warm server; None if it cannot or should not (run in-process then).

    The child acknowledges each command once it has taken on the caller's state: a connection that
    closes before that (e.g. a server just ending its idle time) is retried on a fresh server; one
    that closes after it lost a running command, and the job fails with that message.
    """
    try:
        path = socket_path()
        request = {"argv": argv, "cwd": os.getcwd(), "env": minimal_env(os.environ), **caller_state()}
        request = json.dumps(request).encode()
        for _attempt in range(3):
            conn = _connect(path) or _start_and_connect(path)
            with conn:
                if peer_uid(conn) != os.getuid():
                    raise Unavailable(f"{path} is served by uid {peer_uid(conn)}")
                try:
                    conn.settimeout(ANSWER_S)
                    try:
                        socket.send_fds(conn, [INT.pack(len(request)) + request], _stdio())
                    except TimeoutError:
                        raise
                    except OSError:
                        pass  # closed under us: a refusal it sent first (busy, out of descriptors) is still there
                    answer = conn.recv(512)
                except TimeoutError:
                    raise Unavailable(f"no answer within {ANSWER_S:g} s") from None
                except OSError:
                    continue
                if not answer:
                    continue  # the command never started
                if answer[:1] == NAK:
                    raise Unavailable(answer[1:].decode(errors="replace") or "declined")
                if answer[:1] != ACK:
                    raise Unavailable("the server's child failed before the command started")
                conn.settimeout(None)
                status = answer[1:] + (_recv_exactly(conn, INT.size - len(answer) + 1) or b"")
            if len(status) != INT.size:  # the server died while the command ran: fail the job, say so
                print(f"sts: the warm server ({path}) lost the command; rerun, or set STS_WARM=0", file=sys.stderr)
                return 1
            return INT.unpack(status)[0]
        raise Unavailable("the server dropped the command three times")
    except (Unavailable, OSError) as exc:
        print(f"sts: warm server not used ({exc}); running in-process", file=sys.stderr)
        return None


def caller_state() -> dict:
    """What a forked command must take on to run as this process would: umask, nice, limits, CPUs."""
    umask = os.umask(0o077)
    os.umask(umask)
    return {
        "umask": umask,
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "limits": {name: list(resource.getrlimit(getattr(resource, name))) for name in RLIMITS},
        "cpus": sorted(os.sched_getaffinity(0)),
    }


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


def _start_and_connect(path: Path) -> socket.socket:
    """Start a server; its socket within STARTUP_S, or Unavailable (at once if the server failed)."""
    import subprocess

    log = path.with_suffix(".log")
    try:
        fd = open_private(log, os.O_WRONLY | os.O_APPEND)
    except OSError as exc:
        raise Unavailable(f"cannot open {log}: {exc}") from None
    env = {k: v for k, v in os.environ.items() if k.startswith("PYTHON") or k in ("LD_LIBRARY_PATH", "VIRTUAL_ENV")}
    with os.fdopen(fd, "ab") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "sts.cli", WARM_SERVER_FLAG, str(path)], env={**env, **minimal_env(os.environ)}, cwd="/",
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True, close_fds=True,
        )  # fmt: skip
    deadline = time.monotonic() + STARTUP_S
    while (conn := _connect(path)) is None:
        if server.poll():  # 0 is another server holding the lock: its socket is coming
            raise Unavailable(f"the server could not start, see {log}")
        if time.monotonic() > deadline:
            raise Unavailable(f"no server within {STARTUP_S:g} s")
        time.sleep(0.01)
    return conn


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
