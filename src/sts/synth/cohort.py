"""The synthetic cohort table and the realisation of one cell (sweeps + traces).

``make_cohort`` is pure numpy/pandas (Snakemake calls it at parse time). Each cell is then
fully determined by its own row: ``simulate_cell(row)`` seeds a generator with
``cell_seed`` and never looks at other rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd

import sts.synth.models as models
import sts.synth.protocol as pr
from sts.synth.models import CLASSES

DEFECTS = ("corrupt_file", "no_long_square", "no_spiking", "no_plus40", "nan_trace", "duplicate_id", "unsure_label")
CLASS_P = (0.19, 0.35, 0.32, 0.14)  # Pvalb, Sst, Vip/Lamp5, Excitatory, as in the real data
CLAMP_FRACTION = 1.0 / 3.0
FAST_FS_FRACTION = 0.15  # clamp cells recorded at 200 kHz
DT_MS = 0.1  # model time step


def _quota(n: int, p, rng: np.random.Generator) -> np.ndarray:
    """n category indices with exact largest-remainder proportions p, shuffled."""
    p = np.asarray(p, float)
    raw = n * p
    counts = np.floor(raw).astype(int)
    counts[np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]] += 1
    return rng.permutation(np.repeat(np.arange(len(p)), counts))


def make_cohort(n_cells: int, seed: int, defect_fraction: float = 0.05) -> pd.DataFrame:
    """Cohort table: specimen_id, dataset, label, fs_hz, defect, cell_seed, model_class.

    ``model_class`` is the class whose physiology the cell has (differs from ``label`` only
    for unsure_label rows, labelled "Unsure"). Defects cycle through DEFECTS so every kind
    appears once n_cells * defect_fraction >= 7.
    """
    rng = np.random.default_rng(seed)
    n = int(n_cells)
    cls = np.asarray(CLASSES, dtype=object)[_quota(n, CLASS_P, rng)]
    dataset = np.where(_quota(n, (CLAMP_FRACTION, 1 - CLAMP_FRACTION), rng) == 0, "clamp", "seq")
    fs = np.where((dataset == "clamp") & (rng.random(n) < FAST_FS_FRACTION), 200000.0, 50000.0)
    # Unique 9-digit ids: random positive increments from 3e8, then shuffled.
    ids = 300_000_000 + np.cumsum(rng.integers(1, 100_000, n))
    ids = rng.permutation(ids).astype(str).astype(object)
    df = pd.DataFrame({
        "specimen_id": ids, "dataset": dataset.astype(object), "label": cls.copy(), "fs_hz": fs,
        "defect": np.full(n, "", dtype=object), "cell_seed": rng.integers(0, 2**31 - 1, n, dtype=np.int64),
        "model_class": cls,
    })
    n_def = min(int(round(n * defect_fraction)), max(n - 1, 0))
    if n_def:
        rows = rng.choice(np.arange(1, n), size=n_def, replace=False)  # row 0 stays good
        kinds = [DEFECTS[k % len(DEFECTS)] for k in range(n_def)]
        df.loc[rows, "defect"] = kinds
        df.loc[df["defect"] == "unsure_label", "label"] = "Unsure"
        for r in rows[np.asarray(kinds) == "duplicate_id"]:
            good = np.flatnonzero((df["defect"].to_numpy()[:r] == ""))
            src = int(good[rng.integers(len(good))]) if len(good) else 0
            # Same id, same recording: the row duplicates an earlier one's metadata and file.
            for col in ("specimen_id", "dataset", "label", "fs_hz", "cell_seed", "model_class"):
                df.at[r, col] = df.at[src, col]
    return df


@dataclass
class SweepData:
    """One written sweep: stimulus (pA) and response (mV) at fs_hz, names for both layouts."""

    number: int
    kind: str
    amp_pa: float
    allen_name: str
    mies_code: str
    stimulus_pa: np.ndarray
    response_mv: np.ndarray
    spike_times_s: np.ndarray


@dataclass
class CellData:
    specimen_id: str
    label: str
    fs_hz: float
    onset_s: float
    rheobase_pa: float | None
    params: models.CellParams
    sweeps: list[SweepData] = field(default_factory=list)


def _simulate(p, sweeps, fs, onset, test_pa, rng):
    """(stimulus_pa list, response_mv list, spike-time list) at fs for each sweep."""
    if not sweeps:
        return [], [], []
    dur = max(s.dur_s for s in sweeps)
    t_mod = np.arange(int(round(dur * 1000.0 / DT_MS))) * DT_MS / 1000.0
    i_mod = np.stack([pr.stimulus_pa(s, t_mod, onset, test_pa) for s in sweeps])
    v = models.subthreshold(p, i_mod, DT_MS, rng)
    spikes = models.find_spikes(p, v, DT_MS, rng, t0_ms=(pr.TEST_START_S + pr.TEST_DUR_S) * 1000.0)
    n_out = int(round(dur * fs))
    v_out = models.render(p, v, DT_MS, spikes, fs, n_out)
    t_out = np.arange(n_out) / fs
    stims, resps, times = [], [], []
    for k, s in enumerate(sweeps):
        m = int(round(s.dur_s * fs))
        stims.append(pr.stimulus_pa(s, t_out[:m], onset, test_pa))
        resps.append(v_out[k, :m])
        times.append(spikes[k][0][spikes[k][0] < s.dur_s * 1000.0] / 1000.0)
    return stims, resps, times


def _in_step(times, onset):
    return int(np.sum((times >= onset) & (times < onset + pr.STEP_DUR_S)))


def simulate_cell(row: Mapping) -> CellData:
    """Realise one cohort row: parameters, protocol (with its defect), traces at fs_hz."""
    rng = np.random.default_rng(int(row["cell_seed"]))
    defect = str(row.get("defect", "") or "")
    p = models.draw_params(str(row.get("model_class", row["label"])), rng)
    fs = float(row["fs_hz"])
    onset = 1.02 + float(rng.uniform(-0.003, 0.003))
    test_pa = -round(10_000.0 / p.r_mohm)  # ~ -10 mV across the input resistance
    style = "C1" if rng.random() < 0.5 else "X"
    ls = [] if defect == "no_long_square" else pr.long_square_ladder(p.rheobase_est_pa, rng, defect)
    st, rs, tm = _simulate(p, ls, fs, onset, test_pa, rng)
    recs = list(zip(ls, st, rs, tm))

    def rheobase():
        amps = [s.amp_pa for s, _, _, t in recs if _in_step(t, onset) > 0]
        return min(amps) if amps else None

    extra: list[pr.Sweep] = []
    if defect == "no_spiking":
        recs = [r for r in recs if r[3].size == 0]
    elif ls:
        top = max(s.amp_pa for s in ls)
        for _ in range(6):  # rare: ladder entirely below the noisy rheobase; go on up
            if rheobase() is not None:
                break
            top += pr.GRID_PA
            new = [pr.Sweep("long_square", top)]
            recs += list(zip(new, *_simulate(p, new, fs, onset, test_pa, rng)))
        r = rheobase()
        if r is not None and defect == "no_plus40":
            recs = [x for x in recs if abs(x[0].amp_pa - (r + 40.0)) >= 15.0]
            extra = [pr.Sweep("long_square", a) for a in (r + 20.0, r + 60.0)
                     if not any(abs(x[0].amp_pa - a) < 1 for x in recs)]
        elif r is not None and not any(abs(x[0].amp_pa - (r + 40.0)) <= 5.0 for x in recs):
            extra = [pr.Sweep("long_square", r + 40.0)]
        if extra:
            recs += list(zip(extra, *_simulate(p, extra, fs, onset, test_pa, rng)))
    rheo = rheobase() if defect != "no_spiking" else None
    others = pr.other_sweeps(p.rheobase_est_pa, rng)
    orecs = list(zip(others, *_simulate(p, others, fs, onset, test_pa, rng)))
    # File order: test, short squares, ladder ascending (repeats and additions later), ramp.
    seen, ladder, later = set(), [], []
    for x in recs:
        key = x[0].amp_pa
        (later if key in seen or x[0] in extra else ladder).append(x)
        seen.add(key)
    ladder.sort(key=lambda x: x[0].amp_pa)
    ordered = orecs[:3] + ladder + later + orecs[3:]
    numbered = pr.number_sweeps([x[0] for x in ordered], rng)
    truncate_last = rng.random() < 0.3
    cell = CellData(str(row["specimen_id"]), str(row["label"]), fs, onset, rheo, p)
    for k, (s, (_, stim, resp, times)) in enumerate(zip(numbered, ordered)):
        if truncate_last and k == len(ordered) - 1:  # recording stopped early
            m = int(round(1.6 * fs))
            stim, resp, times = stim[:m], resp[:m], times[times < 1.6]
        cell.sweeps.append(SweepData(
            s.number, s.kind, float(s.amp_pa), pr.ALLEN_NAMES[s.kind], pr.mies_code(s, style, rheo),
            stim, resp.copy(), times))
    if defect == "nan_trace" and rheo is not None:
        sw = next(x for x in cell.sweeps if x.kind == "long_square" and x.amp_pa == rheo)
        a = int(round((onset + 0.3) * fs))
        sw.response_mv[a : a + int(round(0.01 * fs))] = np.nan
    return cell
