"""False-alarm rate of the CNNs' out-of-distribution flag on the holdout, leave-one-out vs out-of-fold threshold.

    python benchmarks/bench_ood.py WORKDIR [--run] [--n-cells 160] [--archs mobilenet_v2 ...]

With --run, first runs the workflow (config/config.yaml, ``synthetic.n_cells`` set to N) in WORKDIR
up to every architecture's ``ood_holdout.csv`` (cohort, scalograms, pack, tune, train, evaluate;
no baseline). Then, per architecture, on the same model.pt and the same holdout scores
(``ood_holdout.csv``: each holdout cell against the final network's training embeddings):

* before: the threshold of models trained before issue 29, the quantile of the training
  embeddings' own leave-one-out scores, recomputed from model.pt's reference set;
* after: model.pt's threshold (``threshold_source`` printed), checked against the quantile of
  the out-of-fold scores recomputed from ``results/tuning/{arch}/ood_folds.npz``.

The holdout cells are unseen cells of the training distribution: every one above the
threshold is a false alarm; the nominal rate is 1 - quantile (1 %).
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--run", action="store_true", help="run the workflow up to the holdout OOD tables first")
    ap.add_argument("--n-cells", type=int, default=160, help="synthetic.n_cells with --run (demo: 160)")
    ap.add_argument("--archs", nargs="+", default=list(ARCHITECTURES))
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args()
    if args.run:
        config = write_config(args.workdir, args.n_cells)
        targets = [f"results/models/{a}/ood_holdout.csv" for a in args.archs]
        wall = snakemake(args.workdir, config, "--cores", str(args.cores), *targets)
        print(f"workflow: {wall:.0f} s for {args.n_cells} cells")
    rows = pd.DataFrame([measure(args.workdir, a) for a in args.archs])
    for when in ("before", "after"):
        rows[f"rate_{when}"] = (100 * rows[f"flagged_{when}"] / rows["n_holdout"]).round(1)
    pd.set_option("display.width", 200)
    print(rows.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    total = rows[["flagged_before", "flagged_after", "n_holdout"]].sum()
    print(f"all architectures: before {total['flagged_before']} of {total['n_holdout']} "
          f"({100 * total['flagged_before'] / total['n_holdout']:.1f} %), after {total['flagged_after']} "
          f"({100 * total['flagged_after'] / total['n_holdout']:.1f} %); nominal 1 %")  # fmt: skip


if __name__ == "__main__":
    main()
