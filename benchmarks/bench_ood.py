"""False-alarm rate of the CNNs' out-of-distribution flag on the holdout, leave-one-out vs out-of-fold threshold.

    python benchmarks/bench_ood.py WORKDIR [--run] [--n-cells 160] [--archs mobilenet_v2 ...] [--extra DIR]

With --run, first runs the workflow (config/config.yaml, ``synthetic.n_cells`` set to N) in WORKDIR
up to every architecture's ``ood_holdout.csv`` (cohort, scalograms, pack, tune, train, evaluate;
no baseline). Then, per architecture, on the same model.pt and the same holdout scores
(``ood_holdout.csv``: each holdout cell against the final network's training embeddings):

* before: the threshold of models trained before issue 29, the quantile of the training
  embeddings' own leave-one-out scores, recomputed from model.pt's reference set;
* after: model.pt's threshold (``threshold_source`` printed), checked against the quantile of
  the out-of-fold scores recomputed from ``results/tuning/{arch}/ood_folds.npz``.

The holdout cells are unseen cells of the training distribution: every one above the
threshold is a false alarm; the nominal rate is 1 - quantile (1 %). The demo's holdout (31
cells) is too small to tell 1 % from 3 %: ``--extra DIR`` also scores every packed cell of
another synthetic cohort (a workflow run in DIR up to ``results/cnn/packed_{size}px.h5``, e.g.
``synthetic.seed: 2``, ``n_cells: 400``), none of which any model trained on, with both thresholds,
and the same images upside down (frequency axis reversed) or with their pixels shuffled,
which a detector should flag (``flipped_pct_*``, ``shuffled_pct_*``: % above each threshold).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import snakemake, write_config  # noqa: E402

import sts.cnn  # noqa: E402,F401  (sets OMP_WAIT_POLICY before torch loads)
from sts.cnn import fold_embeddings  # noqa: E402
from sts.cnn.safe_torch import safe_load  # noqa: E402
from sts.settings import ARCHITECTURES  # noqa: E402
from sts.trust.ood import EmbeddingNovelty, loo_threshold, out_of_fold_scores  # noqa: E402


def measure(workdir: Path, arch: str) -> dict:
    meta = safe_load(workdir / "results" / "models" / arch / "model.pt")
    ood = EmbeddingNovelty.from_state(meta["ood"])
    holdout = pd.read_csv(workdir / "results" / "models" / arch / "ood_holdout.csv")
    scores = holdout["ood_score"].to_numpy(float)
    _, before = loo_threshold(ood.train, ood.k, ood.quantile)
    folds = fold_embeddings.load(workdir / "results" / "tuning" / arch / fold_embeddings.FILE, arch).folds
    oof = out_of_fold_scores(folds, ood.k) if folds else np.array([np.nan])
    return {"arch": arch, "n_train": len(ood.train), "n_holdout": len(scores), "source": ood.threshold_source,
            "loo_threshold": before, "oof_threshold": float(np.quantile(oof, ood.quantile)),
            "model_threshold": ood.threshold, "n_oof": len(oof),
            "flagged_before": int((scores > before).sum()), "flagged_after": int((scores > ood.threshold).sum()),
            "holdout_median_score": float(np.median(scores))}  # fmt: skip


def measure_extra(workdir: Path, extra: Path, arch: str) -> dict:
    """Both thresholds on every packed cell of another cohort (the model's input size)."""
    from sts.cnn.embed import proba_and_embeddings
    from sts.cnn.evaluate import read_ood
    from sts.cnn.final import load_model
    from sts.cnn.pack import load_packed
    from sts.cnn.train import select_device

    model, meta = load_model(workdir / "results" / "models" / arch / "model.pt")
    ood = read_ood(meta, arch, model)
    packed = load_packed(extra / "results" / "cnn" / f"packed_{meta['input_size'][0]}px.h5")
    if list(packed.classes) != list(meta["classes"]) or json.loads(packed.norm.to_json()) != meta["normalisation"]:
        raise SystemExit(f"{extra}: packed with other classes or normalisation than {arch}'s model")
    trained = set(pd.read_csv(workdir / "results" / "manifest.csv", dtype={"specimen_id": str})["specimen_id"])
    idx = np.flatnonzero(~np.isin(packed.specimen_id.astype(str), list(trained)))  # cells no model has seen
    cpu = select_device("cpu")
    scores = ood.score(proba_and_embeddings(model, packed.images, idx, cpu)[1])
    _, before = loo_threshold(ood.train, ood.k, ood.quantile)
    row = {"arch": arch, "n_cells": len(idx), "flagged_before": int((scores > before).sum()),
           "flagged_after": int((scores > ood.threshold).sum())}  # fmt: skip
    # Clearly foreign inputs, which a detector should flag: the same images upside down
    # (frequency axis reversed) and with their pixels shuffled (same values, no structure).
    images = np.asarray(packed.images[idx], dtype=np.float32)
    pixels = np.random.default_rng(0).permutation(images.shape[2] * images.shape[3])
    foreign = {"flipped": images[:, :, ::-1, :], "shuffled": images.reshape(*images.shape[:2], -1)[..., pixels]}
    for name, x in foreign.items():
        x = np.ascontiguousarray(x.reshape(images.shape))
        s = ood.score(proba_and_embeddings(model, x, np.arange(len(x)), cpu)[1])
        row |= {f"{name}_pct_before": round(100 * float((s > before).mean()), 1),
                f"{name}_pct_after": round(100 * float((s > ood.threshold).mean()), 1)}  # fmt: skip
    return row


def report(rows: pd.DataFrame, n: str, label: str) -> None:
    for when in ("before", "after"):
        rows[f"rate_{when}"] = (100 * rows[f"flagged_{when}"] / rows[n]).round(1)
    print(f"\n{label}")
    print(rows.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    total = rows[["flagged_before", "flagged_after", n]].sum()
    print(f"all architectures: before {total['flagged_before']} of {total[n]} "
          f"({100 * total['flagged_before'] / total[n]:.1f} %), after {total['flagged_after']} "
          f"({100 * total['flagged_after'] / total[n]:.1f} %); nominal 1 %")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--run", action="store_true", help="run the workflow up to the holdout OOD tables first")
    ap.add_argument("--n-cells", type=int, default=160, help="synthetic.n_cells with --run (demo: 160)")
    ap.add_argument("--archs", nargs="+", default=list(ARCHITECTURES))
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--extra", type=Path, default=None, help="workdir of another cohort packed by the workflow")
    args = ap.parse_args()
    if args.run:
        config = write_config(args.workdir, args.n_cells)
        targets = [f"results/models/{a}/ood_holdout.csv" for a in args.archs]
        wall = snakemake(args.workdir, config, "--cores", str(args.cores), *targets)
        print(f"workflow: {wall:.0f} s for {args.n_cells} cells")
    pd.set_option("display.width", 200)
    report(pd.DataFrame([measure(args.workdir, a) for a in args.archs]), "n_holdout", "holdout cells (ood_holdout.csv)")
    if args.extra:
        rows = pd.DataFrame([measure_extra(args.workdir, args.extra, a) for a in args.archs])
        report(rows, "n_cells", f"every packed cell of {args.extra} that the models never saw")


if __name__ == "__main__":
    main()
