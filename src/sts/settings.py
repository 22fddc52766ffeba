"""Each config block as one frozen dataclass, built here from the validated config.

A setting has one home: the schema (``workflow/schemas/config.schema.yaml``) says what a config
may hold, these dataclasses give the code's defaults (``tests/test_settings.py`` checks that the
schema's defaults agree), and the command line takes its flag defaults from them. The workflow
passes each per-cell rule the dict its dataclass is built from (``rule_params``): exactly the
keys that change the rule's outputs, so Snakemake's params trigger re-runs exactly what changed;
the ``cnn:`` rules get theirs from ``cnn_settings`` (per architecture) and ``cnn_params``. The
trigger compares each value's repr: a dict must keep its keys' order and types for an unchanged
config, or every finished job would re-run.

Standard library only: ``sts.cli`` reads these defaults while building its parser, before a
per-cell command may import numpy (``sts.io.threads.single_threaded``).
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Mapping

# Long squares by name: Allen's aibs_stimulus_name, and MIES protocol codes (ipfx's
# stimulus ontology). Codes may carry suffixes such as "_DA_0", hence prefix matching.
ALLEN_LONG_SQUARE = ("Long Square",)
MIES_LONG_SQUARE = (
    "C1LSCOARSE", "C1LSFINEST", "X1PS_SubThresh", "X3LP_Rheo", "X4PS_SupraThresh", "subthreshold_171",
)
# The study's classes in its order (config ``classes``; the manifest's and the published tables' default).
STUDY_CLASSES = ("Pvalb", "Sst", "Vip/Lamp5", "Excitatory")
# An ABF file's step ladder (sts.recordings.abf.Protocol), from its CSV row or the command line.
PROTOCOL_FIELDS = ("first_amplitude_pa", "step_pa", "onset_s", "duration_s")


def default(cls, name: str):
    """The default of field ``name`` of dataclass ``cls`` (for argparse)."""
    f = cls.__dataclass_fields__[name]
    return f.default_factory() if f.default is MISSING else f.default


def from_dict(cls, values: Mapping, what: str):
    """``cls`` from a dict (a config block, a ``--params`` JSON, a model's saved preparation).

    Numbers are cast as the field says (``fs_hz: 4000`` -> 4000.0), so a result never depends on
    how a value was written; an unknown key is an error naming ``what`` and the known keys.
    """
    types = {f.name: f.type for f in fields(cls)}  # strings: from __future__ import annotations
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise ValueError(f"{what}: unknown settings {unknown} (known: {sorted(types)})")
    out = {}
    for key, value in values.items():
        kind = types[key]
        if kind == "float":
            value = float(value)
        elif kind == "int":
            value = int(value)
        elif kind == "bool":
            value = bool(value)
        elif kind == "tuple[str, ...]":
            value = tuple(str(v) for v in value)
        elif kind in NESTED:
            value = from_dict(NESTED[kind], dict(value), f"{what}.{key}")
        out[key] = value
    return cls(**out)


# The study's CNN architectures (sts.cnn.models builds them) and the smallest input each accepts (px).
ARCHITECTURES = ("mobilenet_v2", "resnet18", "densenet121", "inception_v3")
MIN_SIZE = {"mobilenet_v2": 32, "resnet18": 32, "densenet121": 32, "inception_v3": 75}


def check_arch(arch: str, input_size: int | None = None) -> None:
    """Reject an unknown architecture or an input too small for it, with a clear message."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}: choose from {', '.join(ARCHITECTURES)}")
    if input_size is not None and input_size < MIN_SIZE[arch]:
        raise ValueError(f"{arch} needs inputs of at least {MIN_SIZE[arch]} px, got {input_size}")


@dataclass(frozen=True)
class SynthParams:
    """Config ``synthetic:``: the whole synthetic cohort is deterministic from these."""

    n_cells: int = 160
    seed: int = 1
    defect_fraction: float = 0.05  # share of deliberately bad cells


@dataclass(frozen=True)
class QcParams:
    """Config ``sweeps.qc``: recording-health checks of the two sweeps used (sts.prep.qc, which says why these values)."""

    baseline_min_mv: float = -120.0  # baseline before the step (median of 100 ms)
    baseline_max_mv: float = -30.0
    min_mv: float = -150.0  # any sample of the window
    max_mv: float = 100.0
    rail_max_ms: float = 10.0  # time the window may spend at its exact maximum or minimum (saturation)
    drift_max_mv: float = 30.0  # |baseline after the step - baseline before it|


@dataclass(frozen=True)
class SelectionParams:
    """Config ``sweeps:`` (sts.prep.sweeps)."""

    window_s: float = 1.2  # window length from step onset (s)
    fs_hz: float = 4000.0  # output rate (Hz)
    plus_pa: float = 40.0  # second sweep = rheobase + plus_pa
    tolerance_pa: float = 5.0  # |amplitude - (rheobase + plus_pa)| allowed (pA)
    dvdt_cutoff_mv_ms: float = 20.0
    min_ap_peak_mv: float = -10.0  # an action potential (rheobase) peaks at or above this
    margin_s: float = 0.05  # real data kept either side of the window while resampling
    min_step_s: float = 0.1  # shorter epochs are never the ladder's step
    long_square_names: tuple[str, ...] = ALLEN_LONG_SQUARE + MIES_LONG_SQUARE
    any_square_step: bool = False  # any sweep whose step is found counts, whatever its protocol's name
    qc: QcParams = QcParams()

    @classmethod
    def from_dict(cls, values: Mapping, what: str = "sweeps") -> "SelectionParams":
        """From a config ``sweeps:`` block or a model's saved preparation (unknown keys: error)."""
        return from_dict(cls, values, what)


COMPRESSIONS = ("none", "gzip", "lzf")


@dataclass(frozen=True)
class ScalogramParams:
    """Config ``scalogram:`` (sts.prep.scalogram_file)."""

    wavelet: str = "mexh"
    fmin_hz: float = 20.0
    fmax_hz: float = 200.0
    n_freqs: int = 180
    compression: str = "none"  # of the per-cell file only: the values are the same

    def __post_init__(self):
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"scalogram compression {self.compression!r}: expected one of {COMPRESSIONS}")

    @classmethod
    def from_dict(cls, values: Mapping, what: str = "scalogram") -> "ScalogramParams":
        return from_dict(cls, values, what)

    @property
    def freqs_hz(self):
        """The frequency grid (Hz), a numpy array (as sts.prep.scalogram.default_freqs, which takes its defaults from here)."""
        import numpy as np

        return np.linspace(self.fmin_hz, self.fmax_hz, self.n_freqs)


@dataclass(frozen=True)
class SplitParams:
    """Config ``split:`` (sts.cohort.manifest)."""

    seed: int = 42
    test_fraction: float = 0.2
    n_folds: int = 3
    train_file: str | None = None  # paper format: "specimen_id, Seq|Clamp", no header
    test_file: str | None = None


@dataclass(frozen=True)
class AcquireSettings:
    """Config ``acquire:`` (real cohorts); every key has a default."""

    cells: list | None = None
    max_cells: int | None = None
    metadata_dir: str = "results/metadata"
    allen_api: str = "https://api.brain-map.org"
    dandi_api: str = "https://api.dandiarchive.org/api"
    dandiset: str = "000020"
    dandiset_version: str | None = None
    dandi_mode: str = "stream"  # stream | whole
    block_size_kb: int = 32
    retries: int = 4
    backoff_s: float = 1.0
    timeout_s: float = 60
    label_file: str | None = None
    # None: the Gouwens 2020 metadata shipped with ipfx (sts.acquire.labels)
    patchseq_metadata: str | None = None
    # as sts.acquire.labels.PatchseqColumns (tests/test_settings.py checks it)
    patchseq_id_column: str = "cell_specimen_id"
    patchseq_ttype_column: str = "corresponding_AIT2.3.1_alias"
    patchseq_dendrite_column: str | None = "dendrite_type"


@dataclass(frozen=True)
class LabelSettings:
    """Config ``labels:``: the class scheme of the run (sts.acquire.schemes): study (the study's four
    classes), subclass, inhibitory, or a YAML file mapping T-type prefixes to classes."""

    scheme: str = "study"


SCHEME_KEY = "label_scheme"  # of a saved model's metadata (LightGBM model.json, CNN model.pt)


def saved_scheme(meta: Mapping) -> str:
    """The class scheme a saved model's metadata names; study for models saved before schemes existed.
    ValueError for a value that is not a short name."""
    value = meta.get(SCHEME_KEY, LabelSettings().scheme)
    if not isinstance(value, str) or not 0 < len(value) <= 300 or not value.isprintable():
        raise ValueError(f"{SCHEME_KEY} must be a scheme name (study, subclass, inhibitory or a map file), "
                         f"got {value!r:.80}")
    return value


CNN_SPACE: dict = {
    "batch_size": [32, 64],
    "learning_rate": {"low": 1e-3, "high": 0.08},
    "decay_factor": [0, 0.01, 0.1],
    "decay_period": {"low": 5, "high": 20},
    "patience": {"low": 10, "high": 20},
    "dropout": [0, 0.3, 0.5, 0.7],
}


SCALINGS = ("image", "channel", "none")
DTYPES = ("float16", "float32")
SALIENCY_METHODS = ("gradient", "integrated_gradients")


@dataclass(frozen=True)
class NormParams:
    """Config ``cnn.normalisation``: how a scalogram becomes a network input (sts.cnn.pack); the
    packed file and model.pt keep it as ``to_json``."""

    magnitude: bool = True  # |coefficients| (the Mexican-hat CWT is signed)
    log: bool = False  # log1p after the magnitude
    scaling: str = "image"  # min-max to [0, 1] over the image, per channel, or none
    imagenet: bool = True  # then (x - ImageNet mean) / ImageNet std per channel

    def __post_init__(self):
        if self.scaling not in SCALINGS:
            raise ValueError(f"normalisation scaling {self.scaling!r}: expected one of {SCALINGS}")

    @classmethod
    def from_dict(cls, values: Mapping, what: str = "cnn.normalisation") -> "NormParams":
        return from_dict(cls, values, what)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class PackSettings:
    """Config ``cnn:`` ``input_size``, ``dtype``, ``normalisation``: the packed images (sts.cnn.pack)."""

    input_size: int = 224  # image side (px); per architecture: cnn.overrides
    dtype: str = "float16"  # storage type of the packed images
    normalisation: NormParams = NormParams()

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"packed image dtype {self.dtype!r}: expected one of {DTYPES}")


@dataclass(frozen=True)
class SaliencySettings:
    """Config ``cnn.saliency`` (sts.cnn.saliency)."""

    method: str = "gradient"  # mean |input gradient|, or captum's Integrated Gradients
    ig_steps: int = 32  # integration steps of Integrated Gradients

    def __post_init__(self):
        if self.method not in SALIENCY_METHODS:
            raise ValueError(f"saliency method {self.method!r}: expected one of {SALIENCY_METHODS}")


@dataclass(frozen=True)
class TuneSettings:
    """Config ``cnn:``, per architecture: everything that defines its search (sts.cnn.tune; its
    hash, with the data's, names the study)."""

    arch: str
    n_trials: int = 50
    max_epochs: int = 60
    seed: int = 0
    space: dict = field(default_factory=lambda: dict(CNN_SPACE))
    pruner: str = "median"  # median | none
    pruner_startup_trials: int = 5
    pruner_warmup_epochs: int = 5
    weights: str = "none"
    weights_path: str | None = None
    device: str = "auto"
    recalibrate_bn: bool = False

    def __post_init__(self):
        check_arch(self.arch)
        unknown = set(self.space) - set(CNN_SPACE)
        if unknown:
            raise ValueError(f"search space: unknown parameter(s) {sorted(unknown)}; known: {list(CNN_SPACE)}")
        if self.pruner not in ("median", "none"):
            raise ValueError(f"pruner {self.pruner!r}: expected 'median' or 'none'")

    @property
    def full_space(self) -> dict:
        return {**CNN_SPACE, **self.space}


@dataclass(frozen=True)
class CnnJobSettings:
    """Config ``cnn:`` keys of how its jobs run (resources, parallel tuning, storage), not what they compute."""

    threads: int = 2  # CPU threads per tune/train job
    gpus: int = 0  # GPUs per tune/train job (resources.gpu)
    mem_mb: int = 8000  # memory per tune/train job (MB); also the predict rule's
    runtime: int = 1440  # wall time per tune job (min); train gets a quarter
    tune_workers: int = 1  # tuning jobs per architecture sharing one Optuna study
    trials_per_gpu: int = 1  # tuning workers one job runs at once on its device (sts tune --trials-per-gpu)
    storage: str | None = None  # Optuna RDB URL; None: a journal file per architecture
    weights_dir: str | None = None  # pre-staged ImageNet state dicts


@dataclass(frozen=True)
class BaselineSettings:
    """Config ``baseline:`` ``trials`` and ``seed``, and how the LightGBM baseline is searched,
    fitted and explained (``sts baseline-published``'s defaults, sts.baseline.flow).

    ``jobs``: CV folds fitted side by side (one LightGBM thread each), and the final fit's
    LightGBM threads; ``folds``: CV folds of the search; ``early_stopping``: rounds
    without validation log-loss gain (0: off); ``space``: updates ``sts.baseline.lgbm.DEFAULT_SPACE``;
    ``top_k``: features per SHAP beeswarm and per class of the SHAP report's table.
    """

    trials: int = 50
    seed: int = 0
    jobs: int = 2
    folds: int = 3
    early_stopping: int = 0
    space: dict = field(default_factory=dict)
    top_k: int = 5


@dataclass(frozen=True)
class OodSettings:
    """The out-of-distribution detectors (sts.trust.ood): k nearest training cells, and the quantile of
    the training cells' own leave-one-out scores that sets the threshold."""

    k: int = 5
    quantile: float = 0.99


@dataclass(frozen=True)
class CrossDatasetSettings:
    """Config ``cross_dataset:`` (sts.report.cross_dataset)."""

    enabled: bool = False
    architectures: list | None = None  # None: every one of cnn.architectures
    min_cells_per_class: int = 2  # a direction runs only with this many training cells of every class


# The EP features (sts.baseline.features.FeatureParams) read the ladder as sweep selection does:
# sweeps: key -> FeatureParams field.
SWEEPS_TO_FEATURES = {
    "dvdt_cutoff_mv_ms": "dv_cutoff_mv_ms",
    "long_square_names": "long_square_names",
    "min_step_s": "min_step_s",
    "any_square_step": "any_square_step",
}


def feature_params(sweeps: Mapping) -> dict:
    """The ``FeatureParams`` keys that a config's ``sweeps:`` block sets (absent: the defaults,
    which are sweep selection's)."""
    return {field: sweeps[key] for key, field in SWEEPS_TO_FEATURES.items() if key in sweeps}


ACQUIRE_DEFAULTS = asdict(AcquireSettings())
DEFAULT_DEVICE = default(TuneSettings, "device")  # of every function that runs a network
NESTED = {"QcParams": QcParams, "NormParams": NormParams}
# The final fit takes these of its architecture's TuneSettings (sts.cnn.final.train_final).
TRAIN_KEYS = ("seed", "weights", "weights_path", "device", "recalibrate_bn")


def rule_params(config: Mapping) -> dict[str, dict]:
    """Per config block, the dict its rules pass as params (checked by building its dataclass, so
    a bad value stops the DAG build).

    ``sweeps`` and ``scalogram`` (per-cell rules, ``--params`` JSON): the validated block as
    written, absent keys meaning the code's defaults (model.pt stores the same dicts, less the
    compression, as its preparation); ``features``: the EP features' keys that ``sweeps`` sets
    (``feature_params``); ``split`` and ``synthetic``: every field.
    """
    sweeps, scalogram = dict(config["sweeps"]), dict(config["scalogram"])
    SelectionParams.from_dict(sweeps)
    ScalogramParams.from_dict(scalogram)
    out = {
        "sweeps": sweeps,
        "features": feature_params(sweeps),
        "scalogram": scalogram,
        "split": asdict(from_dict(SplitParams, config["split"], "split")),
    }
    if config.get("synthetic"):
        out["synthetic"] = asdict(from_dict(SynthParams, config["synthetic"], "synthetic"))
    return out


def acquire_settings(config: Mapping) -> dict:
    """The ``acquire`` block with every default filled in (values as written: they reach the
    download commands' flags)."""
    return {**ACQUIRE_DEFAULTS, **(config.get("acquire") or {})}


# cnn: keys that cnn.overrides may replace per architecture -> TuneSettings fields.
CNN_ARCH_KEYS = {"trials": "n_trials", "max_epochs": "max_epochs", "seed": "seed", "search_space": "space"}
PRUNER_KEYS = {"kind": "pruner", "startup_trials": "pruner_startup_trials", "warmup_epochs": "pruner_warmup_epochs"}


def cnn_settings(config: Mapping, arch: str, weights_path: str | None = None) -> dict:
    """One architecture's ``cnn:`` settings, its ``cnn.overrides`` applied: ``tune``, the
    TuneSettings fields (its search); ``train``, the TRAIN_KEYS of them (its final fit);
    ``input_size``, the side of the packed images it reads (checked against ``arch``).
    ``weights_path``: the pre-staged ImageNet weights file the workflow gives it, if any.
    Absent keys take the dataclass's defaults; a bad value stops the DAG build."""
    cnn = config["cnn"]
    over = (cnn.get("overrides") or {}).get(arch, {})
    values = {"arch": arch, "weights_path": weights_path}
    for key, name in CNN_ARCH_KEYS.items():
        if key in over or key in cnn:
            values[name] = over.get(key, cnn.get(key))
    for key, name in PRUNER_KEYS.items():
        if key in (cnn.get("pruner") or {}):
            values[name] = cnn["pruner"][key]
    for key in ("weights", "device", "recalibrate_bn"):
        if key in cnn:
            values[key] = cnn[key]
    tune = asdict(from_dict(TuneSettings, values, f"cnn ({arch})"))
    size = int(over.get("input_size", cnn.get("input_size", default(PackSettings, "input_size"))))
    check_arch(arch, size)  # e.g. inception_v3 below 75 px
    return {"tune": tune, "train": {k: tune[k] for k in TRAIN_KEYS}, "input_size": size}


def cnn_params(config: Mapping) -> dict:
    """The ``cnn:`` settings every architecture shares, as the pack and explain rules pass them:
    ``pack``: ``norm``, the normalisation block as written (model.pt and the packed file store
    NormParams' JSON), and ``dtype``; ``saliency``: every SaliencySettings field."""
    cnn = config["cnn"]
    norm = dict(cnn.get("normalisation") or {})
    pack = from_dict(PackSettings, {"normalisation": norm, **{k: cnn[k] for k in ("dtype",) if k in cnn}}, "cnn")
    saliency = asdict(from_dict(SaliencySettings, cnn.get("saliency") or {}, "cnn.saliency"))
    return {"pack": {"norm": norm, "dtype": pack.dtype}, "saliency": saliency}


# Each schema block (a dotted path in workflow/schemas/config.schema.yaml) and the dataclasses
# that hold its keys' code defaults, with {schema key: field} where the names differ. The schema's
# defaults equal these (tests/test_settings.py), and a key with a code default is not required.
# Blocks in AS_WRITTEN carry no schema defaults: the rules pass them as written (``rule_params``),
# so a default filled in by the schema would change every per-cell job's params.
SCHEMA_HOMES: dict[str, tuple] = {
    "synthetic": ((SynthParams, {}),),
    "sweeps": ((SelectionParams, {}),),
    "sweeps.qc": ((QcParams, {}),),
    "scalogram": ((ScalogramParams, {}),),
    "split": ((SplitParams, {}),),
    "baseline": ((BaselineSettings, {}),),
    "acquire": ((AcquireSettings, {}),),
    "labels": ((LabelSettings, {}),),
    "cnn": ((TuneSettings, CNN_ARCH_KEYS), (PackSettings, {}), (CnnJobSettings, {})),
    "cnn.normalisation": ((NormParams, {}),),
    "cnn.pruner": ((TuneSettings, PRUNER_KEYS),),
    "cnn.saliency": ((SaliencySettings, {}),),
    "cross_dataset": ((CrossDatasetSettings, {}),),
}
AS_WRITTEN = ("sweeps", "scalogram")


def schema_home(block: str, key: str):
    """(dataclass, field) holding the code default of schema key ``block.key``; None if no code default."""
    for cls, names in SCHEMA_HOMES.get(block, ()):
        name = names.get(key, key)
        f = cls.__dataclass_fields__.get(name)
        if f is not None and (f.default is not MISSING or f.default_factory is not MISSING):
            return cls, name
    return None
