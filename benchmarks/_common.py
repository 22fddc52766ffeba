"""Helpers shared by the benchmark scripts: a work directory with a config, snakemake runner."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def write_config(workdir: Path, n_cells: int, seed: int = 1) -> Path:
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["synthetic"].update(n_cells=n_cells, seed=seed)
    path = workdir / "config.yaml"
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def snakemake(workdir: Path, config: Path, *args: str) -> float:
    """Run snakemake, return wall seconds; raise with its output on failure."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--configfile", str(config), *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
    return wall


def print_medians(results: dict[str, list[dict]], keys, unit: str = "s", scale: float = 1.0) -> None:
    """Median of each key over the rounds of the trees 'before' and 'after', and the relative change."""
    import statistics

    for key in keys:
        before = statistics.median(x[key] for x in results["before"])
        after = statistics.median(x[key] for x in results["after"])
        print(f"median {key}: before {before * scale:.3f} {unit}, after {after * scale:.3f} {unit} "
              f"({after / before - 1:+.1%})")  # fmt: skip
