"""A model folder sent by a hostile colleague never crashes, hangs or exhausts ``sts predict``: each
case ends as a one-line refusal (or an excluded row), never a traceback, a signal, a hang or an
"ok" row with garbage (issue 27, items 2-5).

Runs that could hang or crash on a model LightGBM trusts go through a child process with a
wall-clock limit and an address-space limit (``run_predict``); the rest run in-process, where a
refusal comes before anything large is allocated.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sts
from cnn_data import save_untrained_model
from lgbm_data import CLASSES
from sts.cli import main

SRC = Path(sts.__file__).resolve().parents[1]
PREPARATION = {
    "sweeps": {"window_s": 1.0, "fs_hz": 2000, "plus_pa": 40, "tolerance_pa": 5, "dvdt_cutoff_mv_ms": 20},
    "scalogram": {"wavelet": "mexh", "fmin_hz": 30, "fmax_hz": 150, "n_freqs": 40},
}
CHILD_MEMORY = 4 * 2**30  # address space of a child predict (torch and lightgbm load within it)


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))


def run_predict(model, inputs, out, timeout: float = 60) -> tuple[int, str]:
    """``sts predict`` in a child (wall clock and memory bounded): (exit status, stderr)."""
    code = "import sys; from sts.cli import main; sys.exit(main(sys.argv[1:], warm=False))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, "-c", code, "predict", "--model", str(model), "--out", str(out), "--threads", "1",
            "--device", "cpu", *map(str, inputs)]  # fmt: skip
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                              preexec_fn=_limit_memory)  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"sts predict still running after {timeout} s (hang)")
    return proc.returncode, proc.stderr


def assert_refused(rc: int, stderr: str, message: str) -> str:
    """Exit status 1, no traceback, the last line is the refusal and names ``message``."""
    assert rc == 1, f"exit status {rc} (negative: killed by a signal)\n{stderr[-2000:]}"
    assert "Traceback" not in stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("sts predict: ") and message in last, last
    return last


def predict_in_process(model, *inputs, out):
    return main(["predict", "--model", str(model), "--out", str(out), "--device", "cpu", "--threads", "1",
                 *map(str, inputs)], warm=False)  # fmt: skip


def refusal(model, *inputs, out) -> str:
    with pytest.raises(SystemExit) as err:
        predict_in_process(model, *inputs, out=out)
    message = str(err.value.code)
    assert "\n" not in message and message.startswith("sts predict: "), message
    return message


# --- LightGBM model.txt: checked before LightGBM parses it ---------------------------------------


def _train(kind: str):
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    X[:, 3] = rng.integers(0, 20, 300)
    X[::7, 1] = np.nan
    y2 = (X[:, 0] + np.isin(X[:, 3], [1, 4, 9, 16]) * 2 > 0.5).astype(int)
    y4 = np.digitize(X[:, 0], [-0.7, 0, 0.7])
    params = {"verbose": -1, "min_data_in_leaf": 5, "num_leaves": 7, "objective": "binary"}
    y, cat, rounds = y2, "auto", 8
    if kind in ("multiclass", "linear_multiclass", "single_leaf"):
        params.update(objective="multiclass", num_class=4)
        y = y4
    if kind == "multiclassova":
        params.update(objective="multiclassova", num_class=4)
        y = y4
    if kind.startswith("linear"):
        params["linear_tree"] = True
    if kind in ("categorical", "linear_categorical"):  # a class set by the category alone: category splits
        params.update(max_cat_to_onehot=2, cat_smooth=1, min_data_per_group=2)
        y, cat = np.isin(X[:, 3], [2, 5, 7, 11, 13, 17]).astype(int), [3]
    if kind == "single_leaf":  # no split possible: every tree is one leaf (num_leaves=1)
        params["min_data_in_leaf"] = 200
    booster = lgb.train(params, lgb.Dataset(X, y, categorical_feature=cat), num_boost_round=rounds)
    return booster, X, (1 if params["objective"] == "binary" else 4)


@pytest.mark.parametrize("kind", ["binary", "multiclass", "multiclassova", "categorical", "linear_binary",
                                  "linear_categorical", "linear_multiclass", "single_leaf"])  # fmt: skip
def test_real_lightgbm_models_pass_the_check_and_predict_identically(kind):
    import lightgbm as lgb

    from sts.baseline.model_text import check_model_text

    booster, X, outputs = _train(kind)
    text = booster.model_to_string()
    if kind.endswith("categorical"):
        assert re.search(r"num_cat=[1-9]", text) and "cat_threshold=" in text
    if kind.startswith("linear"):
        assert "is_linear=1" in text and "leaf_coeff=" in text
    if kind == "single_leaf":
        assert "num_leaves=1\n" in text
    features = booster.feature_name()
    check_model_text(text, features, outputs)
    if booster.current_iteration() >= 5:  # a slice of the iterations, as early stopping saves it
        check_model_text(booster.model_to_string(num_iteration=3, start_iteration=2), features, outputs)
    np.testing.assert_array_equal(lgb.Booster(model_str=text).predict(X), booster.predict(X))


def _trees(text: str) -> list[tuple[int, int]]:
    """(start, end) of each Tree= block."""
    starts = [m.start() for m in re.finditer(r"^Tree=\d+$", text, re.M)] + [text.index("end of trees")]
    return list(zip(starts[:-1], starts[1:]))


def _with_tree_sizes(text: str, delta: int = 0) -> str:
    sizes = [len(text[a:b].encode()) for a, b in _trees(text)]
    sizes[0] += delta
    return re.sub(r"^tree_sizes=.*$", "tree_sizes=" + " ".join(map(str, sizes)), text, count=1, flags=re.M)


def _edit_field(text: str, key: str, edit) -> tuple[str, int]:
    """Edit ``key`` of the first tree with at least 3 leaves; tree_sizes recomputed. (text, tree)."""
    for i, (a, b) in enumerate(_trees(text)):
        block = text[a:b]
        if int(re.search(r"^num_leaves=(\d+)$", block, re.M).group(1)) >= 3:
            values = re.search(rf"^{key}=(.*)$", block, re.M).group(1).split(" ")
            new = re.sub(rf"^{key}=.*$", f"{key}=" + " ".join(edit(values)), block, count=1, flags=re.M)
            return _with_tree_sizes(text[:a] + new + text[b:]), i
    raise AssertionError("no tree with 3 leaves")


def _set(values, index, value):
    values = list(values)
    values[index] = value
    return values


def _hostile_lightgbm(out, tmp_path, mutate) -> Path:
    import hashlib

    model = tmp_path / "model"
    shutil.copytree(out / "model", model)
    text = mutate((model / "model.txt").read_text())
    (model / "model.txt").write_text(text)
    meta = json.loads((model / "model.json").read_text())
    meta["model_sha256"] = hashlib.sha256(text.encode()).hexdigest()  # the sender writes both files
    (model / "model.json").write_text(json.dumps(meta))
    return model


MUTATIONS = {
    # LightGBM today: prediction never ends (and ignores SIGTERM)
    "cycle to the root": (lambda t: _edit_field(t, "right_child", lambda v: _set(v, len(v) - 1, "0"))[0],
                          "points back to the root (a cycle)"),
    "cycle below the root": (lambda t: _edit_field(t, "right_child", lambda v: _set(v, len(v) - 1, "1"))[0],
                             "node 1 is reached twice (a cycle or a shared subtree)"),
    # SIGSEGV today
    "split_feature out of range": (lambda t: _edit_field(t, "split_feature", lambda v: _set(v, 0, "500"))[0],
                                   "split_feature: node 0 splits on feature 500"),
    # SIGABRT today
    "tree_sizes off by one": (lambda t: _with_tree_sizes(t, 1), "header tree_sizes: they add up to"),
    # garbage probabilities, accepted as "ok", today
    "leaf index out of range": (lambda t: _edit_field(t, "left_child", lambda v: _set(v, 0, "-100"))[0],
                                "left_child: node 0 points to -100"),
    "non-finite leaf value": (lambda t: _edit_field(t, "leaf_value", lambda v: _set(v, 0, "nan"))[0],
                              "leaf_value: not a list of finite numbers"),
    "truncated file": (lambda t: t[: t.index("end of trees") - 40], "no 'end of trees' line"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(MUTATIONS))
def test_hostile_model_txt_is_refused_before_lightgbm_sees_it(lgbm_baseline, tmp_path, case):
    files, out, _ = lgbm_baseline
    mutate, message = MUTATIONS[case]
    model = _hostile_lightgbm(out, tmp_path, mutate)
    rc, stderr = run_predict(model, [next(iter(files.values()))], tmp_path / "o.csv")
    last = assert_refused(rc, stderr, message)
    assert "model.txt: not LightGBM model text of this model card: " in last
    assert not (tmp_path / "o.csv").exists()


def test_served_baseline_is_unchanged_by_the_check(lgbm_baseline):
    """The real baseline passes, and serves the booster's own probabilities."""
    import lightgbm as lgb

    from sts.baseline.saved import load_model

    _, out, features_csv = lgbm_baseline
    saved = load_model(out / "model")
    X = pd.read_csv(features_csv).loc[:, saved.features].to_numpy(float)
    raw = lgb.Booster(model_str=(out / "model" / "model.txt").read_text()).predict(X)
    got = saved.predict_proba(X)[:, [saved.classes.index(c) for c in saved.fitted_classes]]
    np.testing.assert_array_equal(got, raw)


# --- every model-side file: a bounded regular file ----------------------------------------------


def test_model_files_that_are_not_regular_files_are_refused(lgbm_baseline, tmp_path):
    """/dev/zero (st_size 0, endless) and FIFOs (an open that blocks) for each file predict reads."""
    files, out, _ = lgbm_baseline
    cell = next(iter(files.values()))
    cases = []
    for name, target in (("model.txt", "/dev/zero"), ("model.json", "/dev/zero"), ("calibration.json", "fifo")):
        model = tmp_path / name / "model"
        shutil.copytree(out / "model", model)
        (model / name).unlink(missing_ok=True)
        if target == "fifo":
            os.mkfifo(model / name)
        else:
            (model / name).symlink_to(target)
        cases.append((model, name))
    (tmp_path / "cnn").mkdir()
    os.mkfifo(tmp_path / "cnn" / "model.pt")
    cases.append((tmp_path / "cnn" / "model.pt", "model.pt"))
    for model, name in cases:
        rc, stderr = run_predict(model, [cell], tmp_path / "o.csv")
        assert_refused(rc, stderr, "is not a regular file")
        assert name in stderr.strip().splitlines()[-1]


# --- model.pt: capped unpacking, bounded metadata, finite weights -------------------------------


@pytest.fixture(scope="module")
def cnn_model(tmp_path_factory) -> Path:
    return save_untrained_model(tmp_path_factory.mktemp("cnn") / "model.pt", PREPARATION, CLASSES)


def _edited_model(src: Path, dst: Path, edit) -> Path:
    import torch

    meta = torch.load(src, weights_only=True)
    edit(meta)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(meta, dst)
    return dst


def test_model_pt_deflate_bomb_is_refused_before_torch_reads_it(cnn_model, tmp_path):
    """A storage record deflated from over 1 GiB of zeros (a few MB on disk)."""
    from sts.cnn.safe_torch import MAX_UNCOMPRESSED_BYTES

    bomb = tmp_path / "model.pt"
    with zipfile.ZipFile(cnn_model) as src, zipfile.ZipFile(bomb, "w") as dst:
        names = src.namelist()
        record = next(n for n in names if re.search(r"/data/\d+$", n))
        for name in names:
            if name != record:
                dst.writestr(name, src.read(name))
        info = zipfile.ZipInfo(record)
        info.compress_type = zipfile.ZIP_DEFLATED
        block = bytes(2**24)
        with dst.open(info, "w", force_zip64=True) as f:
            for _ in range(MAX_UNCOMPRESSED_BYTES // len(block) + 1):
                f.write(block)
    assert bomb.stat().st_size < 10 * 2**20  # small on disk
    message = refusal(bomb, tmp_path / "x.nwb", out=tmp_path / "o.csv")
    assert "members unpack to" in message and "more than a model can be" in message


BAD_META = {
    "fs_hz 5e8": (lambda m: m["preparation"]["sweeps"].update(fs_hz=5e8),
                  "preparation.sweeps.fs_hz: 500000000.0 outside"),
    "n_freqs 5e6": (lambda m: m["preparation"]["scalogram"].update(n_freqs=5_000_000),
                    "preparation.scalogram.n_freqs: 5000000 outside"),
    "30,000 px inputs": (lambda m: m.update(input_size=[30000, 30000]), "input_size [30000, 30000] is not [n, n]"),
    "5,000 classes": (lambda m: m.update(classes=[f"c{i}" for i in range(5000)]), "classes must be 2..1000"),
    "no normalisation": (lambda m: m.pop("normalisation"), "normalisation must have exactly the keys"),
    "bogus normalisation": (lambda m: m["normalisation"].update(scaling="sideways"), "scaling one of"),
    "no arch": (lambda m: m.pop("arch"), "no arch"),
    "bogus image dtype": (lambda m: m.update(image_dtype="object"), "image_dtype 'object' is not one of"),
    "bogus wavelet": (lambda m: m["preparation"]["scalogram"].update(wavelet="cmor1.5-1.0"),
                      "wavelet 'cmor1.5-1.0' is not one of"),
    "fmax above Nyquist": (lambda m: m["preparation"]["scalogram"].update(fmax_hz=1500),
                           "fmax_hz: 1500 outside (0, 1000]"),
    "fmin above fmax": (lambda m: m["preparation"]["scalogram"].update(fmin_hz=160), "fmin_hz < fmax_hz"),
    "tiny fmin (a huge kernel)": (lambda m: m["preparation"]["scalogram"].update(fmin_hz=1e-6),
                                  "values per channel and cell"),
    "NaN weights": (lambda m: next(v for v in m["state_dict"].values() if v.is_floating_point()).fill_(float("nan")),
                    "hold NaN or infinite values"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_META))
def test_model_pt_metadata_out_of_bounds_is_refused(cnn_model, tmp_path, case):
    edit, message = BAD_META[case]
    model = _edited_model(cnn_model, tmp_path / "model.pt", edit)
    (tmp_path / "x.nwb").write_bytes(b"not read")
    assert message in refusal(model, tmp_path / "x.nwb", out=tmp_path / "o.csv")
    assert not (tmp_path / "o.csv").exists()


def test_non_finite_probabilities_make_an_excluded_row(lgbm_baseline, tmp_path):
    """Finite but absurd leaf values (1e308) pass the check; their sum is inf, the softmax NaN: the
    file's row is excluded with the reason, never 'ok'."""
    files, out, _ = lgbm_baseline
    model = _hostile_lightgbm(out, tmp_path, lambda t: _with_tree_sizes(re.sub(
        r"^leaf_value=.*$", lambda m: "leaf_value=" + " ".join(["1e308"] * len(m.group().split(" "))), t,
        flags=re.M)))  # fmt: skip
    cell = next(iter(files.values()))
    assert predict_in_process(model, cell, out=tmp_path / "o.csv") == 0
    row = pd.read_csv(tmp_path / "o.csv").iloc[0]
    assert row["status"] == "excluded" and "non-finite probabilities" in row["reason"]
    assert pd.isna(row[[f"p_{c}" for c in CLASSES]]).all() and pd.isna(row["predicted"])


# --- fusion: coefficients, floor, member names --------------------------------------------------


@pytest.fixture(scope="module")
def fusion_model(lgbm_baseline, tmp_path_factory) -> Path:
    from sts.fusion.model import save_fusion
    from sts.fusion.stack import FEATURE_FLOOR, FusionParams, Member

    _, out, _ = lgbm_baseline
    root = tmp_path_factory.mktemp("fusion")
    (root / "cnn").mkdir()
    cnn = save_untrained_model(root / "cnn" / "model.pt", PREPARATION, CLASSES, scalogram_dtype=None)
    members = [Member("mobilenet_v2", cnn, None, None), Member("lightgbm", out / "model" / "model.json", None, None)]
    fitted = CLASSES[:4]
    stacker = {"coef": np.zeros((4, 2 * len(CLASSES))).tolist(), "intercept": [0.0] * 4, "fitted_classes": fitted}
    return save_fusion(root / "out" / "model.json", members, CLASSES, stacker, FusionParams(), 10, 0.5, FEATURE_FLOOR)


FUSION_EDITS = {
    "coefficients 1e308": (lambda d: d["stacker"]["coef"][0].__setitem__(0, 1e308), "stacker coefficients beyond"),
    "non-finite coefficient": (lambda d: d["stacker"]["intercept"].__setitem__(0, 1234.5678),
                               "non-finite stacker coefficients"),  # written as 1e999: json reads inf
    "missing floor": (lambda d: d["features"].pop("floor"), "features.floor None must be a number"),
    "duplicate member names": (lambda d: d["members"][1].update(name=d["members"][0]["name"]),
                               "member name 'mobilenet_v2' is given twice"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(FUSION_EDITS))
def test_hostile_fusion_model_is_refused(fusion_model, lgbm_baseline, tmp_path, case):
    files, _, _ = lgbm_baseline
    edit, message = FUSION_EDITS[case]
    doc = json.loads(fusion_model.read_text())
    edit(doc)
    model = fusion_model.parent / f"hostile_{re.sub(r'[^a-z0-9]+', '_', case)}.json"
    model.write_text(json.dumps(doc).replace("1234.5678", "1e999"))
    assert message in refusal(model, next(iter(files.values())), out=tmp_path / "o.csv")
    assert not (tmp_path / "o.csv").exists()


# --- deeply nested JSON -------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["lightgbm model.json", "calibration.json", "fusion model.json"])
def test_deeply_nested_json_is_refused(lgbm_baseline, fusion_model, tmp_path, which):
    from sts.trust.calibration import Calibration, write_calibration

    files, out, _ = lgbm_baseline
    model = tmp_path / "model"
    shutil.copytree(out / "model", model)
    target = model / "model.json"
    if which == "calibration.json":
        cal = Calibration(1.5, CLASSES, 10, 5, {}, {}, {})
        write_calibration(model / "calibration.json", cal, model / "model.txt")
        target = model / "calibration.json"
    elif which == "fusion model.json":
        shutil.copy(fusion_model, tmp_path / "fusion.json")
        model = target = tmp_path / "fusion.json"
    doc = json.loads(target.read_text())
    doc["nested"] = None
    text = json.dumps(doc).replace('"nested": null', '"nested": ' + "[" * 100_000 + "]" * 100_000)
    target.write_text(text)
    message = refusal(model, next(iter(files.values())), out=tmp_path / "o.csv")
    assert "JSON nested deeper than" in message


def test_bounds_agree_with_the_config_schema():
    """The metadata bounds are the schema's where it has them."""
    import yaml

    from conftest import REPO
    from sts.cnn import model_meta

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())["properties"]
    scal, sweeps = schema["scalogram"]["properties"], schema["sweeps"]["properties"]
    assert set(scal["wavelet"]["enum"]) == set(model_meta.WAVELETS)
    assert scal["n_freqs"]["maximum"] == model_meta.MAX_N_FREQS
    assert sweeps["window_s"]["maximum"] == model_meta.MAX_WINDOW_S
    assert sweeps["fs_hz"]["maximum"] == model_meta.MAX_FS_HZ
    assert schema["cnn"]["properties"]["input_size"]["maximum"] == model_meta.MAX_INPUT_SIZE
