"""``sts predict``: classify new recordings with any served model (CNN, LightGBM baseline, fusion);
the work is ``sts.serve.predict.run``'s."""

from __future__ import annotations

from sts.settings import TuneSettings, default


def _predict(args) -> int:
    from sts.serve.predict import run
    from sts.prep.protocol_args import protocol_from_args

    if not args.inputs and not args.table:
        raise SystemExit("sts predict: give recordings (FILE_OR_DIR) or --table CSV")
    overrides = {"tolerance_pa": args.tolerance_pa, "any_square_step": args.any_square_step or None,
                 "long_square_names": args.long_square_names}  # fmt: skip
    return run(args.model, args.inputs, args.out, figures_dir=args.figures, device=args.device,
               protocol=protocol_from_args(args), threads=args.threads, table=args.table,
               selection_overrides=overrides, calibrate=not args.uncalibrated)  # fmt: skip


def add_parser(sub) -> None:
    """Register ``predict`` on the ``sts`` subparsers."""
    from sts.prep.protocol_args import add_protocol_options

    p = sub.add_parser("predict", help="classify new recordings (.nwb/.abf) with a trained model.pt",
                       description="Prepare every recording exactly as the model's training cells were, from "
                       "the parameters saved in model.pt (sweep window and rate, CWT frequencies, "
                       "normalisation, input size), never from the current config, and classify it. OUT.csv: "
                       "one row per file: file, specimen_id (the file's stem), status (ok or excluded), "
                       "reason, predicted, p_<class> per class in the model's order, rheobase_pa, second_pa, "
                       "second_offset_pa (|second - (rheobase + 40)|), rheobase_sweep, second_sweep. A file "
                       "that cannot be used is an excluded row with its reason; the exit status is nonzero only "
                       "when no file could be read. The ABF protocol options apply to every ABF input without a "
                       "command waveform; a --table gives each file its own. With the LightGBM baseline's model, "
                       "rheobase_pa/rheobase_sweep are ipfx's and second_* stay empty.")  # fmt: skip
    p.add_argument("inputs", nargs="*", metavar="FILE_OR_DIR",
                   help="recordings, or folders searched (recursively, sorted) for .nwb and .abf files")  # fmt: skip
    p.add_argument("--model", required=True,
                   help="model.pt from sts train (results/models/ARCH/model.pt), or the LightGBM baseline's "
                   "model folder (results/baseline/model, or its model.json): EP features of each file by "
                   "ipfx with the saved parameters; adds ood_score and in_distribution; or a fusion's "
                   "model.json (results/fusion/model.json): every member on each file, then the stacker. "
                   "A calibration.json beside the model makes the probabilities calibrated (column "
                   "calibrated)")  # fmt: skip
    p.add_argument("--out", required=True, help="output CSV, one row per input file (written atomically)")
    p.add_argument("--figures", default=None, metavar="DIR",
                   help="also write DIR/<specimen_id>.png per classified cell: both sweeps' traces, their "
                   "scalograms, the saliency of the predicted class and the probabilities (a fusion: each CNN "
                   "member's saliency and each member's vote; LightGBM: its rheobase and hero sweeps and the "
                   "cell's features in training SDs, no scalogram)")  # fmt: skip
    p.add_argument("--table", default=None, metavar="CSV",
                   help="inputs listed as for a local cohort (file; optional specimen_id, label, and the ABF "
                   "ladder first_amplitude_pa, step_pa, onset_s, duration_s per file)")  # fmt: skip
    g = p.add_argument_group("which sweeps qualify (the window, rate and spike threshold stay the model's)")
    g.add_argument("--tolerance-pa", type=float, default=None,
                   help="accept a second sweep this far from rheobase + 40 pA (coarser ladders; default: the "
                   "model's)")  # fmt: skip
    g.add_argument("--any-square-step", action="store_true",
                   help="NWB files: any sweep whose ladder step is found counts, whatever its protocol name")
    g.add_argument("--long-square-names", type=lambda s: [n for n in s.split(",") if n], default=None,
                   metavar="NAME,...", help="NWB stimulus names of the ladder (default: the model's)")
    p.add_argument("--uncalibrated", action="store_true",
                   help="raw probabilities even when a calibration.json (temperature) sits beside the model")
    add_protocol_options(p)
    p.add_argument("--device", default=default(TuneSettings, "device"), help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.set_defaults(func=_predict)
