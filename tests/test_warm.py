"""The warm-start server (sts.warm.client): same results as a cold command, status and kills passed through,
and the guarantees of issue 15: private to its user (2), no file opened through a symlink (3), one bad
client or a dead server harms nobody else and the caller's state is honoured (4), no sharing across
SLURM jobs (5)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

STS = [sys.executable, "-c", "import sys; from sts.cli import main; sys.exit(main())"]
OTHER_UID = 54321  # a throwaway uid for two-user tests (nobody has it here)
NOT_WARM = "warm server not used"
# Clients (Popen) and commands (pidfds: a pid can be reused once its process is gone, and the suite
# spawns enough processes to wrap pid_max) that a test may leave behind, e.g. on a broken server.
_spawned: list = []


def warm_env(warm_dir: Path, warm: bool | None = True, **extra: str) -> dict[str, str]:
    env = dict(os.environ, STS_WARM_DIR=str(warm_dir), STS_WARM_IDLE_S="60", **extra)
    env.pop("STS_WARM", None)
    if warm is not None:
        env["STS_WARM"] = "1" if warm else "0"
    return env


def run_sts(args, warm_dir: Path, warm: bool | None = True, extra=None, **kw) -> subprocess.CompletedProcess:
    env = warm_env(warm_dir, warm, **(extra or {}))
    return subprocess.run([*STS, *map(str, args)], env=env, capture_output=True, text=True, **kw)


def quick(tmp_path: Path) -> list:
    """A per-cell command that fails at once, naming its input (absent.h5), warm or cold alike."""
    return ["scalogram", tmp_path / "absent.h5", tmp_path / "out.h5"]


def wait_for(condition, timeout_s: float = 120.0, what="condition"):
    """Poll ``condition`` until it returns something truthy (no fixed sleeps in the assertions).
    ``what`` names it in the failure: a string, or a function that says what is there at that moment."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what() if callable(what) else what}"
        time.sleep(0.02)
    return value


def settled_fd_count(pid: int, quiet_s: float = 1.0) -> int:
    """The number of the process's open descriptors once it has not changed for ``quiet_s``."""
    last, since = len(fd_table(pid)), time.monotonic()
    deadline = since + 30
    while time.monotonic() - since < quiet_s:
        assert time.monotonic() < deadline, "descriptors never settled"
        time.sleep(0.05)
        now = len(fd_table(pid))
        if now != last:
            last, since = now, time.monotonic()
    return last


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def server_pids(warm_dir: Path) -> list[int]:
    """The pids in the lock files under ``warm_dir`` (planted symlinks aside)."""
    pids = [lock.read_text().strip() for lock in warm_dir.rglob("*.lock") if not lock.is_symlink()]
    return [int(pid) for pid in pids if pid.isdigit()]


def server_pid(warm_dir: Path) -> int | None:
    return next((pid for pid in server_pids(warm_dir) if alive(pid)), None)


def the_socket(warm_dir: Path) -> Path:
    return wait_for(lambda: next(warm_dir.rglob("*.sock"), None), what="the server's socket")


@pytest.fixture
def warm_dir(tmp_path):
    d = tmp_path / "warm"
    d.mkdir(mode=0o700)
    yield d
    for pid in server_pids(d):  # stop the test's servers (they kill their commands)
        stop_server(pid, d)
    while _spawned:
        left = _spawned.pop()
        if isinstance(left, subprocess.Popen):
            if left.poll() is None:
                left.kill()
                left.wait()
            continue
        try:
            signal.pidfd_send_signal(left, signal.SIGKILL)
        except ProcessLookupError:
            pass
        finally:
            os.close(left)


def stop_server(pid: int, warm_dir: Path) -> None:
    """SIGTERM to the server of ``warm_dir`` with this pid, if that is still what the pid is."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        if str(warm_dir) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
            signal.pidfd_send_signal(fd, signal.SIGTERM)
    except OSError:
        pass
    finally:
        os.close(fd)


def good_cells(synth_cells, n):
    cohort, paths = synth_cells
    good = cohort[(cohort["defect"] == "") & (cohort["label"] != "Unsure")].drop_duplicates("specimen_id")
    both = [good[good["dataset"] == d].iloc[0] for d in ("clamp", "seq")][:n]  # one per NWB layout
    return [(str(r["specimen_id"]), paths[r["specimen_id"]]) for r in both]


def test_warm_commands_match_cold_ones(synth_cells, tmp_path, warm_dir):
    for sid, nwb in good_cells(synth_cells, 2):
        for warm in (True, False):
            tag = "warm" if warm else "cold"
            sweeps, scal = tmp_path / f"{sid}.{tag}.sweeps.h5", tmp_path / f"{sid}.{tag}.scal.h5"
            proc = run_sts(["select-sweeps", nwb, sweeps, "--specimen-id", sid], warm_dir, warm)
            assert proc.returncode == 0, proc.stderr
            assert f"{sid}: ok" in proc.stderr  # the command's log reaches the caller's stderr
            assert NOT_WARM not in proc.stderr
            assert run_sts(["scalogram", sweeps, scal], warm_dir, warm).returncode == 0
        with h5py.File(tmp_path / f"{sid}.warm.scal.h5") as a, h5py.File(tmp_path / f"{sid}.cold.scal.h5") as b:
            assert np.array_equal(a["scalogram"][()], b["scalogram"][()])
            assert dict(a.attrs).keys() == dict(b.attrs).keys()
    assert list(warm_dir.glob("*.lock")), "the warm server was not used"


def numeric_datasets(path: Path) -> dict[str, bytes]:
    """Every numeric dataset's bytes (pynwb gives each file random object ids, so not the file's bytes)."""
    found = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: found.__setitem__(name, obj[()].tobytes())
                     if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "fiu" else None)  # fmt: skip
    return found


def test_warm_synthetic_cell_has_the_same_data(synth_cells, tmp_path, warm_dir):
    cohort, _ = synth_cells
    for _, row in cohort[cohort["defect"] == ""].drop_duplicates("dataset").iterrows():  # both layouts
        args = [
            "synth",
            "cell",
            row["specimen_id"],
            None,
            "--dataset",
            row["dataset"],
            "--label",
            row["label"],
            "--fs-hz",
            row["fs_hz"],
            "--cell-seed",
            row["cell_seed"],
            "--model-class",
            row["model_class"],
        ]
        out = {}
        for warm in (True, False):
            out[warm] = tmp_path / f"{row['specimen_id']}.{warm}.nwb"
            args[3] = out[warm]
            proc = run_sts(args, warm_dir, warm)
            assert proc.returncode == 0, proc.stderr
        warm_data = numeric_datasets(out[True])
        assert len(warm_data) >= 4 and warm_data == numeric_datasets(out[False])
    assert list(warm_dir.glob("*.lock")), "the warm server was not used"


def test_warm_disabled_runs_in_process(synth_cells, tmp_path, warm_dir):
    sid, nwb = good_cells(synth_cells, 1)[0]
    assert run_sts(["select-sweeps", nwb, tmp_path / "s.h5", "--specimen-id", sid], warm_dir, False).returncode == 0
    assert not list(warm_dir.glob("*.sock"))


def test_exit_status_and_error_pass_through(tmp_path, warm_dir):
    warm = run_sts(quick(tmp_path), warm_dir, True)
    cold = run_sts(quick(tmp_path), warm_dir, False)
    assert warm.returncode == cold.returncode != 0
    assert "absent.h5" in warm.stderr and "absent.h5" in cold.stderr and NOT_WARM not in warm.stderr
    assert not (tmp_path / "out.h5").exists()


def _children(pid: int) -> list[int]:
    kids = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat_file.parent.name))
    return kids


def start_blocked(tmp_path: Path, warm_dir: Path, env=None, **kw) -> tuple[subprocess.Popen, int, Path]:
    """A client whose command never ends (it opens a FIFO nobody writes): (client, command pid, its stderr)."""
    fifo = tmp_path / "blocked.nwb"
    os.mkfifo(fifo)
    err = tmp_path / "blocked.err"
    with open(err, "w") as stderr:
        client = subprocess.Popen([*STS, "select-sweeps", str(fifo), str(tmp_path / "o.h5"), "--specimen-id", "x"],
                                  env=env or warm_env(warm_dir), stderr=stderr, **kw)  # fmt: skip
    _spawned.append(client)

    def started() -> int | None:  # re-read each time: a command dropped before it started is retried
        pid = server_pid(warm_dir)
        for command in _children(pid) if pid else []:
            try:
                fd = os.pidfd_open(command)
            except OSError:
                continue
            if acknowledged(command, err):  # checked after the pidfd pinned the process
                _spawned.append(fd)
                return command
            os.close(fd)
        return None

    def state() -> str:
        pid = server_pid(warm_dir)
        kids = {c: fd_table(c) for c in (_children(pid) if pid else [])}
        return (f"an acknowledged command: client {client.poll()}, server {pid}, children {kids}, "
                f"stderr {err.read_text()[-2000:]!r}")  # fmt: skip

    return client, wait_for(started, what=state), err


def fd_table(pid: int) -> dict[str, str] | str:
    """File descriptor -> what it points to, of a process; the error if it cannot be read."""
    try:
        return {f.name: os.readlink(f) for f in Path(f"/proc/{pid}/fd").iterdir()}
    except OSError as exc:
        return str(exc)


def acknowledged(pid: int, stderr: Path) -> bool:
    """The forked command writes to the client's stderr and has closed its connection: it has sent
    its acknowledgement (sts.warm.server._become_command). Before that, a server killed under it is a
    command that never started, which the client rightly retries on a fresh server."""
    fds = fd_table(pid)
    return isinstance(fds, dict) and fds.get("2") == os.path.realpath(stderr) and not any(
        f.startswith("socket:") for f in fds.values()
    )


def test_killing_the_client_kills_its_command(tmp_path, warm_dir):
    client, command, _ = start_blocked(tmp_path, warm_dir)
    client.kill()
    client.wait()
    wait_for(lambda: not alive(command), what="the command to die with its client")
    assert not (tmp_path / "o.h5").exists()


def test_source_change_gives_a_new_server(tmp_path):
    from sts.warm.client import source_hash

    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("x = 1\n")
    before = source_hash(pkg)
    assert source_hash(pkg) == before
    (pkg / "a.py").write_text("x = 22\n")
    assert source_hash(pkg) != before


class FakeServer:
    """A socket at ``path`` that records each request and answers ``reply`` (our own uid)."""

    def __init__(self, path: Path, reply: bytes = b""):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, args=(reply,), daemon=True).start()

    def _serve(self, reply: bytes):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                head = conn.recv(4)
                body = b""
                while len(head) == 4 and len(body) < struct.unpack("!i", head)[0]:
                    body += conn.recv(65536) or b"!"  # (b"!" ends it on a short request)
                self.requests.append(body)
                if reply:
                    conn.sendall(reply)


def test_a_server_that_drops_the_command_unstarted_is_not_fatal(synth_cells, tmp_path, warm_dir, monkeypatch):
    """No acknowledgement (e.g. a server ending its idle time): retried, then run in-process."""
    from sts.warm import client as warm

    monkeypatch.setenv("STS_WARM_DIR", str(warm_dir))
    path = warm.socket_path()
    path.with_suffix(".lock").write_text("")
    fake = FakeServer(path)
    sid, nwb = good_cells(synth_cells, 1)[0]
    try:
        proc = run_sts(["select-sweeps", nwb, tmp_path / "s.h5", "--specimen-id", sid], warm_dir, True)
    finally:
        fake.sock.close()
    assert proc.returncode == 0 and f"{sid}: ok" in proc.stderr
    assert len(fake.requests) == 3 and (tmp_path / "s.h5").exists()


# ---------------------------------------------------------------- 2: private to its user


@pytest.fixture(scope="module")
def other_user() -> list[str]:
    """A second user: a throwaway uid through setpriv(1), which needs root. Returns the start of a command line
    that runs Python as that user with our packages: our interpreter may sit where that user cannot read (a
    pyenv under /root), so the first of ours and the system's of the same version that works there."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("two-user test: needs root and setpriv(1) to run as a throwaway uid")
    import sts

    path = os.pathsep.join([str(Path(sts.__file__).parents[1]), sysconfig.get_paths()["purelib"]])
    version = "{}.{}".format(*sys.version_info[:2])
    probe = "import sys, numpy, h5py, sts.cli, sts.warm.client; assert sys.executable and sys.version.startswith(%r)" % version
    errors = []
    for python in dict.fromkeys([sys.executable, f"/usr/bin/python{version}", "/usr/bin/python3"]):
        cmd = ["setpriv", f"--reuid={OTHER_UID}", f"--regid={OTHER_UID}", "--clear-groups", "env", f"PYTHONPATH={path}"]
        done = subprocess.run([*cmd, python, "-c", probe], capture_output=True, text=True, cwd="/")
        if done.returncode == 0:
            return [*cmd, python]
        errors.append(f"{python}: {done.stderr.strip()[-200:]}")
    pytest.skip(f"two-user test: no Python with our packages runs as uid {OTHER_UID}: {errors}")


def raw_request(path: Path, argv: list[str]) -> bytes:
    """Send a well-formed request as a client would (three descriptors); the server's first answer."""
    body = json.dumps({"argv": argv, "cwd": "/", "env": {}, "umask": 0o22, "nice": 0, "limits": {}, "cpus": []})
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn, open(os.devnull, "r+b") as null:
        conn.settimeout(60)
        conn.connect(str(path))
        try:
            socket.send_fds(conn, [struct.pack("!i", len(body)) + body.encode()], [null.fileno()] * 3)
            return conn.recv(512)
        except (BrokenPipeError, ConnectionResetError):  # closed with our request unread
            return b""


FAKE_SERVER_OF_ANOTHER_USER = """
import socket, struct, sys
s = socket.socket(fileno=int(sys.argv[1]))
s.listen()  # the socket's credentials (SO_PEERCRED) are those of whoever calls listen()
print("listening", flush=True)
s.settimeout(60)
conn, _ = s.accept()
conn.settimeout(60)
head, body = conn.recv(4), b""
while len(head) == 4 and len(body) < struct.unpack("!i", head)[0]:
    body += conn.recv(65536) or b"!"
if head:
    conn.sendall(b"+" + struct.pack("!i", 0))  # "done, exit 0", without running anything
print(repr(head + body))
"""


def test_a_socket_of_another_user_gets_nothing(tmp_path, warm_dir, other_user, monkeypatch):
    """Another user's socket at our server's name (planted in a race) is sent nothing: no argv, no env."""
    from sts.warm import client as warm

    monkeypatch.setenv("STS_WARM_DIR", str(warm_dir))
    path = warm.socket_path()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    fake = subprocess.Popen([*other_user, "-c", FAKE_SERVER_OF_ANOTHER_USER, str(listener.fileno())],
                            pass_fds=[listener.fileno()], stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert fake.stdout.readline().strip() == "listening"
    listener.close()
    proc = run_sts(quick(tmp_path), warm_dir, extra={"API_TOKEN": "s3cr3t"}, timeout=120)
    received = fake.communicate(timeout=60)[0].strip()
    assert received == "b''", f"another user's socket received {received[:200]}"
    assert proc.returncode != 0 and "absent.h5" in proc.stderr  # run in-process, for real
    assert f"served by uid {OTHER_UID}" in proc.stderr


def test_another_user_cannot_run_commands_on_a_server(tmp_path, other_user):
    """Their server (started as any of their commands starts it) closes our connection unread (SO_PEERCRED),
    whatever the socket's mode: root here passes any permission check, as a careless umask would let anyone."""
    theirs = Path(tempfile.mkdtemp(prefix="sts-warm-test-", dir="/tmp"))  # a place the other user can reach
    os.chown(theirs, OTHER_UID, OTHER_UID)
    as_them = {"env": warm_env(theirs, HOME=str(theirs)), "cwd": "/", "capture_output": True, "text": True}
    try:
        subprocess.run([*other_user, *STS[1:], "scalogram", "/nonexistent.h5", "/nonexistent.out.h5"], **as_them)
        server = wait_for(lambda: server_pid(theirs), timeout_s=30, what="their server")
        marker = tmp_path / "ran"
        answer = raw_request(the_socket(theirs), ["scalogram", str(marker), str(tmp_path / "x.h5")])
        assert answer == b"", f"another user's server answered {answer!r}"
        assert alive(server)
    finally:
        for pid in server_pids(theirs):
            stop_server(pid, theirs)
        shutil.rmtree(theirs, ignore_errors=True)


def test_socket_and_files_are_private_under_a_loose_umask(tmp_path, warm_dir):
    fresh = warm_dir / "fresh"  # created by the client
    proc = run_sts(quick(tmp_path), fresh, preexec_fn=lambda: os.umask(0o002))
    assert "absent.h5" in proc.stderr and NOT_WARM not in proc.stderr, proc.stderr
    modes = {p.suffix: stat.S_IMODE(p.lstat().st_mode) for p in fresh.iterdir()}
    assert stat.S_IMODE(fresh.lstat().st_mode) == 0o700
    assert modes == {".sock": 0o600, ".lock": 0o600, ".log": 0o600}


@pytest.mark.parametrize("kind", ["symlink", "group-readable", "another user's"])
def test_an_unsafe_directory_is_not_used(tmp_path, warm_dir, kind):
    real = warm_dir / "real"
    real.mkdir(mode=0o700)
    if kind == "symlink":
        used = warm_dir / "link"
        used.symlink_to(real)
    elif kind == "group-readable":
        used = real
        used.chmod(0o750)
    else:
        if os.geteuid() != 0:
            pytest.skip("needs root to give a directory to another uid")
        used = real
        os.chown(used, OTHER_UID, OTHER_UID)
        used.chmod(0o777)
    proc = run_sts(quick(tmp_path), used)
    assert not list(real.iterdir()), "the server used an unsafe directory"
    assert "absent.h5" in proc.stderr and NOT_WARM in proc.stderr


def test_only_per_cell_commands_are_served(tmp_path, warm_dir):
    from sts.warm.client import enabled

    assert "absent.h5" in run_sts(quick(tmp_path), warm_dir).stderr
    answer = raw_request(the_socket(warm_dir), ["manifest", "meta.csv", "scalograms", str(tmp_path / "m.csv")])
    assert answer[:1] == b"-" and b"not a per-cell command" in answer
    assert not enabled(["synth", "metadata", "m.csv"]) and enabled(["synth", "cell", "1", "c.nwb"])


def test_the_command_gets_only_the_environment_it_needs(tmp_path, warm_dir, monkeypatch):
    from sts.warm import client as warm

    secrets = {"API_TOKEN": "s3cr3t", "DANDI_API_KEY": "k3y"}
    needed = {"STS_SOMETHING": "1", "LC_ALL": "C", "OMP_NUM_THREADS": "1", "HDF5_USE_FILE_LOCKING": "FALSE"}
    assert warm.minimal_env({**secrets, **needed, "PATH": "/bin"}) == {**needed, "PATH": "/bin"}
    # What a client sends (to a socket of ours that declines)...
    monkeypatch.setenv("STS_WARM_DIR", str(warm_dir))
    fake = FakeServer(warm.socket_path(), reply=b"-declined")
    try:
        run_sts(quick(tmp_path), warm_dir, extra={**secrets, **needed})
    finally:
        fake.sock.close()
    (sent,) = {frozenset(json.loads(r)["env"]) for r in fake.requests}
    assert not sent & secrets.keys() and sent >= needed.keys()
    # ... and what a real command and its server see.
    os.unlink(warm.socket_path())
    _, command, _ = start_blocked(tmp_path, warm_dir, env=warm_env(warm_dir, **secrets, **needed))
    for pid in (command, server_pid(warm_dir)):
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert b"s3cr3t" not in environ and b"k3y" not in environ


# ---------------------------------------------------------------- 3: no file opened through a symlink


def test_open_private_refuses_what_is_not_our_own_file(tmp_path):
    from sts.warm.client import open_private

    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "link").symlink_to(victim)
    with pytest.raises(OSError):  # O_NOFOLLOW: ELOOP, whatever fs.protected_symlinks says
        open_private(tmp_path / "link", os.O_RDWR)
    os.link(victim, tmp_path / "hardlink")
    with pytest.raises(PermissionError):
        open_private(tmp_path / "hardlink", os.O_RDWR)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(PermissionError):  # refused, and without blocking
        open_private(tmp_path / "fifo", os.O_RDWR)
    if os.geteuid() == 0:
        theirs = tmp_path / "theirs"
        theirs.write_text("")
        os.chown(theirs, OTHER_UID, OTHER_UID)
        with pytest.raises(PermissionError):
            open_private(theirs, os.O_RDWR)
    assert victim.read_text() == "precious\n"
    fd = open_private(tmp_path / "mine", os.O_WRONLY)
    os.close(fd)
    assert stat.S_IMODE((tmp_path / "mine").stat().st_mode) == 0o600


@pytest.mark.parametrize("planted", [(".lock",), (".log",), (".lock", ".log")])
def test_lock_and_log_are_never_opened_through_a_symlink(tmp_path, warm_dir, monkeypatch, planted):
    from sts.warm import client as warm

    monkeypatch.setenv("STS_WARM_DIR", str(warm_dir))
    path = warm.socket_path()
    for suffix in planted:
        (tmp_path / f"victim{suffix}").write_text("precious\n")
        path.with_suffix(suffix).symlink_to(tmp_path / f"victim{suffix}")
    proc = run_sts(quick(tmp_path), warm_dir, timeout=120)
    for suffix in planted:
        assert (tmp_path / f"victim{suffix}").read_text() == "precious\n"
    assert "absent.h5" in proc.stderr and NOT_WARM in proc.stderr


# ---------------------------------------------------------------- 4: one bad client harms only itself


def test_a_malformed_request_harms_only_itself(tmp_path, warm_dir):
    client, command, _ = start_blocked(tmp_path, warm_dir)
    server, path = server_pid(warm_dir), the_socket(warm_dir)
    good = json.dumps({"argv": ["scalogram", "a", "b"], "cwd": "/", "env": {}, "umask": 0, "nice": 0,
                       "limits": {}, "cpus": []}).encode()  # fmt: skip
    bad = [  # (bytes, descriptors sent, then close our writing side)
        (struct.pack("!i", -1), 3, False),
        (struct.pack("!i", 1 << 30), 3, False),
        (struct.pack("!i", 5) + b"{nope", 3, False),
        (struct.pack("!i", 11) + b'{"argv": 5}', 3, False),
        (struct.pack("!i", len(good)) + good, 0, False),
        (struct.pack("!i", len(good)) + good, 5, False),
        (struct.pack("!i", len(good)) + good[:10], 3, True),
    ]
    with open(os.devnull, "r+b") as null:
        for data, n_fds, shut in bad:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(60)
                conn.connect(str(path))
                if n_fds:
                    socket.send_fds(conn, [data], [null.fileno()] * n_fds)
                else:
                    conn.sendall(data)
                if shut:
                    conn.shutdown(socket.SHUT_WR)
                assert conn.recv(512)[:1] != b"+", data
    assert alive(server) and alive(command) and client.poll() is None
    proc = run_sts(quick(tmp_path), warm_dir)
    assert "absent.h5" in proc.stderr and NOT_WARM not in proc.stderr
    assert server_pid(warm_dir) == server


def test_a_silent_connection_holds_up_only_itself(tmp_path, warm_dir):
    assert NOT_WARM not in run_sts(quick(tmp_path), warm_dir).stderr
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.connect(str(the_socket(warm_dir)))
        proc = run_sts(quick(tmp_path), warm_dir)  # served while the silent one waits
        assert "absent.h5" in proc.stderr and NOT_WARM not in proc.stderr
        silent.setblocking(False)
        with pytest.raises(BlockingIOError):  # still open and unanswered: not timed out to serve the other
            silent.recv(1)


def test_a_killed_server_takes_its_commands_along(tmp_path, warm_dir):
    client, command, err = start_blocked(tmp_path, warm_dir)
    os.kill(server_pid(warm_dir), signal.SIGKILL)
    wait_for(lambda: not alive(command), timeout_s=30, what="the command to die with its server")
    assert client.wait(timeout=60) == 1
    assert "lost the command" in err.read_text()


@pytest.mark.parametrize(
    "trouble,noticed",
    [("path too long", "socket path longer than 107 bytes"), ("no parent directory", "cannot create"),
     ("server fails", "the server could not start")],
)  # fmt: skip
def test_a_server_that_cannot_start_means_in_process_at_once(tmp_path, warm_dir, monkeypatch, trouble, noticed):
    """Noticed before the command waits for anything (the old client waited 60 s, or crashed)."""
    from sts.warm import client as warm

    used = {"path too long": warm_dir / ("d" * 100), "no parent directory": warm_dir / "no" / "dir"}.get(trouble)
    if trouble == "server fails":
        used = warm_dir
        monkeypatch.setenv("STS_WARM_DIR", str(warm_dir))
        warm.socket_path().mkdir()  # a directory where its socket goes: the server cannot bind
    proc = run_sts(quick(tmp_path), used, timeout=50)
    assert "absent.h5" in proc.stderr and f"{NOT_WARM} ({noticed}" in proc.stderr, proc.stderr
    assert not [p for p in warm_dir.rglob("*.sock") if p.is_socket()]


def test_the_command_runs_with_its_callers_nice_limits_and_umask(tmp_path, warm_dir):
    assert NOT_WARM not in run_sts(quick(tmp_path), warm_dir).stderr  # the server: nice 0, our limits
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = min(200, soft)

    def lowered():
        os.nice(1)  # (more would starve the command on a busy machine)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        os.umask(0o027)

    _, command, _ = start_blocked(tmp_path, warm_dir, preexec_fn=lowered)
    proc = Path(f"/proc/{command}")

    def taken_on():
        nice = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[16])
        files = next(line for line in (proc / "limits").read_text().splitlines() if line.startswith("Max open files"))
        umask = next(line for line in (proc / "status").read_text().splitlines() if line.startswith("Umask:"))
        return nice == 1 and files.split()[3] == str(limit) and umask.split()[1] == "0027"

    wait_for(taken_on, timeout_s=30, what="the command to run with its caller's nice value, limits and umask")


# ---------------------------------------------------------------- 5: SLURM


def test_no_server_under_slurm_unless_asked(tmp_path, warm_dir, monkeypatch):
    from sts.warm import client as warm

    proc = run_sts(quick(tmp_path), warm_dir, warm=None, extra={"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0"})
    assert "absent.h5" in proc.stderr and not list(warm_dir.iterdir())
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.delenv("STS_WARM", raising=False)
    assert not warm.enabled(["scalogram", "a", "b"])
    monkeypatch.setenv("STS_WARM", "1")
    assert warm.enabled(["scalogram", "a", "b"])


def test_a_server_is_never_shared_across_slurm_jobs_or_steps(warm_dir, monkeypatch):
    from sts.warm import client as warm

    monkeypatch.setenv("STS_WARM_DIR", str(warm_dir))
    names = set()
    for job, step in [("1", "0"), ("1", "1"), ("2", "0")]:
        monkeypatch.setenv("SLURM_JOB_ID", job)
        monkeypatch.setenv("SLURM_STEP_ID", step)
        names.add(warm.socket_path())
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.delenv("SLURM_STEP_ID")
    names.add(warm.socket_path())
    assert len(names) == 4


# ---------------------------------------------------------------- issue 27, 8: out of descriptors, too many clients


def cpu_s(pid: int) -> float:
    """User + system CPU time of a process so far (s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def silent_connections(path: Path, n: int) -> list[socket.socket]:
    conns = []
    for _ in range(n):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conns.append(conn)
        conn.connect(str(path))
    return conns


def test_out_of_descriptors_the_server_turns_clients_away_without_spinning(tmp_path, warm_dir):
    """A server at its descriptor limit used to spin on its readable listener (EMFILE on every accept) while a
    client waited ~57 s. Now the pending connection is accepted with a reserve descriptor and refused: the client
    runs in-process at once, and the server sleeps."""
    limit, hard = 48, resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    no_cap = {"STS_WARM_MAX_CLIENTS": "1000"}  # the descriptors run out first
    first = run_sts(quick(tmp_path), warm_dir, extra=no_cap,
                    preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard)))  # fmt: skip
    assert "absent.h5" in first.stderr and NOT_WARM not in first.stderr, first.stderr
    server, path = server_pid(warm_dir), the_socket(warm_dir)
    files = next(line for line in Path(f"/proc/{server}/limits").read_text().splitlines() if "open files" in line)
    assert files.split()[3] == str(limit)
    silent = silent_connections(path, limit + 8)  # one descriptor each in the server, until there are none left
    try:
        wait_for(lambda: len(fd_table(server)) >= limit, timeout_s=30, what=lambda: f"{fd_table(server)}")
        before = cpu_s(server)
        time.sleep(2)
        spent = cpu_s(server) - before
        t0 = time.monotonic()
        proc = run_sts(quick(tmp_path), warm_dir, extra=no_cap, timeout=100)
        elapsed = time.monotonic() - t0
    finally:
        for conn in silent:
            conn.close()
    assert spent < 0.2, f"the server spent {spent:.2f} s of CPU in 2 s at its descriptor limit"
    assert "absent.h5" in proc.stderr and f"{NOT_WARM} (server out of file descriptors)" in proc.stderr, proc.stderr
    assert elapsed < 20 and alive(server)
    # Descriptors free again: served as before.
    wait_for(lambda: len(fd_table(server)) < limit // 2, timeout_s=30, what="the silent connections to close")
    assert NOT_WARM not in run_sts(quick(tmp_path), warm_dir, extra=no_cap).stderr


def test_clients_past_the_cap_run_in_process_at_once(tmp_path, warm_dir):
    cap = {"STS_WARM_MAX_CLIENTS": "2"}
    assert NOT_WARM not in run_sts(quick(tmp_path), warm_dir, extra=cap).stderr
    server, path = server_pid(warm_dir), the_socket(warm_dir)
    held = settled_fd_count(server)  # the last client's connection may close a moment after it exits
    silent = silent_connections(path, 2)
    try:
        wait_for(lambda: len(fd_table(server)) >= held + 2, timeout_s=30,
                 what=lambda: f"two accepted connections ({len(fd_table(server))} descriptors, {held} before)")
        t0 = time.monotonic()
        proc = run_sts(quick(tmp_path), warm_dir, extra=cap, timeout=100)
        elapsed = time.monotonic() - t0
    finally:
        for conn in silent:
            conn.close()
    assert "absent.h5" in proc.stderr and f"{NOT_WARM} (server busy (2 clients))" in proc.stderr, proc.stderr
    assert elapsed < 20 and server_pid(warm_dir) == server
    wait_for(lambda: len(fd_table(server)) <= held, timeout_s=30, what="the silent connections to close")
    assert NOT_WARM not in run_sts(quick(tmp_path), warm_dir, extra=cap).stderr
