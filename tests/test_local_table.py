"""The local cohort's label table (local.labels) is checked when the DAG is built: its columns
against workflow/schemas/local_cohort.schema.yaml, and across rows (sts.cohort.local_table) an id given
twice or a file that does not exist. Each stops a dry run with a message naming the column, the
id or the file, and the row. (Defects of one row's content, e.g. an unknown label or an unsafe
id, stay excluded rows: tests/test_local_cohort*.py.)"""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from conftest import REPO, smk

CLASSES = ["Pvalb", "Sst", "Vip/Lamp5", "Excitatory"]
SCHEMA = REPO / "workflow" / "schemas" / "local_cohort.schema.yaml"


def test_schema_columns_are_the_readers():
    from sts.cohort.local_table import COLUMNS

    schema = yaml.safe_load(SCHEMA.read_text())
    assert set(schema["properties"]) == set(COLUMNS)
    assert schema["required"] == ["file", "label"] and schema["additionalProperties"] is False


def good_rows(folder):
    """Six cells per class (empty files: a dry run only needs them to exist), one an ABF with its ladder."""
    rows = []
    for cls in CLASSES:
        for k in range(6):
            name = f"{cls.replace('/', '-')}_{k}" + (".abf" if k == 5 else ".nwb")
            (folder / name).write_bytes(b"")
            ladder = dict(first_amplitude_pa="-80", step_pa="20", onset_s="0.5", duration_s="1.0") if k == 5 else {}
            rows.append({"file": name, "label": cls, "specimen_id": "", "dataset": "rig A", **ladder})
    return rows


def dry_run(tmp_path, rows):
    folder = tmp_path / "cells"
    folder.mkdir(exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)
    cfg = yaml.safe_load((REPO / ".test" / "config.yaml").read_text())
    for key in ("synthetic", "nwb_dir", "cross_dataset"):
        cfg.pop(key, None)
    cfg.update(cohort="local", local={"labels": "cells/labels.csv"}, classes=CLASSES)
    proc = smk(tmp_path, "--dry-run", config=cfg, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_a_good_table_plans_its_cells(tmp_path):
    (tmp_path / "cells").mkdir()
    rows = good_rows(tmp_path / "cells")
    code, out = dry_run(tmp_path, rows)
    assert code == 0, out[-3000:]
    assert "select_sweeps" in out


@pytest.mark.parametrize(
    "defect, expected",
    [
        ("column", ["Error validating row 0", "Additional properties are not allowed ('notes' was unexpected)"]),
        ("missing_column", ["Error validating row 0", "'label' is a required property"]),
        ("duplicate", ["row 3 (line 5): duplicate specimen_id 'c1' (2 CSV rows)",
                       "row 7 (line 9): duplicate specimen_id 'c1' (2 CSV rows)"]),
        ("case", ["row 3 (line 5): duplicate specimen_id 'c1' (2 CSV rows: 'C1', 'c1' differ only in case"]),
        ("missing_file", ["row 4 (line 6): file not found: ", "missing/cell.nwb"]),
    ],
)  # fmt: skip
def test_a_defect_stops_the_dag_build_naming_it(tmp_path, defect, expected):
    (tmp_path / "cells").mkdir()
    rows = good_rows(tmp_path / "cells")
    if defect == "column":
        rows[0]["notes"] = "patched twice"
    elif defect == "missing_column":
        rows = [{k: v for k, v in row.items() if k != "label"} for row in rows]
    elif defect in ("duplicate", "case"):
        rows[3]["specimen_id"], rows[7]["specimen_id"] = "c1", "c1" if defect == "duplicate" else "C1"
    else:
        rows[4]["file"] = "missing/cell.nwb"
    code, out = dry_run(tmp_path, rows)
    assert code != 0
    for text in expected:
        assert text in out, (text, out[-3000:])
    assert "Nothing to be done" not in out and "Job stats" not in out  # stopped before any job was planned
