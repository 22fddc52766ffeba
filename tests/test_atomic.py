"""sts.io.atomic: a write either completes under the real name or leaves the old file untouched."""

from __future__ import annotations

import json
import os
import stat

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from sts.io.atomic import (
    atomic_h5,
    atomic_path,
    save_figure_atomic,
    save_torch_atomic,
    write_csv_atomic,
    write_json_atomic,
    write_text_atomic,
)


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old\n")

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with atomic_path(target, ".csv") as tmp:
            tmp.write_text("half")
            raise Boom
    assert target.read_text() == "old\n" and leftovers(tmp_path) == []
    frame = pd.DataFrame({"a": [1, 2]})
    with pytest.raises(Boom):
        with atomic_h5(tmp_path / "x.h5") as f:
            f.create_dataset("d", data=np.arange(3))
            raise Boom
    assert not (tmp_path / "x.h5").exists() and leftovers(tmp_path) == []
    write_csv_atomic(target, frame)
    pd.testing.assert_frame_equal(pd.read_csv(target), frame)


def test_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        write_text_atomic(tmp_path / "sub" / "a.txt", "x")  # parents created
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "sub" / "a.txt").stat().st_mode) == 0o640


def test_formats_round_trip(tmp_path):
    write_json_atomic(tmp_path / "m.json", {"a": np.float32(0.5), "b": np.arange(2), "c": tmp_path})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 0.5, "b": [0, 1], "c": str(tmp_path)}
    with pytest.raises(ValueError):  # strict JSON where asked
        write_json_atomic(tmp_path / "n.json", {"a": float("nan")}, allow_nan=False)
    assert not (tmp_path / "n.json").exists()
    with atomic_h5(tmp_path / "x.h5") as f:
        f.create_dataset("d", data=np.arange(3))
    with h5py.File(tmp_path / "x.h5") as f:
        assert f["d"][()].tolist() == [0, 1, 2]
    save_torch_atomic({"w": torch.ones(2), "arch": "x"}, tmp_path / "m.pt")
    assert torch.load(tmp_path / "m.pt", weights_only=True)["w"].tolist() == [1.0, 1.0]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, _ = plt.subplots()
    save_figure_atomic(fig, tmp_path / "f.png")
    plt.close(fig)
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert leftovers(tmp_path) == []


def test_a_writer_killed_outright_leaves_a_temporary_that_the_next_write_removes(tmp_path):
    """SIGKILL inside the block (no cleanup can run): its temporary stays until the same file is written again;
    a live writer's temporary and another host's are never touched."""
    import signal
    import subprocess
    import sys

    target = tmp_path / "cell.h5"
    env = {**os.environ, "STS_WARM": "0"}
    writing = ("import sys, time\nfrom sts.io.atomic import atomic_path\n"
               "with atomic_path(sys.argv[1], '.h5') as tmp:\n    tmp.write_text('x')\n"
               "    print(tmp.name, flush=True)\n    time.sleep(60)\n")  # fmt: skip
    live = subprocess.Popen([sys.executable, "-c", writing, str(target)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        live_name = live.stdout.readline().strip()
        killed = ("import os, signal, sys\nfrom sts.io.atomic import atomic_h5\n"
                  "with atomic_h5(sys.argv[1]) as f:\n    f['x'] = [1, 2]\n    f.flush()\n"
                  "    os.kill(os.getpid(), signal.SIGKILL)\n")  # fmt: skip
        proc = subprocess.Popen([sys.executable, "-c", killed, str(target)], env=env)
        assert proc.wait() == -signal.SIGKILL
        other_host = f".cell.h5.tmp-otherhost-{proc.pid}-abc.h5"  # the dead pid, but not this host's
        (tmp_path / other_host).write_bytes(b"partial")
        assert len(leftovers(tmp_path)) == 3 and not target.exists()  # the live one, the killed one, the other
        with atomic_h5(target) as f:
            f["x"] = [3]
        assert leftovers(tmp_path) == sorted([live_name, other_host])
        with h5py.File(target) as f:
            assert list(f["x"][()]) == [3]
    finally:
        live.kill()
        live.wait()


@pytest.mark.parametrize("suffix", [".features.json", ".h5", ".json"])
def test_the_longest_id_is_written_whatever_the_host_name(tmp_path, monkeypatch, suffix):
    """Ids of MAX_ID_LENGTH characters name per-cell files; the temporary name beside them must stay under the
    file system's 255 bytes with a long cluster host name (a 64-character one, the Linux maximum)."""
    from sts.cohort.ids import MAX_ID_LENGTH
    from sts.io import atomic

    monkeypatch.setattr(atomic.socket, "gethostname", lambda: "node-0123." + "x" * 54)
    target = tmp_path / ("1" * MAX_ID_LENGTH + suffix)
    if suffix == ".h5":
        with atomic_h5(target) as f:
            f["x"] = [1]
    else:
        write_json_atomic(target, {"ok": True})
    assert target.exists() and leftovers(tmp_path) == []
