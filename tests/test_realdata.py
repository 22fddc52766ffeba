"""Sweep selection on real recordings of other labs (../shared/realdata) against truth.json,
an independent reading of each ABF file (the protocol's varied epoch, the step amplitude of
every sweep, action potentials crossing -10 mV inside the step, the rheobase)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from sts.sweeps import SelectionParams, select_sweeps

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not (REALDATA / "truth.json").is_file(), reason=f"no real recordings at {REALDATA}")
TRUTH = json.loads((REALDATA / "truth.json").read_text()) if (REALDATA / "truth.json").is_file() else {}
ABFS = sorted(TRUTH)
USABLE = [f for f in ABFS if TRUTH[f]["usable"]]
NWB = "hippocampus_99111002.nwb"
# An excluded cell's reason says what to change (or why the recording is not a neuron's).
ACTIONABLE = re.compile(
    r"sweeps\.window_s <= [\d.]+ would fit|sweeps\.tolerance_pa >= [\d.]+ would accept|sweeps\.min_step_s|"
    r"sweeps\.qc\.|no long-square sweep with a spike|sweeps\.long_square_names or set sweeps\.any_square_step"
)
LAB = SelectionParams.from_dict(yaml.safe_load((ROOT / "config" / "lab_abf.yaml").read_text())["sweeps"])


def ladder_spacing(truth: dict) -> float:
    return float(np.min(np.diff(sorted(set(truth["amplitudes_pa"])))))


def check_selected(name: str, sel, params: SelectionParams) -> None:
    """Rheobase within one ladder step of the truth, second sweep the ladder's nearest to +40 pA."""
    t = TRUTH[name]
    amps = t["amplitudes_pa"]
    rheo, second = sel.attrs["amplitudes_pa"]
    n_rheo, n_second = sel.attrs["sweep_numbers"]
    assert abs(rheo - t["rheobase_pa"]) <= ladder_spacing(t), f"{name}: rheobase {rheo} vs truth {t['rheobase_pa']}"
    assert amps[n_rheo] == rheo and amps[n_second] == second, f"{name}: amplitudes disagree with the truth's sweeps"
    target = rheo + params.plus_pa
    assert abs(second - target) <= params.tolerance_pa
    assert abs(second - target) == min(abs(a - target) for k, a in enumerate(amps) if k != n_rheo)
    assert sel.attrs["second_offset_pa"] == abs(second - target)
    assert sel.traces_mv.shape == (2, round(params.window_s * params.fs_hz)) and np.isfinite(sel.traces_mv).all()


def test_step_detection_matches_the_protocol():
    """Onset, duration and every sweep's amplitude of the varied epoch, as truth.json reads them."""
    from sts.recordings import open_recording
    from sts.steps import ladder_steps

    checked = 0
    for name in ABFS:
        t = TRUTH[name]
        with open_recording(REALDATA / name) as rec:
            fs = rec.fs_hz(0)
            steps = ladder_steps({n: (rec.stimulus_pa(n), fs, rec.epochs(n)) for n in rec.sweep_numbers}, 0.1)
        if "amplitudes_pa" not in t or not any(t["amplitudes_pa"]):  # 2 ms pulses, the ramp: no step
            assert all(s is None or s.amplitude_pa == 0 for s in steps.values()), name
            continue
        for n, amp in enumerate(t["amplitudes_pa"]):
            st = steps[n]
            assert st is not None and st.amplitude_pa == pytest.approx(amp, abs=0.1), f"{name} sweep {n}"
            assert st.onset_idx / fs == pytest.approx(t["onset_s"], abs=1.5 / fs), f"{name} sweep {n}"
            assert st.duration_idx / fs == pytest.approx(t["duration_s"], abs=1.5 / fs), f"{name} sweep {n}"
        checked += 1
    assert checked >= 9


def test_segmented_command_agrees_with_the_epoch_table():
    """The same steps whether the ABF epoch table or the command trace is segmented (NWB's path)."""
    from sts.recordings import open_recording
    from sts.steps import ladder_steps

    for name in USABLE:
        with open_recording(REALDATA / name) as rec:
            fs = rec.fs_hz(0)
            table = ladder_steps({n: (rec.stimulus_pa(n), fs, rec.epochs(n)) for n in rec.sweep_numbers}, 0.1)
            trace = ladder_steps({n: (rec.stimulus_pa(n), fs, None) for n in rec.sweep_numbers}, 0.1)
        assert {n: (s.onset_idx, s.duration_idx, s.amplitude_pa) for n, s in table.items() if s} == \
               {n: (s.onset_idx, s.duration_idx, s.amplitude_pa) for n, s in trace.items() if s}, name  # fmt: skip


def test_spike_counts_agree_with_ipfx():
    """sts.spikes and ipfx's SpikeFeatureExtractor count the same spikes in every step of every file."""
    import pyabf
    from ipfx.feature_extractor import SpikeFeatureExtractor

    from sts.spikes import detect_spikes, filter_khz

    compared = 0
    for name in USABLE:
        t = TRUTH[name]
        abf = pyabf.ABF(str(REALDATA / name))
        t0, t1 = t["onset_s"], t["onset_s"] + t["duration_s"]
        for n in abf.sweepList:
            abf.setSweep(n, channel=0)
            v, i = abf.sweepY.astype(float), abf.sweepC.astype(float)
            time = np.arange(v.size) / abf.dataRate
            theirs = len(SpikeFeatureExtractor(start=t0, end=t1, filter=filter_khz(abf.dataRate)).process(time, v, i))
            assert detect_spikes(v, abf.dataRate, t0, t1).size == theirs, f"{name} sweep {n}"
            compared += theirs
    assert compared > 500


@pytest.mark.parametrize("name", ABFS + [NWB])
def test_default_config_selects_or_says_what_to_change(name):
    sel = select_sweeps(REALDATA / name, SelectionParams())
    if sel.status == "ok":
        assert TRUTH[name]["usable"], f"{name} is a negative control"
        check_selected(name, sel, SelectionParams())
    else:
        assert ACTIONABLE.search(sel.reason), f"{name}: {sel.reason}"


def test_lab_config_selects_seven_of_eight_ladders():
    selected = {}
    for name in ABFS:
        sel = select_sweeps(REALDATA / name, LAB)
        if not TRUTH[name]["usable"]:
            assert sel.status == "excluded" and sel.reason, name  # ramp, 2 ms pulses, model cell
            continue
        if sel.status == "ok":
            check_selected(name, sel, LAB)
            selected[name] = sel.attrs["amplitudes_pa"]
        else:
            assert ACTIONABLE.search(sel.reason), f"{name}: {sel.reason}"
    assert len(USABLE) == 8 and len(selected) >= 7, selected


def test_negative_controls_are_excluded_with_their_cause():
    reasons = {name: select_sweeps(REALDATA / name, LAB).reason for name in ABFS if not TRUTH[name]["usable"]}
    assert "no square current step" in reasons["171116sh_0016.abf"]  # a ramp
    assert "no square current step of at least 0.1 s" in reasons["File_axon_6.abf"]  # 2 ms pulses
    assert "sweeps.qc" in reasons["2020_03_02_0000.abf"] or "no long-square sweep with a spike" in reasons[
        "2020_03_02_0000.abf"]  # model cell: -3 mV at rest, no action potential  # fmt: skip


@pytest.mark.parametrize("params", [SelectionParams(), LAB], ids=["default", "lab"])
def test_generic_nwb2_file_ends_ok_or_excluded(params):
    sel = select_sweeps(REALDATA / NWB, params)
    assert sel.status in ("ok", "excluded") and (sel.status == "ok" or sel.reason)
    if params.any_square_step:  # the ladder is found: -2000..+1000 pA by 200 pA, 0.4 s steps
        assert "long_square_names" not in sel.reason


def test_lab_config_validates_over_the_local_config():
    """config/lab_abf.yaml laid over config/local.yaml passes the workflow's schema."""
    from snakemake.utils import validate

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    for name in ("local.yaml", "lab_abf.yaml"):
        config.update(yaml.safe_load((ROOT / "config" / name).read_text()))
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    assert config["sweeps"]["any_square_step"] is True


def test_ep_features_find_the_same_ladder():
    """ipfx's long-square analysis on the ladder sweep selection finds: its rheobase is the truth's
    wherever ipfx can analyse the cell (it needs subthreshold steps of -100..0 pA)."""
    from sts.baseline.features import compute_features

    ok = 0
    for name in USABLE:
        result = compute_features(REALDATA / name)
        if result.status == "ok":
            assert result.features["threshold_i_long_square"] == TRUTH[name]["rheobase_pa"], name
            ok += 1
        else:
            assert result.reason, name
    assert ok >= 5
