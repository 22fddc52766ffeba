"""The warm-start server (sts.warm): same results as a cold command, status and kills passed through."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

STS = [sys.executable, "-c", "import sys; from sts.cli import main; sys.exit(main())"]


def run_sts(args, warm_dir: Path, warm: bool = True, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, STS_WARM_DIR=str(warm_dir), STS_WARM="1" if warm else "0", STS_WARM_IDLE_S="10")
    return subprocess.run([*STS, *map(str, args)], env=env, capture_output=True, text=True, **kw)


@pytest.fixture
def warm_dir(tmp_path):
    d = tmp_path / "warm"
    d.mkdir()
    yield d
    for lock in d.glob("*.lock"):  # stop the test's server
        pid = lock.read_text().strip()
        if pid:
            try:
                os.kill(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass


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
            assert run_sts(["scalogram", sweeps, scal], warm_dir, warm).returncode == 0
        with h5py.File(tmp_path / f"{sid}.warm.scal.h5") as a, h5py.File(tmp_path / f"{sid}.cold.scal.h5") as b:
            assert np.array_equal(a["scalogram"][()], b["scalogram"][()])
            assert dict(a.attrs).keys() == dict(b.attrs).keys()
    assert list(warm_dir.glob("*.sock")), "the warm server was not used"


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
        args = ["synth", "cell", row["specimen_id"], None, "--dataset", row["dataset"], "--label", row["label"],
                "--fs-hz", row["fs_hz"], "--cell-seed", row["cell_seed"], "--model-class", row["model_class"]]
        out = {}
        for warm in (True, False):
            out[warm] = tmp_path / f"{row['specimen_id']}.{warm}.nwb"
            args[3] = out[warm]
            proc = run_sts(args, warm_dir, warm)
            assert proc.returncode == 0, proc.stderr
        warm_data = numeric_datasets(out[True])
        assert len(warm_data) >= 4 and warm_data == numeric_datasets(out[False])
    assert list(warm_dir.glob("*.sock")), "the warm server was not used"


def test_warm_disabled_runs_in_process(synth_cells, tmp_path, warm_dir):
    sid, nwb = good_cells(synth_cells, 1)[0]
    assert run_sts(["select-sweeps", nwb, tmp_path / "s.h5", "--specimen-id", sid], warm_dir, False).returncode == 0
    assert not list(warm_dir.glob("*.sock"))


def test_exit_status_and_error_pass_through(tmp_path, warm_dir):
    missing = tmp_path / "missing.h5"
    warm = run_sts(["scalogram", missing, tmp_path / "out.h5"], warm_dir, True)
    cold = run_sts(["scalogram", missing, tmp_path / "out.h5"], warm_dir, False)
    assert warm.returncode == cold.returncode != 0
    assert "missing.h5" in warm.stderr and "missing.h5" in cold.stderr
    assert not (tmp_path / "out.h5").exists()


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def test_killing_the_client_kills_its_command(tmp_path, warm_dir):
    fifo = tmp_path / "blocked.nwb"
    os.mkfifo(fifo)  # opening it blocks until a writer comes: a command that never ends
    env = dict(os.environ, STS_WARM_DIR=str(warm_dir), STS_WARM="1", STS_WARM_IDLE_S="10")
    client = subprocess.Popen([*STS, "select-sweeps", str(fifo), str(tmp_path / "o.h5"), "--specimen-id", "x"],
                              env=env, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 60
    command = []
    while time.time() < deadline and not command:
        locks = [p.read_text().strip() for p in warm_dir.glob("*.lock")]
        server = int(locks[0]) if locks and locks[0] else None
        command = _children(server) if server else []
        time.sleep(0.05)
    assert command, "the server never started the command"
    client.kill()
    client.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(Path(f"/proc/{pid}").exists() for pid in command):
        time.sleep(0.05)
    assert not any(Path(f"/proc/{pid}").exists() for pid in command), "command outlived its client"
    assert not (tmp_path / "o.h5").exists()


def test_source_change_gives_a_new_server(tmp_path):
    from sts.warm import source_hash

    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("x = 1\n")
    before = source_hash(pkg)
    assert source_hash(pkg) == before
    (pkg / "a.py").write_text("x = 22\n")
    assert source_hash(pkg) != before


def test_a_server_that_drops_the_command_unstarted_is_not_fatal(synth_cells, tmp_path, warm_dir, monkeypatch):
    """No acknowledgement (e.g. a server ending its idle time): retried, then run in-process."""
    import socket
    import threading

    from sts import warm

    monkeypatch.setenv("STS_WARM_DIR", str(warm_dir))
    path = warm.socket_path()
    (path.with_suffix(".lock")).write_text("")
    fake = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    fake.bind(str(path))
    fake.listen(8)
    accepted = []

    def drop():
        while True:
            try:
                conn, _ = fake.accept()
            except OSError:
                return
            accepted.append(1)
            conn.close()

    threading.Thread(target=drop, daemon=True).start()
    sid, nwb = good_cells(synth_cells, 1)[0]
    try:
        proc = run_sts(["select-sweeps", nwb, tmp_path / "s.h5", "--specimen-id", sid], warm_dir, True)
    finally:
        fake.close()
    assert proc.returncode == 0 and f"{sid}: ok" in proc.stderr
    assert len(accepted) == 3 and (tmp_path / "s.h5").exists()
