"""Every shipped config passes the schema and the cross-field checks; each cross-field rule
stops a bad config with a message naming its keys, in-process and when the DAG is built."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from snakemake.utils import validate

from sts.config_checks import check_config, config_problems
from sts.manifest import check_class_counts

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "workflow" / "schemas" / "config.schema.yaml")
CLASSES = ("Pvalb", "Sst", "Excitatory")


def merged(*names: str) -> dict:
    """config/config.yaml with each file laid over it, recursively, as Snakemake does."""

    def update(base: dict, new: dict) -> dict:
        for key, value in new.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                update(base[key], value)
            else:
                base[key] = value
        return base

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    for name in names:
        update(config, yaml.safe_load((ROOT / name).read_text()))
    return config


SHIPPED = [(), ("config/paper.yaml",), ("config/local.yaml",), ("config/local.yaml", "config/lab_abf.yaml"),
           (".test/config.yaml",)]  # fmt: skip


def test_every_config_file_is_covered():
    named = {n for names in SHIPPED for n in names} | {"config/config.yaml"}
    files = {str(p.relative_to(ROOT)) for p in (ROOT / "config").glob("*.yaml")} | {".test/config.yaml"}
    assert files == named  # a new config file must be added to SHIPPED


@pytest.mark.parametrize("names", SHIPPED, ids=lambda n: "+".join(Path(x).name for x in n) or "config.yaml")
def test_shipped_configs_validate(names):
    config = merged(*names)
    validate(config, SCHEMA)
    assert config_problems(config) == []


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c.update(colour="blue"), "colour"),
        (lambda c: c["scalogram"].update(n_freqs="many"), "many"),
        (lambda c: c["split"].update(test_fraction=1.5), "1.5"),
        (lambda c: c.update(cohort="martian"), "martian"),
        (lambda c: c["cnn"].update(architectures=["resnet18", "vgg16"]), "vgg16"),
    ],
)
def test_schema_rejects_bad_values(edit, message):
    """The schema that common.smk validates with names what is wrong (in-process: Snakemake's own
    validate; the wiring is exercised by every workflow run, whose defaults come from the schema)."""
    from snakemake.exceptions import WorkflowError

    config = merged(".test/config.yaml")
    edit(config)
    with pytest.raises(WorkflowError, match=message):
        validate(config, SCHEMA)


def bad(**changes) -> dict:
    config = copy.deepcopy(merged())
    for dotted, value in changes.items():
        block, key = dotted.split("__")
        config[block][key] = value
    validate(config, SCHEMA)  # each one passes the schema: only the cross-field check catches it
    return config


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"scalogram__fmax_hz": 2000}, "scalogram.fmax_hz (2000) must be below the Nyquist frequency of sweeps.fs_hz "
                                       "(4000 / 2 = 2000 Hz)"),
        ({"sweeps__fs_hz": 300}, "below the Nyquist frequency of sweeps.fs_hz (300 / 2 = 150 Hz)"),
        ({"scalogram__fmin_hz": 250, "scalogram__fmax_hz": 200}, "scalogram.fmin_hz (250) must be below "
                                                                 "scalogram.fmax_hz (200)"),
        ({"scalogram__fmin_hz": 200}, "scalogram.fmin_hz (200) must be below scalogram.fmax_hz (200)"),
        ({"sweeps__window_s": 1.20013}, "sweeps.window_s x sweeps.fs_hz (1.20013 s x 4000 Hz = 4800.52) must be a "
                                        "whole number of samples"),
    ],
)  # fmt: skip
def test_each_cross_field_rule_names_its_keys(changes, message):
    config = bad(**changes)
    assert any(message in p for p in config_problems(config)), config_problems(config)
    with pytest.raises(ValueError, match="^config: "):
        check_config(config)


def test_whole_sample_windows_pass():
    assert config_problems(bad(sweeps__window_s=0.5, sweeps__fs_hz=10000)) == []
    assert config_problems(bad(sweeps__window_s=0.3, sweeps__fs_hz=4000)) == []  # 1199.9999... in floats


def test_the_dag_build_stops_before_any_job(tmp_path):
    """fmax at Nyquist passes the schema; the workflow refuses it when it builds the DAG."""
    over = tmp_path / "bad.yaml"
    over.write_text(yaml.safe_dump({"scalogram": {**merged()["scalogram"], "fmax_hz": 2500}}))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--directory", str(ROOT), "--configfile", str(over)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "scalogram.fmax_hz (2500) must be below the Nyquist frequency of sweeps.fs_hz" in out


def test_class_counts():
    def table(counts: dict, excluded: int = 0):
        labels = [c for c, n in counts.items() for _ in range(n)]
        status = ["ok"] * len(labels) + ["excluded"] * excluded
        return pd.DataFrame({"label": labels + ["Sst"] * excluded, "status": status})

    check_class_counts(table({"Pvalb": 4, "Sst": 5, "Excitatory": 4}), 3, 0.2, CLASSES)
    with pytest.raises(ValueError) as err:  # excluded rows do not count
        check_class_counts(table({"Pvalb": 4, "Sst": 3, "Excitatory": 2}, excluded=5), 3, 0.2, CLASSES)
    assert "split.n_folds = 3 (need >= 4 each): Sst: 3, Excitatory: 2" in str(err.value)
    assert "Pvalb" not in str(err.value) and "split.test_fraction = 0.2" in str(err.value)
    with pytest.raises(ValueError, match="Excitatory: 0"):  # a configured class without cells
        check_class_counts(table({"Pvalb": 4, "Sst": 4}), 3, 0.2, CLASSES)
    check_class_counts(table({"Pvalb": 2, "Sst": 2}), 1, 0.2)  # without classes: only those present
    with pytest.raises(ValueError, match="no usable cells"):
        check_class_counts(table({}, excluded=3), 3, 0.2)