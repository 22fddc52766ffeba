"""Are two finished run folders' results the same? (refactors must not change outputs)

    python benchmarks/compare_runs.py RUN_A RUN_B [--subdir results]

Run the same config on two commits (e.g. `snakemake --cores all -d RUN_A` with each commit's
Snakefile), then compare: every CSV (values; NaN equal to NaN), JSON (recursively), HDF5
(every dataset's values and dtype, every attribute) and torch file (tensors; weights-only
loading) under SUBDIR, keys and columns that hold timings, dates, versions or absolute paths
aside, and each run folder's own absolute path read as <RUN> wherever text holds it (exclusion
reasons of cells whose files sit inside the run folder). Figures (.png/.html/.md), logs and
Snakemake's bookkeeping are only checked for
presence. Prints one line per differing or missing file and a summary; exit status 1 when
anything differs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

VOLATILE = re.compile(r"(second|_s$|_s_|^s$|time|date|elapsed|duration|version|host|path|dir$|file$|sha256|log|object_id)", re.I)  # object_id: a fresh UUID in every NWB written
PRESENCE_ONLY = {".png", ".html", ".md", ".log", ".txt", ".done", ".svg"}
RUNS = {"A": "", "B": ""}  # each run folder's absolute path: read as <RUN> in text (exclusion reasons)


def unrun(value, side: str):
    """``value`` with its run folder's absolute path replaced by <RUN> (strings only)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value.replace(RUNS[side], "<RUN>") if isinstance(value, str) and RUNS[side] else value


def same_values(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype.kind in "fc" and b.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def diff_json(a, b, where: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = {k for k in a.keys() | b.keys() if not VOLATILE.search(str(k))}
        for k in sorted(keys, key=str):
            if k not in a or k not in b:
                return f"{where}/{k}: only in {'B' if k not in a else 'A'}"
            d = diff_json(a[k], b[k], f"{where}/{k}")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            d = diff_json(x, y, f"{where}[{i}]")
            if d:
                return d
        return None
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return None
    a, b = unrun(a, "A"), unrun(b, "B")
    return None if a == b else f"{where}: {a!r} vs {b!r}"


def diff_csv(a: Path, b: Path) -> str | None:
    x, y = pd.read_csv(a), pd.read_csv(b)
    x, y = (t.apply(lambda col: col.map(lambda v: unrun(v, side)) if col.dtype == object else col)
            for t, side in ((x, "A"), (y, "B")))  # fmt: skip
    cols = [c for c in x.columns if not VOLATILE.search(c)]
    if [c for c in y.columns if not VOLATILE.search(c)] != cols:
        return f"columns {list(x.columns)} vs {list(y.columns)}"
    if len(x) != len(y):
        return f"{len(x)} vs {len(y)} rows"
    for c in cols:
        if not x[c].equals(y[c]):  # NaN in the same place counts as equal
            rows = np.flatnonzero(~((x[c] == y[c]) | (x[c].isna() & y[c].isna())).to_numpy())
            return f"column {c!r} differs in {len(rows)} rows (first: row {rows[0] if len(rows) else '?'}; dtypes {x[c].dtype}, {y[c].dtype})"
    return None


def has_refs(dtype) -> bool:
    return bool(h5py.check_ref_dtype(dtype)) or any(has_refs(dtype[n]) for n in dtype.names or ())


def targets(f, value):
    """``value`` with every object reference replaced by the path of the object it points to."""
    if isinstance(value, h5py.Reference):
        return f[value].name if value else ""
    if isinstance(value, np.ndarray):
        return [targets(f, v) for v in value.ravel()]
    if isinstance(value, np.void):
        return tuple(targets(f, v) for v in value)
    return value.item() if isinstance(value, np.generic) else value


def diff_h5(a: Path, b: Path) -> str | None:
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        names_a, names_b = [], []
        fa.visit(names_a.append)
        fb.visit(names_b.append)
        if sorted(names_a) != sorted(names_b):
            return f"objects {sorted(set(names_a) ^ set(names_b))} in one file only"
        for name in ["/"] + names_a:
            oa, ob = fa[name], fb[name]
            for k in set(oa.attrs) | set(ob.attrs):
                if VOLATILE.search(k):
                    continue
                if k not in oa.attrs or k not in ob.attrs or not same_values(unrun(oa.attrs[k], "A"),
                                                                             unrun(ob.attrs[k], "B")):
                    return f"{name} attribute {k!r} differs"
            if isinstance(oa, h5py.Dataset):
                va, vb = oa[()], ob[()]
                if has_refs(oa.dtype):  # object references hold addresses: compare what they point to
                    same = oa.dtype == ob.dtype and targets(fa, va) == targets(fb, vb)
                else:
                    same = oa.dtype == ob.dtype and same_values(va, vb)
                if not same:
                    return f"{name} differs ({oa.dtype} {oa.shape} vs {ob.dtype} {ob.shape})"
    return None


def diff_torch(a: Path, b: Path) -> str | None:
    import torch

    def flat(obj, prefix=""):
        if isinstance(obj, dict):
            for k, v in obj.items():
                yield from flat(v, f"{prefix}/{k}")
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                yield from flat(v, f"{prefix}[{i}]")
        else:
            yield prefix, obj

    xa = dict(flat(torch.load(a, weights_only=True, map_location="cpu")))
    xb = dict(flat(torch.load(b, weights_only=True, map_location="cpu")))
    keys = {k for k in xa.keys() | xb.keys() if not VOLATILE.search(k.rsplit("/", 1)[-1])}
    for k in sorted(keys):
        if k not in xa or k not in xb:
            return f"{k}: only in {'B' if k not in xa else 'A'}"
        va, vb = xa[k], xb[k]
        if isinstance(va, torch.Tensor) or isinstance(vb, torch.Tensor):
            if not (isinstance(va, torch.Tensor) and isinstance(vb, torch.Tensor) and va.dtype == vb.dtype
                    and same_values(va.float().numpy(), vb.float().numpy())):
                return f"{k}: tensors differ"
        elif diff_json(va, vb):
            return f"{k}: {va!r} vs {vb!r}"
    return None


def compare(a: Path, b: Path) -> str | None:
    suffix = a.suffix.lower()
    if suffix in PRESENCE_ONLY:
        return None
    if suffix == ".csv":
        return diff_csv(a, b)
    if suffix == ".json":
        return diff_json(json.loads(a.read_text()), json.loads(b.read_text()))
    if suffix in {".h5", ".hdf5", ".nwb"}:
        try:
            return diff_h5(a, b)
        except OSError:  # not readable as HDF5 (e.g. a deliberately truncated file): its bytes
            return None if a.read_bytes() == b.read_bytes() else "unreadable as HDF5, and the bytes differ"
    if suffix in {".pt", ".pth"}:
        return diff_torch(a, b)
    return None if a.read_bytes() == b.read_bytes() else "bytes differ"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_a", type=Path)
    ap.add_argument("run_b", type=Path)
    ap.add_argument("--subdir", default="results")
    args = ap.parse_args()
    root_a, root_b = args.run_a / args.subdir, args.run_b / args.subdir
    RUNS.update(A=str(args.run_a.resolve()), B=str(args.run_b.resolve()))
    files = lambda root: {p.relative_to(root) for p in root.rglob("*") if p.is_file() and ".snakemake" not in p.parts}  # noqa: E731
    fa, fb = files(root_a), files(root_b)
    problems = [f"only in A: {p}" for p in sorted(fa - fb)] + [f"only in B: {p}" for p in sorted(fb - fa)]
    same = 0
    for rel in sorted(fa & fb):
        try:
            d = compare(root_a / rel, root_b / rel)
        except Exception as exc:  # an unreadable file is a difference, not a crash of the comparison
            d = f"cannot compare: {type(exc).__name__}: {exc}"
        if d:
            problems.append(f"differs: {rel}: {d}")
        else:
            same += 1
    for line in problems:
        print(line)
    print(f"{same} of {len(fa | fb)} files the same (timings, versions, paths and figures aside); "
          f"{len(problems)} differ or are missing")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
