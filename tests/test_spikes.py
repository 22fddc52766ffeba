from pathlib import Path

import numpy as np
import pytest

from sts.prep.spikes import detect_spikes


def spike_train(times_s, fs_hz=50_000.0, dur_s=2.0, width_ms=0.5, noise_mv=0.3, seed=0):
    """-70 mV baseline with Gaussian-shaped spikes (peak +30 mV) at known times, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(dur_s * fs_hz)) / fs_hz
    v = np.full(t.size, -70.0)
    sigma = width_ms / 2.355 / 1000
    for ts in times_s:
        v += 100 * np.exp(-0.5 * ((t - ts - 3 * sigma) / sigma) ** 2)
    return v + rng.normal(0, noise_mv, t.size)


@pytest.mark.parametrize("fs_hz", [50_000.0, 200_000.0])
@pytest.mark.parametrize("width_ms", [0.3, 1.2])
def test_known_spike_times(fs_hz, width_ms):
    times = np.array([1.05, 1.1, 1.3, 1.31, 1.8])
    v = spike_train(times, fs_hz, width_ms=width_ms)
    found = detect_spikes(v, fs_hz)
    assert found.size == times.size
    # threshold precedes the peak by less than the spike's own rise
    assert np.all((found <= times + 3 * width_ms / 2.355 / 1000) & (found > times - 1e-3))


def test_window_restricts_count():
    times = [0.5, 1.1, 1.5, 2.5]
    v = spike_train(times, dur_s=3.0)
    assert detect_spikes(v, 50_000.0, start_s=1.0, end_s=2.0).size == 2


def test_noise_and_subthreshold_bumps_are_not_spikes():
    fs = 200_000.0
    rng = np.random.default_rng(1)
    t = np.arange(int(fs)) / fs
    # 1 mV noise at 200 kHz has raw dV/dt far above 20 mV/ms; a slow 15 mV depolarisation
    v = -70 + 15 * np.exp(-0.5 * ((t - 0.5) / 0.02) ** 2) + rng.normal(0, 1.0, t.size)
    assert detect_spikes(v, fs).size == 0


def test_agrees_with_ipfx_on_synthetic_sweep(synth_cells):
    """Spike counts of ipfx's SpikeFeatureExtractor and ours on real-layout synthetic sweeps."""
    from ipfx.feature_extractor import SpikeFeatureExtractor

    from sts.recordings import open_recording
    from sts.prep.sweeps import find_step, is_long_square, SelectionParams

    cohort, paths = synth_cells
    good = cohort[(cohort["defect"] == "") & (cohort["dataset"] == "clamp")].iloc[0]
    compared = 0
    with open_recording(paths[good["specimen_id"]]) as rec:
        for n in rec.sweep_numbers:
            if not is_long_square(rec.stimulus_name(n), SelectionParams().long_square_names):
                continue
            fs = rec.fs_hz(n)
            i, v = rec.load(n)
            step = find_step(i, fs)
            t = np.arange(v.size) / fs
            t0, t1 = step.onset_idx / fs, (step.onset_idx + step.duration_idx) / fs
            ext = SpikeFeatureExtractor(start=t0, end=t1, filter=10.0)
            theirs = len(ext.process(t, v, i))
            ours = detect_spikes(v, fs, t0, t1).size
            assert ours == theirs, f"sweep {n}: ours {ours}, ipfx {theirs}"
            compared += theirs
    assert compared > 0


REAL_END_SPIKE = Path(__file__).resolve().parents[2] / "shared" / "realdata2" / "minegishi_shr_2021_05_13_07_0005.abf"


@pytest.mark.skipif(not REAL_END_SPIKE.is_file(), reason="no real recordings in ../shared/realdata2")
def test_a_spike_in_the_last_10_ms_of_a_cut_trace_is_counted():
    """ipfx asserts on a spike within 10 ms of the trace's end (a real sweep cut at its step's end,
    sweep 14 of this file); the count equals ipfx's on the uncut sweep."""
    from ipfx.feature_extractor import SpikeFeatureExtractor

    from sts.recordings import open_recording
    from sts.prep.spikes import detect_spikes, filter_khz

    import json

    truth = json.loads((REAL_END_SPIKE.parent / "truth.json").read_text())[REAL_END_SPIKE.name]
    with open_recording(REAL_END_SPIKE) as rec:
        fs, v = rec.fs_hz(14), rec.response_mv(14)
    on = int(round(truth["onset_s"] * fs))
    end = on + int(round(truth["duration_s"] * fs))
    t0, t1 = on / fs, end / fs
    theirs = SpikeFeatureExtractor(start=t0, end=t1, filter=filter_khz(fs)).process(np.arange(v.size) / fs, v, None)
    assert detect_spikes(v[:end], fs, t0, t1).size == len(theirs) > 10
