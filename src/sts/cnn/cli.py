"""``sts pack | tune | train | evaluate | explain | fetch-weights``: the deep-learning stage.

The stage commands map their arguments onto ``sts.cnn.stages``, the functions the workflow's
rules run. Handlers import torch lazily, so ``sts --help`` and the per-cell commands stay fast.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from sts.settings import (
    DTYPES, SALIENCY_METHODS, CnnJobSettings, LabelSettings, NormParams, PackSettings, SaliencySettings, TuneSettings,
    default,
)


def _json_arg(text: str | None) -> dict:
    """A JSON object given inline or as a .json file."""
    if not text:
        return {}
    value = json.loads(Path(text).read_text() if text.endswith(".json") else text)
    if not isinstance(value, dict):
        raise SystemExit(f"expected a JSON object, got {text!r}")
    return value


def _pack(args) -> int:
    from sts.cnn.stages import pack_stage

    pack_stage(args.manifest, args.scalograms, args.out, args.size, _json_arg(args.norm), classes=args.classes,
               dtype=args.dtype)  # fmt: skip
    return 0


def _tune_settings(args):
    """TuneSettings of the options (their defaults are the dataclass's, the schema's)."""
    return TuneSettings(arch=args.arch, n_trials=args.trials, max_epochs=args.max_epochs, seed=args.seed,
                        space=_json_arg(args.space), pruner=args.pruner, weights=args.weights,
                        weights_path=args.weights_path, device=args.device,
                        recalibrate_bn=args.recalibrate_bn)  # fmt: skip


def _tune(args) -> int:
    from sts.cnn.stages import tune_gather_stage, tune_stage

    settings = _tune_settings(args)
    if args.worker is not None:
        tune_stage(args.packed, args.out_dir, settings, args.worker, args.trials_per_gpu, args.storage, args.threads)
    elif args.gather:
        tune_gather_stage(args.packed, args.out_dir, settings, args.storage)
    else:  # the whole search in this process (no rule runs it this way): worker 0, then the gather
        from sts.cnn.pack import load_packed
        from sts.cnn.tune import tune

        tune(load_packed(args.packed), args.out_dir, settings, threads=args.threads, storage_url=args.storage)
    return 0


def _train(args) -> int:
    from sts.cnn import fold_embeddings
    from sts.cnn.stages import train_stage

    ood_folds = args.ood_folds
    if ood_folds is None:  # the search's own, beside its best_params.json (as the workflow passes it)
        beside = Path(args.best_params).parent / fold_embeddings.FILE
        ood_folds = beside if beside.is_file() else None
    elif ood_folds == "none":
        ood_folds = None
    train_stage(args.packed, args.best_params, args.out_dir, args.arch, seed=args.seed, weights=args.weights,
                weights_path=args.weights_path, device=args.device, recalibrate_bn=args.recalibrate_bn,
                preparation=_json_arg(args.preparation), threads=args.threads, scheme=args.scheme,
                ood_folds_path=ood_folds)  # fmt: skip
    return 0


def _evaluate(args) -> int:
    from sts.cnn.stages import evaluate_stage

    evaluate_stage(args.model, args.packed, args.out_dir, device=args.device, threads=args.threads)
    return 0


def _explain(args) -> int:
    from sts.cnn.stages import explain_stage

    explain_stage(args.model, args.packed, args.out_dir, method=args.method, ig_steps=args.ig_steps,
                  device=args.device, threads=args.threads)  # fmt: skip
    return 0


def _fetch_weights(args) -> int:
    from sts.cnn.models import fetch_weights

    for arch in args.arch:
        print(fetch_weights(arch, Path(args.out_dir) / f"{arch}.pth"))
    return 0


def _common(p) -> None:
    p.add_argument("--device", default=default(TuneSettings, "device"), help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")


def _weights(p) -> None:
    p.add_argument("--recalibrate-bn", action="store_true",
                   help="re-estimate batch-norm statistics on the training cells every epoch (small cohorts)")
    p.add_argument("--weights", choices=["none", "imagenet"], default=default(TuneSettings, "weights"))
    p.add_argument("--weights-path", default=None, help="pre-staged ImageNet state dict (sts fetch-weights)")


def add_parser(sub) -> None:
    """Register the deep-learning subcommands on an argparse subparsers object."""
    p = sub.add_parser("pack", help="pack all usable cells' scalograms into one (N, 3, H, W) array",
                       description="Resize and normalise every status-ok cell of the manifest into one "
                       "contiguous HDF5 array (channels rheobase, +40 pA, rheobase) with ids, labels, split "
                       "and folds.")  # fmt: skip
    p.add_argument("manifest", help="manifest CSV")
    p.add_argument("scalograms", help="folder of {specimen_id}.h5 scalogram files")
    p.add_argument("out", help="packed HDF5 file")
    p.add_argument("--size", type=int, default=default(PackSettings, "input_size"),
                   help="image side in px (default %(default)s; the study: 224, 299 for inception_v3)")
    p.add_argument("--norm", default=None, help="JSON of the normalisation, absent keys at their defaults: "
                   f"{json.dumps(asdict(NormParams()))}".replace("%", "%%"))  # fmt: skip
    p.add_argument("--classes", nargs="+", default=None, help="class order (default: sorted labels)")
    p.add_argument("--dtype", choices=DTYPES, default=default(PackSettings, "dtype"))
    p.set_defaults(func=_pack)

    p = sub.add_parser("tune", help="Optuna TPE search of one CNN over the CV folds (resumable, parallel)",
                       description="Mean CV balanced accuracy over the manifest's training folds; median "
                       "pruning; the study is journaled in OUT_DIR (or an RDB, --storage), so a killed search "
                       "resumes. Writes best_params.json, trials.csv, search.json, oof_best.csv (the best "
                       "trial's out-of-fold predictions), ood_folds.npz (its folds' embeddings, for sts train). "
                       "Parallel: run `--worker K` for K = 0..N-1 at once (processes, cluster jobs), then "
                       "`--gather`.")  # fmt: skip
    p.add_argument("packed", help="packed HDF5 from sts pack")
    p.add_argument("out_dir")
    p.add_argument("--arch", required=True)
    p.add_argument("--trials", type=int, default=default(TuneSettings, "n_trials"))
    p.add_argument("--max-epochs", type=int, default=default(TuneSettings, "max_epochs"))
    p.add_argument("--seed", type=int, default=default(TuneSettings, "seed"))
    p.add_argument("--space", default=None, help='search-space overrides, JSON or .json file, e.g. '
                   '{"batch_size": [32], "learning_rate": {"low": 0.001, "high": 0.01}}')  # fmt: skip
    p.add_argument("--pruner", choices=["median", "none"], default=default(TuneSettings, "pruner"))
    p.add_argument("--storage", default=None, metavar="URL",
                   help="RDB URL of the study (postgresql://, mysql://, sqlite:///); default OUT_DIR/journal.log")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--worker", type=int, default=None, metavar="K",
                      help="only run worker K (one live process per K): take trials until the study has "
                      "--trials finished; a restarted K retries the trial it was killed in; writes "
                      "OUT_DIR/worker_K.done")  # fmt: skip
    mode.add_argument("--gather", action="store_true", help="only write the outputs (after every worker)")
    p.add_argument("--trials-per-gpu", type=int, default=default(CnnJobSettings, "trials_per_gpu"), metavar="M",
                   help="with --worker K: M workers at once (processes, ids K*M..K*M+M-1, --threads split "
                   "between them) on one device; each holds its own copy of the packed images on a GPU")  # fmt: skip
    _weights(p)
    _common(p)
    p.set_defaults(func=_tune)

    p = sub.add_parser("train", help="refit a CNN with its best parameters on all training cells -> model.pt")
    p.add_argument("packed")
    p.add_argument("best_params", help="best_params.json from sts tune")
    p.add_argument("out_dir")
    p.add_argument("--arch", required=True, help="the architecture tuned in BEST_PARAMS (checked)")
    p.add_argument("--seed", type=int, default=default(TuneSettings, "seed"))
    p.add_argument("--preparation", default=None, help="JSON of the sweep/scalogram parameters stored in model.pt")
    p.add_argument("--scheme", default=LabelSettings().scheme,
                   help="class scheme of the packed labels, stored in model.pt (default: %(default)s)")
    p.add_argument("--ood-folds", default=None, metavar="NPZ",
                   help="the search's fold embeddings, for the OOD threshold from out-of-fold scores (default: "
                   "ood_folds.npz beside BEST_PARAMS, as sts tune writes it); 'none' or no such file: from the "
                   "training cells' leave-one-out scores (too tight)")  # fmt: skip
    _weights(p)
    _common(p)
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="holdout metrics of a model.pt (metrics.json, predictions.csv)")
    p.add_argument("model")
    p.add_argument("packed")
    p.add_argument("out_dir")
    _common(p)
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("explain", help="per-class saliency maps on the scalogram's axes")
    p.add_argument("model")
    p.add_argument("packed")
    p.add_argument("out_dir")
    p.add_argument("--method", choices=SALIENCY_METHODS, default=default(SaliencySettings, "method"))
    p.add_argument("--ig-steps", type=int, default=default(SaliencySettings, "ig_steps"))
    _common(p)
    p.set_defaults(func=_explain)

    p = sub.add_parser("fetch-weights", help="download ImageNet weights through torchvision (network)",
                       description="Save each ARCH's torchvision ImageNet state dict as OUT_DIR/ARCH.pth, for "
                       "cnn.weights: imagenet with cnn.weights_dir.")  # fmt: skip
    p.add_argument("out_dir")
    p.add_argument("arch", nargs="+")
    p.set_defaults(func=_fetch_weights)
