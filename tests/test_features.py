"""EP features (ipfx long-square analysis) against hand-computed values, and on synthetic cells."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sts.baseline.features import FEATURE_NAMES, compute_features, features_from_arrays
from sts.baseline.feature_files import aggregate, features_file

FS = 50_000.0
ONSET_S, STEP_S, SWEEP_S = 0.5, 1.0, 2.2  # sts.prep.sweeps.find_step: step < half the sweep
R_MOHM, TAU_S, VREST = 200.0, 0.02, -70.0
WIDTH_MS = 0.6  # full width at half maximum of the Gaussian spikes
SIGMA_S = WIDTH_MS / 2.355 / 1000


def sweep(amp_pa: float, spike_times=(), fs: float = FS):
    """(stimulus pA, response mV): a step at ONSET_S for STEP_S on a passive RC membrane
    (R_MOHM, TAU_S), plus 100 mV Gaussian spikes whose onset (3 sigma before the peak) is at
    each spike time (s from step onset). No noise: thresholds are exact up to ipfx's filter."""
    t = np.arange(int(SWEEP_S * fs)) / fs
    on = (t >= ONSET_S) & (t < ONSET_S + STEP_S)
    stim = np.where(on, amp_pa, 0.0)
    dv = amp_pa * R_MOHM * 1e-3  # mV
    s = t - ONSET_S
    v = VREST + np.where(on, dv * (1 - np.exp(-np.clip(s, 0, None) / TAU_S)), 0.0)
    after = t >= ONSET_S + STEP_S
    v = v + np.where(after, dv * (1 - np.exp(-STEP_S / TAU_S)) * np.exp(-(s - STEP_S) / TAU_S), 0.0)
    for ts in spike_times:
        v += 100.0 * np.exp(-0.5 * ((s - ts - 3 * SIGMA_S) / SIGMA_S) ** 2)
    return stim, v


# Spike times (s from onset) per amplitude: rheobase 60 pA, hero 100 pA (rheobase + 40).
TRAINS = {
    60.0: [0.300],
    80.0: [0.150, 0.450, 0.800],
    100.0: [0.080, 0.120, 0.180, 0.260, 0.360, 0.480, 0.620, 0.780, 0.960],
    120.0: [0.05 + 0.07 * k for k in range(13)],
}


def hand_cell(trains=TRAINS, sub=(-90.0, -70.0, -50.0, -30.0, 20.0, 40.0)):
    sweeps = [(k, *sweep(a), FS) for k, a in enumerate(sub)]
    sweeps += [(10 + k, *sweep(a, ts), FS) for k, (a, ts) in enumerate(trains.items())]
    return sweeps


@pytest.fixture(scope="module")
def hand():
    res = features_from_arrays(hand_cell(), source="hand")
    assert res.status == "ok", res.reason
    return res


def test_spike_train_features_match_hand_computation(hand):
    f = hand.features
    hero = np.array(TRAINS[100.0])
    isis = np.diff(hero)
    assert f["threshold_i_long_square"] == pytest.approx(60.0)
    assert f["latency"] == pytest.approx(hero[0], abs=2e-4)  # s
    assert f["avg_isi"] == pytest.approx(isis.mean() * 1e3, abs=0.02)  # ms
    assert f["first_isi"] == pytest.approx(isis[0] * 1e3, abs=0.02)
    # ipfx's adaptation index: mean of (isi[k+1] - isi[k]) / (isi[k+1] + isi[k])
    adapt = np.mean((isis[1:] - isis[:-1]) / (isis[1:] + isis[:-1]))
    assert f["adaptation"] == pytest.approx(adapt, abs=1e-3)
    assert f["avg_rate"] == pytest.approx(len(hero) / STEP_S)
    # f-I slope: least-squares line through (amplitude, spikes / step duration) of spiking sweeps
    amps = np.array(list(TRAINS))
    rates = np.array([len(v) for v in TRAINS.values()]) / STEP_S
    assert f["f_i_curve_slope"] == pytest.approx(np.polyfit(amps, rates, 1)[0], rel=1e-6)
    assert f["has_burst"] == 0.0 and f["has_pause"] == 0.0 and f["has_delay"] == 0.0


def test_spike_shape_at_rheobase(hand):
    f = hand.features
    ts = TRAINS[60.0][0]
    plateau = VREST + 60.0 * R_MOHM * 1e-3 * (1 - math.exp(-(ts + 3 * SIGMA_S) / TAU_S))
    assert f["peak_v_long_square"] == pytest.approx(plateau + 100.0, abs=0.5)
    assert f["peak_t_long_square"] == pytest.approx(ts + 3 * SIGMA_S, abs=2e-5)
    assert f["threshold_t_long_square"] == pytest.approx(ts, abs=2e-4)
    assert plateau < f["threshold_v_long_square"] < plateau + 10.0
    assert f["width_long_square"] == pytest.approx(WIDTH_MS, rel=0.1)  # ms
    assert f["upstroke_downstroke_ratio_long_square"] == pytest.approx(1.0, abs=0.15)  # symmetric
    assert f["trough_v_long_square"] == pytest.approx(plateau, abs=1.0)


def test_subthreshold_features_match_the_rc_membrane(hand):
    f = hand.features
    assert f["vrest"] == pytest.approx(VREST, abs=1e-6)
    assert f["ri"] == pytest.approx(R_MOHM, rel=0.02)
    assert f["tau"] == pytest.approx(TAU_S * 1e3, rel=0.05)  # ms
    assert f["sag"] == pytest.approx(0.0, abs=0.01)


def test_undefined_features_stay_nan():
    """One spike in the hero sweep: no ISI, so avg_isi and adaptation are NaN, not imputed."""
    res = features_from_arrays(hand_cell({60.0: [0.3], 100.0: [0.2], 120.0: [0.1, 0.5]}))
    assert res.status == "ok", res.reason
    f = res.features
    assert math.isnan(f["avg_isi"]) and math.isnan(f["adaptation"]) and math.isnan(f["first_isi"])
    assert f["latency"] == pytest.approx(0.2, abs=2e-4)
    assert np.isfinite(f["f_i_curve_slope"])


def test_alignment_on_each_sweeps_own_onset():
    """A sweep whose step starts later still gives the same features (onset found per sweep)."""
    sweeps = hand_cell()
    n, stim, v, fs = sweeps[-2]
    shift = int(0.013 * fs)
    sweeps[-2] = (n, np.r_[np.zeros(shift), stim], np.r_[np.full(shift, VREST), v], fs)
    res = features_from_arrays(sweeps)
    hero = np.diff(TRAINS[100.0])
    assert res.features["avg_isi"] == pytest.approx(hero.mean() * 1e3, abs=0.02)


@pytest.mark.parametrize(
    "sweeps, cause",
    [
        ([], "no long-square sweeps"),
        (hand_cell({}), "No spiking long square sweeps"),
        (hand_cell(sub=(20.0,)), "No subthreshold long square sweeps with stim_amp"),
    ],
)
def test_exclusion_reasons(sweeps, cause):
    res = features_from_arrays(sweeps, source="cell.nwb")
    assert res.status == "excluded" and cause in res.reason and "cell.nwb" in res.reason
    assert res.features == {}


def test_nan_in_a_step_excludes():
    sweeps = hand_cell()
    n, stim, v, fs = sweeps[-1]
    v = v.copy()
    v[int(0.9 * fs) : int(0.91 * fs)] = np.nan
    sweeps[-1] = (n, stim, v, fs)
    res = features_from_arrays(sweeps, source="x.nwb")
    assert res.status == "excluded" and f"sweep {n}" in res.reason and "x.nwb" in res.reason


def test_truncated_sweep_is_dropped_not_fatal():
    sweeps = hand_cell()
    n, stim, v, fs = sweeps[-1]
    m = int((ONSET_S + 0.4) * fs)
    sweeps[-1] = (n, stim[:m], v[:m], fs)
    res = features_from_arrays(sweeps)
    assert res.status == "ok" and res.info["dropped_sweeps"] == [n]


# -- synthetic NWB cells (both layouts, with defects) ------------------------------------------

FILE_DEFECTS = {"corrupt_file": "unreadable NWB file", "no_long_square": "no long-square sweeps",
                "no_spiking": "No spiking long square sweeps", "nan_trace": "NaN values"}
CORE = ("f_i_curve_slope", "latency", "threshold_i_long_square", "vrest", "ri", "sag", "tau",
        "peak_v_long_square", "threshold_v_long_square", "trough_v_long_square", "has_burst")


@pytest.fixture(scope="module")
def synth_features(synth_cells):
    cohort, paths = synth_cells
    rows = cohort.drop_duplicates("specimen_id").to_dict("records")
    return [(r, compute_features(paths[r["specimen_id"]])) for r in rows]


def test_synthetic_cells(synth_features):
    seen = set()
    for row, res in synth_features:
        defect = row["defect"]
        if defect in FILE_DEFECTS:
            assert res.status == "excluded", row
            assert FILE_DEFECTS[defect] in res.reason and row["specimen_id"] in res.reason
            seen.add(defect)
        else:  # good cells; label and +40 pA defects do not touch the features
            assert res.status == "ok", (row, res.reason)
            assert set(res.features) == set(FEATURE_NAMES)
            bad = [k for k in CORE if not np.isfinite(res.features[k])]
            assert not bad, (row["specimen_id"], bad)
    assert seen == set(FILE_DEFECTS)


def test_pvalb_spikes_are_narrower(synth_features):
    width = {}
    for row, res in synth_features:
        if res.status == "ok" and np.isfinite(res.features["width_long_square"]):
            width.setdefault(row["model_class"], []).append(res.features["width_long_square"])
    assert np.mean(width["Pvalb"]) < np.mean(width["Excitatory"])
    assert np.mean(width["Pvalb"]) < 0.6  # ms; fast-spiking


def test_cli_json_and_aggregate(synth_cells, tmp_path):
    from sts.cli import build_parser

    cohort, paths = synth_cells
    good = cohort[cohort["defect"] == ""].iloc[0]
    bad = cohort[cohort["defect"] == "corrupt_file"].iloc[0]
    out_good, out_bad = tmp_path / "f" / "good.json", tmp_path / "f" / "bad.json"
    features_file(paths[good["specimen_id"]], out_good, good["specimen_id"], "clamp", "Vip/Lamp5")
    features_file(paths[bad["specimen_id"]], out_bad, bad["specimen_id"])
    rec = json.loads(out_good.read_text())  # strict JSON: NaN written as null
    assert rec["status"] == "ok" and rec["label"] == "Vip/Lamp5"
    assert set(rec["features"]) == set(FEATURE_NAMES)
    assert json.loads(out_bad.read_text())["status"] == "excluded"
    assert not list(out_good.parent.glob(".*tmp*"))

    import pandas as pd

    table = tmp_path / "features.csv"
    assert aggregate([out_bad, out_good], table) == 2
    df = pd.read_csv(table, dtype={"specimen_id": str})
    assert list(df.columns[:5]) == ["specimen_id", "dataset", "label", "status", "reason"]
    assert list(df.columns[5:]) == list(FEATURE_NAMES)
    ok = df.set_index("specimen_id").loc[good["specimen_id"]]
    assert ok["f_i_curve_slope"] == pytest.approx(rec["features"]["f_i_curve_slope"])
    assert df.set_index("specimen_id").loc[bad["specimen_id"], list(FEATURE_NAMES)].isna().all()

    # the argparse wiring, whether or not sts.cli registers the module yet
    import argparse

    from sts.baseline.feature_files import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["ep-features", "a.nwb", "b.json", "--specimen-id", "7", "--label", "Sst"])
    assert (args.nwb, args.out, args.specimen_id, args.label) == ("a.nwb", "b.json", "7", "Sst")
    args = parser.parse_args(["ep-features-aggregate", "o.csv", "a.json", "b.json"])
    assert args.jsons == ["a.json", "b.json"] and callable(args.func)
    build_parser()  # the main parser still builds


def test_protocol_names_of_the_lab_follow_the_sweeps_settings(tmp_path):
    """A cell whose long squares carry the lab's own protocol name ("IV steps"): excluded with the
    default names, and the very features of the original file with sweeps.any_square_step or
    that name in sweeps.long_square_names, as the workflow passes them (`sts ep-features --params`)."""
    from conftest import rename_long_squares
    from sts.baseline.features import FeatureParams
    from sts.cli import main
    from sts.settings import feature_params, from_dict
    from sts.synth import write_cell

    row = {"specimen_id": "1", "dataset": "clamp", "label": "Pvalb", "fs_hz": 20000.0, "defect": "", "cell_seed": 11,
           "model_class": "Pvalb"}  # fmt: skip
    write_cell(row, tmp_path / "named.nwb")
    # the whole ladder; ramps, short squares and test pulses keep their names
    assert rename_long_squares(tmp_path / "named.nwb", tmp_path / "lab.nwb") >= 8

    reference = compute_features(tmp_path / "named.nwb")
    assert reference.status == "ok"
    assert "no long-square sweeps" in compute_features(tmp_path / "lab.nwb").reason
    for sweeps in ({"any_square_step": True}, {"long_square_names": ["IV steps"]}):
        params = feature_params(sweeps)
        got = compute_features(tmp_path / "lab.nwb", from_dict(FeatureParams, params, "features"))
        assert got.status == "ok", sweeps
        np.testing.assert_array_equal(np.array(list(got.features.values()), float),
                                      np.array(list(reference.features.values()), float))  # fmt: skip
        out = tmp_path / "f.json"
        assert main(["ep-features", str(tmp_path / "lab.nwb"), str(out), "--specimen-id", "1",
                     "--params", json.dumps(params)]) == 0  # fmt: skip
        assert json.loads(out.read_text())["status"] == "ok"
    with pytest.raises(SystemExit, match="unknown settings"):
        main(["ep-features", str(tmp_path / "lab.nwb"), str(out), "--specimen-id", "1", "--params", '{"window_s": 1}'])


def test_feature_params_follow_the_sweeps_block():
    from dataclasses import asdict, fields

    from sts.baseline.features import FeatureParams
    from sts.settings import SWEEPS_TO_FEATURES, SelectionParams, feature_params

    assert feature_params({"window_s": 1.2, "tolerance_pa": 20}) == {}  # selection-only keys stay there
    sweeps = {"dvdt_cutoff_mv_ms": 15, "long_square_names": ["IV"], "min_step_s": 0.2, "any_square_step": True}
    assert feature_params(sweeps) == {"dv_cutoff_mv_ms": 15, "long_square_names": ["IV"], "min_step_s": 0.2,
                                      "any_square_step": True}  # fmt: skip
    names = {f.name for f in fields(FeatureParams)}
    for key, field in SWEEPS_TO_FEATURES.items():  # same defaults on both sides
        assert field in names and getattr(FeatureParams(), field) == getattr(SelectionParams(), key), key
    old = {k: v for k, v in asdict(FeatureParams()).items() if k not in ("any_square_step", "delay_fit")}
    # a model saved before these existed: named long squares only, ipfx's delay fit
    assert FeatureParams.from_dict(old) == FeatureParams(delay_fit="ipfx")
    with pytest.raises(ValueError, match="delay_fit"):
        FeatureParams(delay_fit="scipy")


def test_models_trained_on_ipfx_delay_fit_get_it(hand):
    """delay_fit="ipfx" (models saved before the reproducible fit) changes delay_ratio alone, to
    ipfx's own estimate of the same rise (the hand cell is an RC membrane: latency / TAU_S)."""
    from sts.baseline.features import FeatureParams

    ours, theirs = hand, features_from_arrays(hand_cell(), FeatureParams(delay_fit="ipfx"), source="hand")
    assert theirs.status == "ok"
    assert {k for k in FEATURE_NAMES if _bits({k: ours.features[k]}) != _bits({k: theirs.features[k]})} <= {"delay_ratio"}
    assert theirs.features["delay_ratio"] == pytest.approx(TRAINS[100.0][0] / TAU_S, rel=0.1)


def _bits(features: dict) -> dict:
    """Feature values as exact bit patterns (NaN equal to NaN)."""
    return {k: float(v).hex() for k, v in features.items()}


def test_features_are_reproducible(synth_features, synth_cells):
    """The same file gives bit-identical features on a second call in this process (other cells
    computed in between, in another order) and in a fresh process: delay_ratio included."""
    import subprocess
    import sys

    _, paths = synth_cells
    first = {r["specimen_id"]: _bits(res.features) for r, res in synth_features if res.status == "ok"}
    again = {sid: _bits(compute_features(paths[sid]).features) for sid in reversed(list(first))}
    moved = {sid: [k for k in first[sid] if again[sid][k] != first[sid][k]] for sid in first}
    assert not any(moved.values()), {sid: names for sid, names in moved.items() if names}
    some = list(first)[:8]
    code = ("import json, sys\nfrom sts.baseline.features import compute_features\n"
            "print(json.dumps({p: {k: float(v).hex() for k, v in compute_features(p).features.items()}"
            " for p in sys.argv[1:]}))")
    out = subprocess.run([sys.executable, "-c", code, *(str(paths[s]) for s in some)],
                         capture_output=True, text=True, check=True).stdout
    fresh = json.loads(out.strip().splitlines()[-1])
    assert {s: fresh[str(paths[s])] for s in some} == {s: first[s] for s in some}


def test_delay_ratio_is_latency_over_the_rc_time_constant(hand):
    """The hand cell's hero sweep rises as a passive RC membrane (TAU_S) until its first spike."""
    f = hand.features
    assert f["delay_ratio"] == pytest.approx(TRAINS[100.0][0] / TAU_S, rel=0.02)
