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
from sts.acquire.schemes import get_scheme
from sts.cli import build_parser
from sts.prep.cli import SCALOGRAM_FLAGS, selection_params, settings_from_args
from sts.settings import (
    ACQUIRE_DEFAULTS, DEFAULT_DEVICE, TRAIN_KEYS, CrossDatasetSettings, LabelSettings, NormParams, PackSettings,
    QcParams,
    SaliencySettings, ScalogramParams, SelectionParams, SplitParams, SynthParams, TuneSettings, cnn_params,
    cnn_settings, default, rule_params,
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


def nested_defaults(*path: str) -> dict:
    props = SCHEMA["properties"]
    for key in path[:-1]:
        props = props[key]["properties"]
    return {k: v["default"] for k, v in props[path[-1]]["properties"].items() if "default" in v}


def test_schema_qc_defaults_agree_with_the_dataclass():
    assert nested_defaults("sweeps", "qc") == asdict(QcParams()) == asdict(SelectionParams().qc)
    # config/lab_abf.yaml spells the qc block out for lab users to tune: the same values
    lab = yaml.safe_load((ROOT / "config" / "lab_abf.yaml").read_text())["sweeps"]["qc"]
    assert lab == asdict(QcParams())


def test_schema_cnn_defaults_agree_with_the_dataclasses():
    cnn = schema_defaults("cnn")
    assert {"input_size": cnn["input_size"], "dtype": cnn["dtype"]} == {
        k: default(PackSettings, k) for k in ("input_size", "dtype")}
    assert nested_defaults("cnn", "normalisation") == asdict(NormParams()) == asdict(PackSettings().normalisation)
    assert nested_defaults("cnn", "saliency") == asdict(SaliencySettings())
    assert schema_defaults("cross_dataset") == asdict(CrossDatasetSettings())
    # choices: the schema's enums are the dataclasses' checks
    props = SCHEMA["properties"]["cnn"]["properties"]
    for value in props["dtype"]["enum"]:
        PackSettings(dtype=value)
    for value in props["normalisation"]["properties"]["scaling"]["enum"]:
        NormParams(scaling=value)
    for value in props["saliency"]["properties"]["method"]["enum"]:
        SaliencySettings(method=value)
    with pytest.raises(ValueError, match="expected one of"):
        PackSettings(dtype="int8")
    with pytest.raises(ValueError, match="expected one of"):
        SaliencySettings(method="occlusion")


def test_cnn_command_line_defaults_are_the_dataclass_defaults():
    args = parse("pack", "m.csv", "dir", "out.h5")
    assert (args.size, args.dtype, args.norm) == (default(PackSettings, "input_size"), PackSettings().dtype, None)
    args = parse("train", "p.h5", "best.json", "out", "--arch", "resnet18")
    assert {k: getattr(args, k) for k in TRAIN_KEYS} == {k: default(TuneSettings, k) for k in TRAIN_KEYS}
    args = parse("explain", "model.pt", "p.h5", "out")
    assert SaliencySettings(args.method, args.ig_steps) == SaliencySettings()
    assert args.device == parse("evaluate", "m", "p", "o").device == DEFAULT_DEVICE == default(TuneSettings, "device")


def test_train_params_take_the_architecture_defaults():
    from sts.cnn.train import TrainParams

    with pytest.raises(TypeError, match="max_epochs"):
        TrainParams()  # a search fit gets cnn.max_epochs, the refit final_epochs: never a default
    fit = TrainParams(max_epochs=7)
    assert {k: getattr(fit, k) for k in TRAIN_KEYS} == {k: default(TuneSettings, k) for k in TRAIN_KEYS}


@pytest.mark.parametrize("names", [(), (".test/config.yaml",), ("config/paper.yaml",)], ids=str)
def test_cnn_config_values_reach_the_dataclasses(names):
    """Each config as a run sees it: laid over config/config.yaml, validated (defaults filled in)."""
    from test_config_checks import merged

    config = merged(*names)
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    cnn = config["cnn"]
    for arch in cnn["architectures"]:
        got = cnn_settings(config, arch, f"w/{arch}.pth")
        tune = TuneSettings(**got["tune"])
        over = cnn["overrides"].get(arch, {})
        assert (tune.arch, tune.n_trials, tune.max_epochs, tune.seed) == (
            arch, over.get("trials", cnn["trials"]), over.get("max_epochs", cnn["max_epochs"]),
            over.get("seed", cnn["seed"]))
        assert tune.space == over.get("search_space", cnn.get("search_space", {}))
        assert (tune.pruner, tune.pruner_startup_trials, tune.pruner_warmup_epochs) == (
            cnn["pruner"]["kind"], cnn["pruner"]["startup_trials"], cnn["pruner"]["warmup_epochs"])
        assert (tune.weights, tune.weights_path, tune.device, tune.recalibrate_bn) == (
            cnn["weights"], f"w/{arch}.pth", cnn["device"], cnn["recalibrate_bn"])
        assert got["train"] == {k: getattr(tune, k) for k in TRAIN_KEYS}
        assert got["input_size"] == over.get("input_size", cnn["input_size"])
    shared = cnn_params(config)
    assert NormParams.from_dict(shared["pack"]["norm"]) == NormParams(**cnn["normalisation"])
    assert shared["pack"]["dtype"] == cnn["dtype"]
    assert SaliencySettings(**shared["saliency"]) == SaliencySettings(**cnn["saliency"])


def test_cnn_settings_apply_overrides_and_defaults():
    config = {"cnn": {"architectures": ["resnet18", "inception_v3"], "trials": 9, "input_size": 128,
                      "overrides": {"resnet18": {"seed": 4, "input_size": 96, "search_space": {"dropout": [0.5]}}}}}
    got = cnn_settings(config, "resnet18")
    assert got["input_size"] == 96
    tune = TuneSettings(**got["tune"])
    assert (tune.n_trials, tune.seed, tune.space, tune.weights_path) == (9, 4, {"dropout": [0.5]}, None)
    # absent keys: the dataclasses' defaults (the schema's)
    assert tune.max_epochs == default(TuneSettings, "max_epochs") and tune.pruner == default(TuneSettings, "pruner")
    assert cnn_settings({"cnn": {}}, "densenet121")["input_size"] == default(PackSettings, "input_size")
    other = cnn_settings(config, "inception_v3")
    assert (other["input_size"], other["tune"]["seed"]) == (128, default(TuneSettings, "seed"))
    with pytest.raises(ValueError, match="inception_v3"):
        cnn_settings({"cnn": {"input_size": 64}}, "inception_v3")
    with pytest.raises(ValueError, match="pruner"):
        cnn_settings({"cnn": {"pruner": {"kind": "hyperband"}}}, "resnet18")
    assert cnn_params({"cnn": {}}) == {"pack": {"norm": {}, "dtype": default(PackSettings, "dtype")},
                                       "saliency": asdict(SaliencySettings())}
    with pytest.raises(ValueError, match=r"cnn.normalisation: unknown settings \['gamma'\]"):
        cnn_params({"cnn": {"normalisation": {"gamma": 2}}})


def test_rule_params_keep_the_block_as_written():
    """The pack rule passes the normalisation as written (Snakemake compares params by repr, so a
    reordered or re-typed dict would re-run every finished pack job)."""
    config = validated("config/config.yaml")
    norm = {"log": True}
    config["cnn"]["normalisation"] = dict(norm)
    assert list(cnn_params(config)["pack"]["norm"]) == list(norm)
    tune = cnn_settings(config, "resnet18")["tune"]
    assert list(tune) == list(asdict(TuneSettings(arch="resnet18")))


# --- one home per default: schema = dataclass = command line (issue 28) -----------------------

from dataclasses import MISSING, is_dataclass  # noqa: E402

from sts.settings import (  # noqa: E402
    AS_WRITTEN, SCHEMA_HOMES, STUDY_CLASSES, AcquireSettings, BaselineSettings, CnnJobSettings, schema_home,
)


def plain(value):
    """A default as YAML would spell it: tuples as lists, dataclasses as dicts."""
    if is_dataclass(value):
        value = asdict(value)
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def field_default(cls, name):
    f = cls.__dataclass_fields__[name]
    return f.default_factory() if f.default is MISSING else f.default


def has_default(cls, name) -> bool:
    f = cls.__dataclass_fields__.get(name)
    return f is not None and (f.default is not MISSING or f.default_factory is not MISSING)


def schema_block(path: str) -> dict:
    node = SCHEMA
    for key in path.split("."):
        node = node["properties"][key]
    return node


def test_schema_defaults_equal_the_dataclass_defaults():
    """Every key of a block with a dataclass, nested blocks too: its schema default is the code's
    (blocks the rules pass as written carry none: a filled-in default would change their params)."""
    problems = []
    for path in SCHEMA_HOMES:
        block = schema_block(path)
        for key, prop in block["properties"].items():
            if "properties" in prop or "$ref" in prop:
                assert "default" not in prop or prop["default"] == {}, f"{path}.{key}"
                continue  # a nested block: its own entry of SCHEMA_HOMES (or search_space's $defs)
            home = schema_home(path, key)
            if home is None:
                continue  # a workflow key with no code default (e.g. cnn.architectures)
            want = plain(field_default(*home))
            if "default" in prop:
                if prop["default"] != want:
                    problems.append(f"{path}.{key}: schema {prop['default']!r}, {home[0].__name__}.{home[1]} {want!r}")
            elif path not in AS_WRITTEN:
                problems.append(f"{path}.{key}: no schema default ({home[0].__name__}.{home[1]} = {want!r})")
    assert not problems, problems
    assert SCHEMA["properties"]["classes"]["default"] is None  # the scheme's classes (sts.acquire.schemes)
    assert get_scheme(LabelSettings().scheme).classes == STUDY_CLASSES
    # every nested block of a block with a dataclass has its own entry
    for path in SCHEMA_HOMES:
        for key, prop in schema_block(path)["properties"].items():
            if "properties" in prop:
                assert f"{path}.{key}" in SCHEMA_HOMES, f"{path}.{key}"


def test_no_key_with_a_code_default_is_required():
    for path in SCHEMA_HOMES:
        required = schema_block(path).get("required", [])
        assert not [k for k in required if schema_home(path, k)], (path, required)
    # a top-level block whose keys all default is not required either
    top = SCHEMA["required"]
    assert not [k for k in top if "default" in SCHEMA["properties"][k]], top
    assert not [k for k in top if k in SCHEMA_HOMES], top


def described(node: dict) -> bool:
    if "description" in node:
        return True
    ref = node.get("$ref", "")
    return ref.startswith("#/$defs/") and "description" in SCHEMA["$defs"][ref.split("/")[-1]]


def schema_properties(node, path=""):
    """(dotted path, property) of every property of the schema, $defs and per-key maps included."""
    if not isinstance(node, dict):
        return
    for key, prop in (node.get("properties") or {}).items():
        yield f"{path}.{key}".lstrip("."), prop
        yield from schema_properties(prop, f"{path}.{key}")
    if isinstance(node.get("additionalProperties"), dict):
        yield from schema_properties(node["additionalProperties"], f"{path}.*")
    for key, sub in (node.get("$defs") or {}).items():
        yield f"$defs.{key}", sub
        yield from schema_properties(sub, f"$defs.{key}")


def test_every_schema_property_has_a_description():
    """The README's configuration table is generated from these."""
    missing = [path for path, prop in schema_properties(SCHEMA) if not described(prop)]
    assert not missing, missing


# Each command's options and the dataclasses holding their defaults ({dest: field} where the names
# differ); every option with a default is one of them, or in NO_HOME (not a setting).
PATCHSEQ = {"id_column": "patchseq_id_column", "ttype_column": "patchseq_ttype_column",
            "dendrite_column": "patchseq_dendrite_column"}  # fmt: skip
CLI_HOMES = {
    "synth": [(SynthParams, {})],
    "select-sweeps": [(SelectionParams, {})],
    "scalogram": [(ScalogramParams, {})],
    "manifest": [(SplitParams, {})],
    "baseline-published": [(BaselineSettings, {}), (LabelSettings, {})],
    "acquire": [(AcquireSettings, {"api": "dandi_api"}), (SelectionParams, {})],
    "labels": [(AcquireSettings, PATCHSEQ), (LabelSettings, {})],
    "pack": [(PackSettings, {"size": "input_size"})],
    "tune": [(TuneSettings, {"trials": "n_trials"}), (CnnJobSettings, {})],
    "train": [(TuneSettings, {}), (LabelSettings, {})],
    "explain": [(SaliencySettings, {})],
}
NO_HOME = {"dataset", "label", "defect"}  # a cell's own tags ("" by default)


def commands(parser, path=()):
    """(command path, parser) of every subcommand, nested ones too (acquire cell, ...)."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield path + (name,), sub
                yield from commands(sub, path + (name,))


def test_every_command_line_default_is_its_dataclass_default():
    seen, problems = set(), []
    for path, parser in commands(build_parser()):
        homes = CLI_HOMES.get(path[0], []) + [(TuneSettings, {})]  # --device everywhere
        for action in parser._actions:
            if not action.option_strings or action.dest in ("help", "func"):
                continue
            home = next(((cls, names.get(action.dest, action.dest)) for cls, names in homes
                         if has_default(cls, names.get(action.dest, action.dest))), None)  # fmt: skip
            if home is None:
                if action.default not in (None, False) and action.dest not in NO_HOME:
                    problems.append(f"{' '.join(path)} --{action.dest}: default {action.default!r} has no home")
                continue
            seen.add(path[0])
            want = field_default(*home)
            got = action.default
            if action.type is not None and got is not None and callable(action.type) and isinstance(got, str):
                got = action.type(got)
            if got is not None and plain(got) != plain(want):  # None: absent, resolved by the code
                problems.append(f"{' '.join(path)} --{action.dest}: {got!r}, {home[0].__name__}.{home[1]} {want!r}")
    assert not problems, problems
    assert set(CLI_HOMES) <= seen, set(CLI_HOMES) - seen
