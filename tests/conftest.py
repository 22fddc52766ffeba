"""Shared fixtures: paths, and small synthetic NWB files written in both real layouts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# Reason fragments expected for each defect kind of the synthetic cohort: file-level defects
# (sweep selection) and metadata defects (manifest).
FILE_DEFECT_REASONS = {
    "corrupt_file": "unreadable NWB file",
    "no_long_square": "no long-square sweeps",
    "no_spiking": "no long-square sweep with a spike",
    "no_plus40": "no sweep at rheobase+40 pA",
    "nan_trace": "NaN values in the response of sweep",
}
DEFECT_REASONS = {**FILE_DEFECT_REASONS, "duplicate_id": "duplicate specimen_id", "unsure_label": "label Unsure"}
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]


def smk(workdir: Path, *args: str, config: dict | None = None, check=True) -> subprocess.CompletedProcess:
    """Run this workflow's Snakefile in ``workdir`` with ``config`` (default: the folder's config.yaml).

    A given config goes to a file beside the folder, never into it: a dry run with a changed config
    leaves a finished run exactly as it was, for the other tests that read it.
    """
    cfg = workdir / "config.yaml"
    if config is not None:
        fd, name = tempfile.mkstemp(prefix=f"{workdir.name}-", suffix=".yaml", dir=workdir.parent)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(config, f)
        cfg = Path(name)
    cmd = SNAKEMAKE + ["--directory", str(workdir), "--configfile", str(cfg), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def start_run(workdir: Path, config: dict, *args: str) -> Path:
    """A run of ``config`` (kept as the folder's config.yaml) in ``workdir``, with ``args`` (targets...)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    smk(workdir, "--cores", "2", *args)
    return workdir


def copy_run(src: Path, dst: Path) -> Path:
    """A private copy of a finished run folder, for a test that changes it, with every mtime kept
    (Snakemake sees the same state). The per-cell files, the bulk, are hard links: jobs replace
    their outputs (Snakemake deletes them first, writers rename a temporary file), never write
    into them, so the original never changes; a test that touches one must give it its own inode.
    """
    bulk = {src / "results" / d for d in ("nwb", "sweeps", "scalograms")}

    def link_or_copy(a: str, b: str) -> None:
        if Path(a).parent in bulk:
            os.link(a, b)
        else:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, symlinks=True, copy_function=link_or_copy)
    return dst


def rename_long_squares(src: Path, dst: Path, name: str = "IV steps") -> int:
    """A copy of an Allen NWB v1 file whose long squares carry a lab's own protocol name
    (``aibs_stimulus_name``); returns how many sweeps were renamed."""
    import h5py
    import numpy as np

    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        found = []
        f.visititems(lambda key, obj: found.append(key) if key.endswith("aibs_stimulus_name") else None)
        renamed = [key for key in found if f[key][()] == b"Long Square"]
        for key in renamed:
            del f[key]
            f.create_dataset(key, data=np.bytes_(name))
    return len(renamed)


def pytest_collection_modifyitems(config, items):
    """The end-to-end modules (marked slow) first, the one with most tests first; the order within a
    module and of the others is kept. With pytest-xdist (`-n 2 --dist loadfile`, as CI runs) the
    longest runs then start at once instead of last, beside the short tests."""
    slow: dict = {}
    for item in items:
        if item.get_closest_marker("slow"):
            slow[item.path] = slow.get(item.path, 0) + 1
    items.sort(key=lambda item: -slow.get(item.path, 0))


def pytest_collection_finish(session):
    """The pip resolutions of test_envs.py wait on the network for ~20 s: started as soon as a test
    that needs them is collected, they overlap with the tests that run before it. Not in a
    pytest-xdist worker: every worker collects every test, and the other worker is the overlap."""
    if session.config.option.collectonly or hasattr(session.config, "workerinput"):
        return
    for item in session.items:
        if "pip_resolutions" in getattr(item, "fixturenames", ()):
            item.module.start_pip_resolutions()
            return


def workflow_rules() -> dict[str, dict]:
    """Rule name -> {file, directive: source text} for every rule/checkpoint of the workflow.

    Rules under `if`/`else` (alternatives chosen by config) are all found.
    """
    rules = {}
    head = re.compile(r"^(?P<indent>[ \t]*)(?:rule|checkpoint)\s+(?P<name>\w+)\s*:\s*$")
    for path in [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]:
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            m = head.match(line)
            if not m:
                continue
            indent = len(m["indent"])
            body = []
            for nxt in lines[i + 1 :]:
                if nxt.strip() and not nxt.lstrip().startswith("#") and len(nxt) - len(nxt.lstrip()) <= indent:
                    break
                body.append(nxt)
            rules[m["name"]] = {"file": path, **directives(body)}
    return rules


def directives(body: list[str]) -> dict[str, str]:
    """Directive -> its source text (the rest of its line and its indented continuation)."""
    code = [ln for ln in body if ln.strip() and not ln.lstrip().startswith("#")]
    if not code:
        return {}
    level = min(len(ln) - len(ln.lstrip()) for ln in code)
    out, key = {}, None
    for ln in code:
        m = re.match(r"(\w+):\s*(.*)$", ln[level:]) if len(ln) - len(ln.lstrip()) == level else None
        if m:
            key = m[1]
            out[key] = m[2]
        elif key:
            out[key] += "\n" + ln.strip()
    return out


def check_against_sklearn(out_dir) -> dict:
    """Recompute an evaluation's metrics.json from its predictions.csv with scikit-learn; return
    the metrics."""
    import json

    import numpy as np
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    from sts.trust.metrics import read_predictions

    metrics = json.loads((out_dir / "metrics.json").read_text())
    frame, classes, proba = read_predictions(out_dir / "predictions.csv")
    assert classes == metrics["classes"]
    assert list(frame.columns[:3]) == ["specimen_id", "label", "predicted"]
    assert metrics["n_test"] == len(frame) and frame["specimen_id"].is_unique
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert (np.asarray(classes)[proba.argmax(axis=1)] == frame["predicted"]).all()
    y, p = frame["label"].astype(str), frame["predicted"].astype(str)
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, p))
    assert metrics["weighted_f1"] == pytest.approx(f1_score(y, p, average="weighted"))
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y, p))
    assert metrics["confusion_matrix"] == confusion_matrix(y, p, labels=classes).tolist()
    prec, rec, f1, sup = precision_recall_fscore_support(y, p, labels=classes, zero_division=0)
    for j, c in enumerate(classes):
        got = metrics["per_class"][c]
        assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((prec[j], rec[j], f1[j]))
        assert got["support"] == sup[j]
    assert (out_dir / "confusion_matrix.png").stat().st_size > 1000
    return metrics


@pytest.fixture(scope="session")
def synth_cells(tmp_path_factory):
    """A cohort table and its NWB files (good and defective cells of both layouts)."""
    from sts.synth import make_cohort, write_cell

    cohort = make_cohort(40, seed=7, defect_fraction=0.2)
    out = tmp_path_factory.mktemp("nwb")
    paths = {}
    for row in cohort.drop_duplicates("specimen_id").to_dict("records"):
        path = out / f"{row['specimen_id']}.nwb"
        write_cell(row, path)
        paths[row["specimen_id"]] = path
    return cohort, paths


@pytest.fixture(scope="session")
def acquire_services(tmp_path_factory):
    """Loopback Allen + DANDI services serving 14 synthetic cells (seed 6) in the real layouts.

    Clamp cells: 3 good, corrupt_file (truncated NWB), no_spiking; seq cells: 6 good,
    no_plus40, no_long_square, nan_trace. Tests that inject faults restore what they change.
    """
    from acquire_fixtures import build_services, write_fixture_cells

    out = tmp_path_factory.mktemp("acquire")
    cohort, nwb = write_fixture_cells(out / "nwb", 14, seed=6, defect_fraction=0.35)
    services = build_services(cohort, nwb, out)
    yield services
    services.server.stop()


@pytest.fixture(scope="session")
def lgbm_baseline(tmp_path_factory):
    """A small fitted LightGBM baseline (``lgbm_data``): (holdout cells' raw files by specimen_id,
    its output folder, its features.csv). Tests only read it."""
    from lgbm_data import write_baseline

    return write_baseline(tmp_path_factory.mktemp("lgbm"))


@pytest.fixture
def drawn_figures(monkeypatch):
    """The figures ``sts predict --figures`` saves, by file name: each axes' title (colour bars have
    none), the legend's texts, the suptitle and the data of each plotted line, read off the very
    matplotlib figure before it is written."""
    import sts.io.atomic

    drawn, save = {}, sts.io.atomic.save_figure_atomic

    def record(fig, path, *args, **kwargs):
        axes = [ax for ax in fig.axes if ax.get_title()]
        drawn[Path(path).name] = {
            "titles": [ax.get_title() for ax in axes],
            "legend": [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()],
            "suptitle": fig.get_suptitle(),
            "lines": [line.get_ydata() for ax in axes for line in ax.get_lines() if len(line.get_ydata()) > 2],
        }
        save(fig, path, *args, **kwargs)

    monkeypatch.setattr(sts.io.atomic, "save_figure_atomic", record)
    return drawn
