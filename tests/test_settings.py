"""One home per setting: the dataclasses of sts.settings carry the config's values, the command
line's defaults are theirs, and the schema's defaults agree with them."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from sts.acquire.cell import Sources
from sts.acquire.labels import PatchseqColumns
from sts.cli import SCALOGRAM_FLAGS, build_parser, selection_params, settings_from_args
from sts.settings import (
    ACQUIRE_DEFAULTS, QcParams, ScalogramParams, SelectionParams, SplitParams, SynthParams, TuneSettings, default,
    rule_params,
)

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())


def validated(name: str) -> dict:
    """A config as the workflow sees it: validated, the schema's defaults filled in."""
    config = yaml.safe_load((ROOT / name).read_text())
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    return config


@pytest.mark.parametrize("name", ["config/config.yaml", ".test/config.yaml"])
def test_dataclasses_carry_the_config_values(name):
    config = validated(name)
    params = rule_params(config)
    sweeps = SelectionParams.from_dict(params["sweeps"])
    for key, value in config["sweeps"].items():
        assert getattr(sweeps, key) == value, key
    scalogram = ScalogramParams.from_dict(params["scalogram"])
    assert asdict(scalogram) == config["scalogram"]
    assert params["split"] == {**asdict(SplitParams()), **config["split"]}
    assert SplitParams(**params["split"]) == SplitParams(**config["split"])
    assert SynthParams(**params["synthetic"]) == SynthParams(**config["synthetic"])
    # the per-cell rules' params are exactly the blocks as written (absent keys: the code's defaults)
    assert params["sweeps"] == config["sweeps"] and params["scalogram"] == config["scalogram"]


def test_params_json_round_trips_through_the_command_line():
    """What common.smk passes (--params JSON of the block) is what the command builds."""
    config = validated("config/config.yaml")
    sweeps = {**config["sweeps"], "min_step_s": 0.2, "qc": {"min_mv": -140}, "long_square_names": ["Long"]}
    args = build_parser().parse_args(["select-sweeps", "in.nwb", "out.h5", "--specimen-id", "1",
                                      "--params", json.dumps(sweeps)])  # fmt: skip
    got = selection_params(args)
    assert got == SelectionParams.from_dict(sweeps)
    assert got.qc == QcParams(min_mv=-140.0) and got.long_square_names == ("Long",) and got.min_step_s == 0.2
    args = build_parser().parse_args(["scalogram", "a.h5", "b.h5", "--params", json.dumps(config["scalogram"])])
    assert settings_from_args(args, ScalogramParams, SCALOGRAM_FLAGS) == ScalogramParams.from_dict(config["scalogram"])


def test_params_keys_override_flags_and_unknown_keys_stop():
    args = build_parser().parse_args(["select-sweeps", "a", "b", "--specimen-id", "1", "--fs-hz", "2000",
                                      "--window-s", "0.5", "--params", '{"fs_hz": 8000}'])  # fmt: skip
    assert (selection_params(args).fs_hz, selection_params(args).window_s) == (8000.0, 0.5)
    args = build_parser().parse_args(["select-sweeps", "a", "b", "--specimen-id", "1", "--params", '{"fs": 1}'])
    with pytest.raises(SystemExit, match=r"sweeps: unknown settings \['fs'\]"):
        selection_params(args)


def test_numbers_are_cast_as_the_fields_say():
    assert SelectionParams.from_dict({"fs_hz": 4000}).fs_hz == 4000.0
    assert isinstance(SelectionParams.from_dict({"fs_hz": 4000}).fs_hz, float)
    assert ScalogramParams.from_dict({"n_freqs": 180.0, "fmin_hz": 20}) == ScalogramParams()
    with pytest.raises(ValueError, match="preparation.scalogram: unknown settings"):
        ScalogramParams.from_dict({"scales": 3}, "preparation.scalogram")


def parse(*argv: str):
    return build_parser().parse_args(list(argv))


def test_command_line_defaults_are_the_dataclass_defaults():
    assert selection_params(parse("select-sweeps", "a", "b", "--specimen-id", "1")) == SelectionParams()
    assert settings_from_args(parse("scalogram", "a", "b"), ScalogramParams, SCALOGRAM_FLAGS) == ScalogramParams()
    args = parse("manifest", "m.csv", "dir", "out.csv")
    assert SplitParams(**{k: getattr(args, k) for k in asdict(SplitParams())}) == SplitParams()
    args = parse("synth", "metadata", "out.csv")
    assert SynthParams(args.n_cells, args.seed, args.defect_fraction) == SynthParams()
    args = parse("acquire", "cell", "1", "o.nwb", "--report", "r.json", "--dataset", "seq")
    assert selection_params(args) == SelectionParams()
    assert (args.dandi_api, args.dandiset, args.dandi_mode, args.block_size_kb * 1024) == (
        Sources.dandi_api, Sources.dandiset, Sources.dandi_mode, Sources.block_size)
    acq = {k: getattr(args, k) for k in ("dandi_api", "dandiset", "dandi_mode", "block_size_kb", "retries",
                                         "backoff_s", "timeout_s")}  # fmt: skip
    assert acq == {k: ACQUIRE_DEFAULTS[k] for k in acq}
    args = parse("tune", "p.h5", "out", "--arch", "resnet18")
    tune = {"n_trials": args.trials, "max_epochs": args.max_epochs, "seed": args.seed, "pruner": args.pruner,
            "device": args.device, "weights": args.weights}  # fmt: skip
    assert tune == {k: default(TuneSettings, k) for k in tune}


def schema_defaults(block: str) -> dict:
    props = SCHEMA["properties"][block]["properties"]
    return {k: v["default"] for k, v in props.items() if "default" in v}


def test_schema_defaults_agree_with_the_dataclasses():
    assert schema_defaults("acquire") == ACQUIRE_DEFAULTS
    assert schema_defaults("scalogram") == {"compression": ScalogramParams().compression}
    cnn = schema_defaults("cnn")
    pruner = {k: v["default"] for k, v in SCHEMA["properties"]["cnn"]["properties"]["pruner"]["properties"].items()}
    tune = {"n_trials": cnn["trials"], "max_epochs": cnn["max_epochs"], "seed": cnn["seed"],
            "pruner": pruner["kind"], "pruner_startup_trials": pruner["startup_trials"],
            "pruner_warmup_epochs": pruner["warmup_epochs"], "weights": cnn["weights"], "device": cnn["device"],
            "recalibrate_bn": cnn["recalibrate_bn"]}  # fmt: skip
    assert tune == {k: default(TuneSettings, k) for k in tune}
    columns = PatchseqColumns()
    assert (columns.specimen_id, columns.ttype, columns.dendrite) == (
        ACQUIRE_DEFAULTS["patchseq_id_column"], ACQUIRE_DEFAULTS["patchseq_ttype_column"],
        ACQUIRE_DEFAULTS["patchseq_dendrite_column"])
