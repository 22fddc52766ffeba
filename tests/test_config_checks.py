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

from sts.prep.config_checks import check_config, config_problems
from sts.cohort.manifest import check_class_counts

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


def _space(c: dict) -> dict:
    return c["cnn"].setdefault("search_space", {})


@pytest.mark.parametrize(
    "edit, where, bound",
    [
        (lambda c: c["sweeps"].update(fs_hz=1e9), "['sweeps']['fs_hz']", "maximum of 50000"),
        (lambda c: c["sweeps"].update(fs_hz=1e-3), "['sweeps']['fs_hz']", "minimum of 100"),
        (lambda c: c["sweeps"].update(window_s=1e6), "['sweeps']['window_s']", "maximum of 10"),
        (lambda c: c["sweeps"].update(window_s=1e-9), "['sweeps']['window_s']", "minimum of 0.05"),
        (lambda c: c["synthetic"].update(n_cells=10**10), "['synthetic']['n_cells']", "maximum of 100000"),
        (lambda c: c["cnn"].update(input_size=30000), "['cnn']['input_size']", "maximum of 1024"),
        (lambda c: c["cnn"].update(overrides={"resnet18": {"input_size": 30000}}),
         "['cnn']['overrides']['resnet18']['input_size']", "maximum of 1024"),
        (lambda c: _space(c).update(batch_size=[32, 10**6]), "['cnn']['search_space']['batch_size'][1]",
         "maximum of 1024"),
        (lambda c: c["cnn"].update(max_epochs=10**9), "['cnn']['max_epochs']", "maximum of 10000"),
        (lambda c: c["cnn"].update(trials=10**9), "['cnn']['trials']", "maximum of 10000"),
        (lambda c: c["cnn"].update(trials_per_gpu=10**4), "['cnn']['trials_per_gpu']", "maximum of 64"),
        (lambda c: c["cnn"].update(saliency={"ig_steps": 10**8}), "['cnn']['saliency']['ig_steps']", "maximum of 1024"),
        (lambda c: c["baseline"].update(trials=10**9), "['baseline']['trials']", "maximum of 10000"),
        (lambda c: c.setdefault("acquire", {}).update(block_size_kb=10**9), "['acquire']['block_size_kb']",
         "maximum of 65536"),
    ],
)  # fmt: skip
def test_schema_bounds_refuse_absurd_sizes(edit, where, bound):
    """Sizes that would exhaust the machine (issue 27, 9: fs_hz 1e9 made every job exceed 4 GB, n_cells 1e10
    was a MemoryError at DAG build) stop the DAG build with the key and its bound (the validation common.smk runs)."""
    from snakemake.exceptions import WorkflowError

    config = merged(".test/config.yaml")
    edit(config)
    with pytest.raises(WorkflowError) as err:
        validate(config, SCHEMA)
    assert bound in str(err.value) and f"On instance{where}:" in str(err.value), str(err.value)


@pytest.mark.parametrize(
    "changes",
    [
        {"sweeps__fs_hz": 50000, "sweeps__window_s": 10, "scalogram__n_freqs": 1000},
        {"sweeps__fs_hz": 50000, "scalogram__fmin_hz": 0.01},  # the lowest frequency's kernel: 1e7 samples
    ],
)
def test_a_cwt_too_large_for_one_job_is_refused(changes):
    config = bad(**changes)  # every key within its own bounds
    (problem,) = config_problems(config)
    assert problem.startswith("the CWT of one sweep would hold about ") and "sweeps.fs_hz (50000)" in problem


def test_cwt_size_of_the_shipped_configs_is_far_below_the_bound():
    from sts.prep.config_checks import MAX_CWT_VALUES, cwt_values

    assert cwt_values(4000, 1.2, 20, 180, "mexh") < MAX_CWT_VALUES / 50
    assert config_problems(bad(sweeps__fs_hz=50000, sweeps__window_s=1.2)) == []  # 50 kHz itself is fine


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
        ({"sweeps__qc": {"baseline_min_mv": -30, "baseline_max_mv": -40}},
         "sweeps.qc.baseline_min_mv (-30) must be below sweeps.qc.baseline_max_mv (-40)"),
        ({"sweeps__qc": {"max_mv": 0, "min_mv": 0}}, "sweeps.qc.min_mv (0) must be below sweeps.qc.max_mv (0)"),
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


def test_the_dag_build_refuses_an_absurd_sampling_rate(tmp_path):
    """sweeps.fs_hz 1e9 used to pass the DAG build, after which every job exceeded 4 GB (issue 27, 9)."""
    over = tmp_path / "bad.yaml"
    over.write_text(yaml.safe_dump({"sweeps": {**merged()["sweeps"], "fs_hz": 1e9}}))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--directory", str(ROOT), "--configfile", str(over)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-2000:]
    assert "1000000000.0 is greater than the maximum of 50000" in out and "instance['sweeps']['fs_hz']" in out


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