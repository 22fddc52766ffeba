"""Does a change to sweep selection select the same sweeps with the same traces as before?

    python benchmarks/selection_parity.py --before REF [--workdir DIR]

Writes (once, into WORKDIR/files) the cells of the synthetic demo (160 cells, seed 1), of
``.test`` (40 cells, seed 7, 20 % defects) and ABF fixtures of the local-cohort tests (epoch-table
command and CSV-ladder files), runs ``select_sweeps`` with the default settings under the code of
git REF (a temporary worktree) and under this working tree, each in its own interpreter, and
prints every difference: status, sweep numbers, traces (bit for bit), attributes, reasons.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MAKE = """
import json, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from sts.synth import make_cohort, write_cell
import abf_data as ad
out = Path({files!r}); out.mkdir(parents=True, exist_ok=True)
index = {{}}
for tag, n, seed, defect in (("demo", 160, 1, 0.05), ("test", 40, 7, 0.2)):
    for _, row in make_cohort(n, seed=seed, defect_fraction=defect).drop_duplicates("specimen_id").iterrows():
        name = f"{{tag}}_{{row['specimen_id']}}.nwb"
        if not (out / name).exists():
            write_cell(row, out / name)
        index[name] = None
for k, cls in enumerate(["Pvalb", "Sst", "Excitatory"]):
    lad = ad.simulate_ladder(cls, seed=100 + k)
    step = lad.amplitudes_pa[1] - lad.amplitudes_pa[0]
    hold = int(lad.onset_s * ad.FS_HZ) - lad.responses_mv.shape[1] // 64
    ad.write_abf1_epochs(out / f"abf_epochs_{{cls}}.abf", lad.responses_mv, hold, int(ad.STEP_S * ad.FS_HZ),
                         lad.amplitudes_pa[0], step)
    index[f"abf_epochs_{{cls}}.abf"] = None
    ad.write_abf1(out / f"abf_ladder_{{cls}}.abf", lad.responses_mv)
    index[f"abf_ladder_{{cls}}.abf"] = dict(first_amplitude_pa=lad.amplitudes_pa[0], step_pa=step,
                                             onset_s=lad.onset_s, duration_s=ad.STEP_S)
(out / "index.json").write_text(json.dumps(index))
"""

SELECT = """
import json, pickle
from pathlib import Path
from sts.prep.sweeps import SelectionParams, select_sweeps
files = Path({files!r})
result = {{}}
for name, ladder in sorted(json.loads((files / "index.json").read_text()).items()):
    protocol = None
    if ladder:
        from {abf_module} import Protocol
        protocol = Protocol(**ladder)
    sel = select_sweeps(files / name, SelectionParams(), protocol)
    result[name] = (sel.status, sel.reason, sel.traces_mv, dict(sel.attrs))
pickle.dump(result, open({out!r}, "wb"))
"""


def run(code: str, src: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(src), "STS_WARM": "0"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="git revision whose selection is the reference")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="sts_parity_"))
    files = work / "files"
    if not (files / "index.json").exists():
        run(MAKE.format(tests=str(ROOT / "tests"), files=str(files)), ROOT / "src")
    tree = work / "before"
    if not tree.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.before], check=True)
    results = {}
    for label, src in (("before", tree / "src"), ("after", ROOT / "src")):
        abf_module = "sts.recordings.abf" if (src / "sts" / "recordings").is_dir() else "sts.nwb.abf"
        run(SELECT.format(files=str(files), abf_module=abf_module, out=str(work / f"{label}.pkl")), src)
        results[label] = pickle.load(open(work / f"{label}.pkl", "rb"))
    before, after = results["before"], results["after"]
    same = 0
    for name in sorted(before):
        a, b = before[name], after[name]
        if a[0] != b[0]:
            print(f"STATUS {name}: {a[0]} {a[1]!r} -> {b[0]} {b[1]!r}")
        elif a[0] == "ok":
            if a[3]["sweep_numbers"] != b[3]["sweep_numbers"] or not (a[2] == b[2]).all():
                print(f"TRACES {name}: sweeps {a[3]['sweep_numbers']} -> {b[3]['sweep_numbers']}")
                continue
            same += 1
            for key in sorted(set(a[3]) | set(b[3])):
                if str(a[3].get(key)) != str(b[3].get(key)):
                    print(f"ATTR {name} {key}: {a[3].get(key)} -> {b[3].get(key)}")
        elif a[1] != b[1]:
            print(f"REASON {name}: {a[1]!r} -> {b[1]!r}")
    n_ok = sum(r[0] == "ok" for r in before.values())
    print(f"{len(before)} files; {n_ok} selected before; {same} selected with identical sweeps and traces after")


if __name__ == "__main__":
    main()
