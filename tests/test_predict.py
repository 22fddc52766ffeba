"""``sts predict``: preparation from the model's saved parameters, excluded rows, exit status, figures.

The model is an untrained MobileNetV2 at 32 px saved with model.pt's metadata (no training
needed here); train/serve parity with a trained model is checked in test_workflow.py on the
end-to-end run.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from conftest import FILE_DEFECT_REASONS
from cnn_data import save_untrained_model
from sts.cli import main

CLASSES = ["Pvalb", "Sst", "Vip/Lamp5", "Excitatory"]
# Deliberately not the config defaults: the command must take these from model.pt.
PREPARATION = {
    "sweeps": {"window_s": 1.0, "fs_hz": 2000, "plus_pa": 40, "tolerance_pa": 5, "dvdt_cutoff_mv_ms": 20},
    "scalogram": {"wavelet": "mexh", "fmin_hz": 30, "fmax_hz": 150, "n_freqs": 40},
}


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    """A folder with two good cells (NWB v1, NWB 2), one without long squares, one truncated file,
    a file that is not NWB at all, and a text file that must be ignored."""
    from sts.synth import make_cohort, write_cell

    cohort = make_cohort(40, seed=7, defect_fraction=0.2).drop_duplicates("specimen_id")
    pick = {
        "good_clamp": cohort[(cohort["defect"] == "") & (cohort["dataset"] == "clamp")].iloc[0],
        "good_seq": cohort[(cohort["defect"] == "") & (cohort["dataset"] == "seq")].iloc[0],
        "no_long_square": cohort[cohort["defect"] == "no_long_square"].iloc[0],
        "corrupt_file": cohort[cohort["defect"] == "corrupt_file"].iloc[0],
    }
    root = tmp_path_factory.mktemp("predict_in")
    folder = root / "cells"
    paths = {}
    for kind, row in pick.items():
        paths[kind] = folder / f"{row['specimen_id']}.nwb"
        write_cell(row, paths[kind])
    paths["not_nwb"] = folder / "sub" / "notes_copy.nwb"  # nested: folders are searched recursively
    paths["not_nwb"].parent.mkdir()
    paths["not_nwb"].write_text("not an NWB file\n")
    (folder / "notes.txt").write_text("ignored")
    model = save_untrained_model(root / "model.pt", PREPARATION, CLASSES)
    return folder, paths, model


def predict(model, *inputs, out, extra=()):
    return main(["predict", "--model", str(model), "--out", str(out), "--device", "cpu", "--threads", "1",
                 *extra, *map(str, inputs)], warm=False)  # fmt: skip


def pack_one(tmp_path, scalogram_file: Path, size: int = 32) -> np.ndarray:
    """The image ``sts pack`` makes of one per-cell scalogram file."""
    from sts.cnn.pack import load_packed, pack

    (tmp_path / "scal").mkdir(parents=True, exist_ok=True)
    (tmp_path / "scal" / "x.h5").write_bytes(scalogram_file.read_bytes())
    pd.DataFrame([{"specimen_id": "x", "dataset": "seq", "label": "Pvalb", "status": "ok", "reason": "",
                   "split": "train", "fold": 0}]).to_csv(tmp_path / "m.csv", index=False)  # fmt: skip
    pack(tmp_path / "m.csv", tmp_path / "scal", tmp_path / "packed.h5", size, classes=["Pvalb"])
    return np.array(load_packed(tmp_path / "packed.h5").images[0])


def test_preparation_comes_from_the_model_and_matches_the_per_cell_commands(cells, tmp_path):
    """The image fed to the network equals what select-sweeps -> scalogram -> pack make with the
    model's saved parameters: the float32 CWT rounds to the file's float16 bit for bit, and the
    packed image of that file is predict's image exactly (predict rounds through float16 too)."""
    from sts.serve.cnn import CnnPredictor

    _, paths, model = cells
    predictor = CnnPredictor(model, "cpu")
    s, c = PREPARATION["sweeps"], PREPARATION["scalogram"]
    for kind in ("good_clamp", "good_seq"):
        prepared = predictor.prepare(paths[kind])
        assert prepared.status == "ok", prepared.reason
        assert main(["select-sweeps", str(paths[kind]), str(tmp_path / "sw.h5"), "--specimen-id", "x",
                     "--window-s", str(s["window_s"]), "--fs-hz", str(s["fs_hz"])], warm=False) == 0  # fmt: skip
        assert main(["scalogram", str(tmp_path / "sw.h5"), str(tmp_path / "sc.h5"), "--fmin-hz", str(c["fmin_hz"]),
                     "--fmax-hz", str(c["fmax_hz"]), "--n-freqs", str(c["n_freqs"])], warm=False) == 0  # fmt: skip
        with h5py.File(tmp_path / "sc.h5") as f:
            reference = f["scalogram"][()]
            assert list(f.attrs["amplitudes_pa"]) == list(prepared.attrs["amplitudes_pa"])
        assert prepared.scalogram.shape == (2, 40, 2000) and reference.dtype == np.float16
        np.testing.assert_array_equal(prepared.scalogram.astype(np.float16), reference)
        np.testing.assert_array_equal(prepared.image, pack_one(tmp_path / kind, tmp_path / "sc.h5"))


def test_models_saved_before_scalogram_dtype_serve_float32_scalograms(cells, tmp_path):
    """A model trained on float32 scalogram files (no scalogram_dtype in model.pt) gets images of
    the unrounded CWT: the image an old float32 file packs to."""
    from sts.serve.cnn import CnnPredictor

    _, paths, _ = cells
    predictor = CnnPredictor(save_untrained_model(tmp_path / "old.pt", PREPARATION, CLASSES, scalogram_dtype=None), "cpu")
    assert predictor.scalogram_dtype == np.float32
    prepared = predictor.prepare(paths["good_clamp"])
    with h5py.File(tmp_path / "old.h5", "w") as f:  # the file the scalogram step wrote before float16
        f.create_dataset("scalogram", data=prepared.scalogram)
        f.attrs.update(freqs_hz=predictor.scalogram.freqs_hz, fs_hz=predictor.selection.fs_hz, status="ok")
    np.testing.assert_array_equal(prepared.image, pack_one(tmp_path, tmp_path / "old.h5"))


def test_rows_excluded_files_and_exit_status(cells, tmp_path):
    folder, paths, model = cells
    out = tmp_path / "out.csv"
    assert predict(model, folder, out=out) == 0
    table = pd.read_csv(out, dtype={"specimen_id": str}, keep_default_na=False)
    p_cols = [f"p_{c}" for c in CLASSES]
    assert list(table.columns) == ["file", "specimen_id", "status", "reason", "predicted", *p_cols,
                                   "rheobase_pa", "second_pa", "second_offset_pa", "rheobase_sweep", "second_sweep",
                                   "ood_score", "in_distribution", "calibrated", "scheme"]  # fmt: skip
    assert (table["scheme"] == "study").all()  # the class scheme of the model's classes
    assert (table["ood_score"] == "").all() and (table["in_distribution"] == "").all()  # saved without a detector
    assert table["file"].tolist() == sorted(str(p) for p in paths.values())  # sorted; notes.txt left out
    rows = {kind: table.set_index("file").loc[str(p)] for kind, p in paths.items()}
    for kind in ("good_clamp", "good_seq"):
        row = rows[kind]
        proba = row[p_cols].astype(float).to_numpy()
        assert row["status"] == "ok" and row["reason"] == ""
        assert abs(proba.sum() - 1) < 1e-5 and row["predicted"] == CLASSES[int(np.argmax(proba))]
        assert float(row["second_pa"]) - float(row["rheobase_pa"]) == pytest.approx(40, abs=5)
        assert row["specimen_id"] == paths[kind].stem
    for kind in ("no_long_square", "corrupt_file"):
        assert rows[kind]["status"] == "excluded" and FILE_DEFECT_REASONS[kind] in rows[kind]["reason"], kind
        assert rows[kind]["predicted"] == "" and (rows[kind][p_cols] == "").all()
    reason = rows["not_nwb"]["reason"]
    assert rows["not_nwb"]["status"] == "excluded" and "unreadable NWB file" in reason and "notes_copy.nwb" in reason


def test_ood_flag_from_the_models_detector(cells, tmp_path):
    """A model.pt with an embedding detector (tensors: loads with weights_only) flags an image
    unlike its training cells' and passes cells like them; the CSV carries both columns."""
    import torch

    from sts.cnn.embed import proba_and_embeddings
    from sts.trust.ood import EmbeddingNovelty
    from sts.serve.cnn import CnnPredictor

    _, paths, model = cells
    plain = CnnPredictor(model, "cpu")
    images = np.stack([plain.prepare(paths[k]).image for k in ("good_clamp", "good_seq")])
    rng = np.random.default_rng(0)
    train = np.concatenate([images + rng.normal(0, 0.05, images.shape).astype(images.dtype) for _ in range(4)])
    proba, emb = proba_and_embeddings(plain.model, train, np.arange(len(train)), plain.device)
    np.testing.assert_array_equal(proba, plain.probabilities(train))  # the hook does not change the output
    meta = torch.load(model, weights_only=True)
    meta["ood"] = EmbeddingNovelty.fit(emb).to_state()
    torch.save(meta, tmp_path / "model.pt")
    predictor = CnnPredictor(tmp_path / "model.pt", "cpu")
    assert predictor.ood.dim == emb.shape[1] == 1280 and predictor.ood.k == 5
    far = plain.prepare(paths["good_clamp"])
    far.image = np.full_like(far.image, 3.0)
    assert predictor.classify(far)[1]["in_distribution"] is False
    out = tmp_path / "out.csv"
    assert predict(tmp_path / "model.pt", paths["good_clamp"], paths["good_seq"], paths["corrupt_file"], out=out) == 0
    table = pd.read_csv(out, dtype={"specimen_id": str}, keep_default_na=False).set_index("status")
    assert (table.loc["ok", "in_distribution"] == "True").all()
    assert (table.loc["ok", "ood_score"].astype(float) <= predictor.ood.threshold).all()
    assert table.loc["excluded", "ood_score"] == "" and table.loc["excluded", "in_distribution"] == ""
    meta["ood"]["train"] = meta["ood"]["train"][:, :10]
    torch.save(meta, tmp_path / "bad.pt")
    with pytest.raises(SystemExit, match="do not match the network's 1280"):
        predict(tmp_path / "bad.pt", paths["good_clamp"], out=out)


def test_no_readable_file_is_an_error(cells, tmp_path):
    _, paths, model = cells
    out = tmp_path / "out.csv"
    with pytest.raises(SystemExit) as err:
        predict(model, paths["corrupt_file"], paths["not_nwb"], tmp_path / "missing.nwb", out=out)
    assert err.value.code not in (0, None) and "none of the 3 input files could be read" in str(err.value.code)
    assert (pd.read_csv(out)["status"] == "excluded").all()  # the reasons are still written
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as err:
        predict(model, tmp_path / "empty", out=out)
    assert "no .nwb or .abf files" in str(err.value.code)


def test_abf_protocol_options(tmp_path):
    """An ABF file without a command waveform needs the step ladder; with it, it is classified."""
    from abf_data import STEP_S, simulate_ladder, write_abf1

    ladder = simulate_ladder("Pvalb", seed=3, n_sweeps=10, onset_s=0.5)
    abf = write_abf1(tmp_path / "cell.abf", ladder.responses_mv)
    model = save_untrained_model(tmp_path / "model.pt", PREPARATION, CLASSES)
    out = tmp_path / "out.csv"
    with pytest.raises(SystemExit):  # the only file cannot be read without its protocol
        predict(model, abf, out=out)
    reason = pd.read_csv(out)["reason"][0]
    assert "no command waveform" in reason and "--table" in reason and "--first-amplitude-pa" in reason
    ladder_args = ["--first-amplitude-pa", str(ladder.amplitudes_pa[0]), "--step-pa", "20",
                   "--onset-s", str(ladder.onset_s), "--duration-s", str(STEP_S)]  # fmt: skip
    assert predict(model, abf, out=out, extra=ladder_args) == 0
    row = pd.read_csv(out).iloc[0]
    assert row["status"] == "ok" and row["rheobase_pa"] == ladder.rheobase_pa and row["second_pa"] == ladder.rheobase_pa + 40


def test_figures(cells, tmp_path, drawn_figures):
    import matplotlib.image as mpimg

    from sts.serve.cnn import CnnPredictor

    _, paths, model = cells
    figures = tmp_path / "figures"
    assert predict(model, paths["good_clamp"], paths["no_long_square"], out=tmp_path / "o.csv",
                   extra=["--figures", str(figures)]) == 0  # fmt: skip
    name = f"{paths['good_clamp'].stem}.png"
    assert [p.name for p in figures.iterdir()] == [name] and list(drawn_figures) == [name]  # none for excluded cells
    img = mpimg.imread(figures / name)[..., :3]
    assert img.shape[0] > 600 and img.shape[1] > 900
    # Not blank: traces, two colour maps and text give many distinct colours and real contrast.
    assert img.std() > 0.1 and len(np.unique(img.reshape(-1, 3).round(2), axis=0)) > 500
    row = pd.read_csv(tmp_path / "o.csv").iloc[0]
    pred, drawn = row["predicted"], drawn_figures[name]
    plus = f"rheobase + {row['second_pa'] - row['rheobase_pa']:g} pA"
    assert drawn["titles"] == [f"rheobase ({row['rheobase_pa']:g} pA)", f"{plus} ({row['second_pa']:g} pA)",
                               "|CWT|, rheobase", f"|CWT|, {plus}", f"saliency of {pred}, rheobase",
                               f"saliency of {pred}, {plus}", "class probabilities"]  # fmt: skip
    traces = CnnPredictor(model, "cpu").prepare(paths["good_clamp"]).traces_mv
    assert len(drawn["lines"]) == 2 and all(np.array_equal(a, b) for a, b in zip(drawn["lines"], traces))
    assert f"predicted {pred}" in drawn["suptitle"] and "not drawn" not in drawn["suptitle"]


def test_model_without_preparation_is_rejected(cells, tmp_path):
    folder, _, _ = cells
    model = save_untrained_model(tmp_path / "model.pt", {}, CLASSES)
    with pytest.raises(SystemExit) as err:
        predict(model, folder, out=tmp_path / "o.csv")
    assert "no preparation.sweeps/scalogram parameters" in str(err.value.code)


def test_table_gives_each_file_its_id_and_ladder(cells, tmp_path):
    """--table: one ladder per ABF file, ids from the table, bad rows excluded with their reason."""
    from abf_data import STEP_S, simulate_ladder, write_abf1

    _, paths, model = cells
    ladders = {"a": simulate_ladder("Pvalb", seed=3, n_sweeps=10, onset_s=0.5, step_pa=20.0),
               "b": simulate_ladder("Sst", seed=4, n_sweeps=8, onset_s=0.5, step_pa=40.0)}  # fmt: skip
    rows = ["file,specimen_id,first_amplitude_pa,step_pa,onset_s,duration_s"]
    for key, lad in ladders.items():
        write_abf1(tmp_path / f"{key}.abf", lad.responses_mv)
        step = lad.amplitudes_pa[1] - lad.amplitudes_pa[0]
        rows.append(f"{key}.abf,cell_{key},{lad.amplitudes_pa[0]},{step},{lad.onset_s},{STEP_S}")
    rows.append(f"{paths['good_clamp']},,,,,")  # an NWB file: id from its stem, no ladder needed
    rows.append("missing.abf,gone,,,,")
    rows.append("a.abf,cell_a,0,20,0.5,")  # duplicate id (both rows) and an incomplete ladder
    (tmp_path / "inputs.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out.csv"
    assert predict(model, out=out, extra=["--table", str(tmp_path / "inputs.csv")]) == 0
    table = pd.read_csv(out, dtype={"specimen_id": str}).set_index("specimen_id")
    assert table.loc["cell_b", "status"] == "ok"
    assert table.loc["cell_b", "rheobase_pa"] == ladders["b"].rheobase_pa
    assert table.loc["cell_b", "second_pa"] == ladders["b"].rheobase_pa + 40
    assert table.loc[paths["good_clamp"].stem, "status"] == "ok"
    assert "file not found" in table.loc["gone", "reason"]
    dup = table.loc["cell_a"]
    assert (dup["status"] == "excluded").all() and dup["reason"].str.contains("duplicate specimen_id").all()


def test_selection_overrides_tolerance_only(tmp_path):
    """--tolerance-pa accepts a coarser ladder's second sweep (offset written); the window stays the model's."""
    from sts.serve.cnn import CnnPredictor

    real = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "171116sh_0018.abf"
    if not real.is_file():
        pytest.skip(f"no real recording at {real}")
    model = save_untrained_model(tmp_path / "model.pt", PREPARATION, CLASSES)  # window 1.0 s: fits the dual protocol
    out = tmp_path / "out.csv"
    assert predict(model, real, out=out) == 0
    row = pd.read_csv(out).iloc[0]
    assert row["status"] == "excluded" and "--tolerance-pa 10 would accept 100 pA" in row["reason"]
    assert predict(model, real, out=out, extra=["--tolerance-pa", "20"]) == 0
    row = pd.read_csv(out).iloc[0]
    assert row["status"] == "ok" and (row["rheobase_pa"], row["second_pa"], row["second_offset_pa"]) == (50, 100, 10)
    with pytest.raises(ValueError, match="only"):
        CnnPredictor(model, "cpu", selection_overrides={"window_s": 0.5})
    long_step = real.with_name("18711001.abf")  # 0.68 s after the onset: the model's 1.0 s window cannot fit
    assert predict(model, long_step, out=out, extra=["--tolerance-pa", "20"]) == 0
    assert "a model trained with sweeps.window_s <= 0.676 would fit" in pd.read_csv(out)["reason"][0]


def test_figures_of_files_with_the_same_name_do_not_collide(cells, tmp_path):
    import shutil

    _, paths, model = cells
    for sub in ("rig_a", "rig_b"):
        (tmp_path / sub).mkdir()
        shutil.copy(paths["good_clamp"], tmp_path / sub / "cell.nwb")
    figures = tmp_path / "figures"
    assert predict(model, tmp_path / "rig_a", tmp_path / "rig_b", out=tmp_path / "o.csv",
                   extra=["--figures", str(figures)]) == 0  # fmt: skip
    names = sorted(p.name for p in figures.iterdir())
    assert len(names) == 2 and all(n.startswith("cell-") and n.endswith(".png") for n in names)


def read_predictions(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"file": str, "specimen_id": str, "reason": str}, keep_default_na=False)


def test_formula_stem_gets_a_safe_id_and_the_csv_is_spreadsheet_safe(cells, tmp_path, monkeypatch):
    """Issue 27, 7: a file named like a spreadsheet formula is classified under a derived id; the
    name as given stays in ``file``, with the leading ' that keeps a spreadsheet from running it."""
    import shutil

    from sts.cohort.ids import id_problem

    _, paths, model = cells
    name = '=HYPERLINK("evil.example";"x").nwb'  # a name cannot hold "/"
    shutil.copy(paths["good_clamp"], tmp_path / name)
    monkeypatch.chdir(tmp_path)
    assert predict(model, name, out=tmp_path / "o.csv") == 0
    row = read_predictions(tmp_path / "o.csv").iloc[0]
    assert row["status"] == "ok" and row["file"] == "'" + name
    assert id_problem(row["specimen_id"]) == "" and row["specimen_id"].startswith("_HYPERLINK_")
    assert pd.read_csv(tmp_path / "o.csv")["rheobase_pa"].dtype == float  # numbers stay numbers


def test_long_stem_with_figures_keeps_the_batch(cells, tmp_path):
    """A 250-character file name with --figures: the figure is named after the safe id (its own name
    plus the atomic writer's temporary suffix would pass the file system's 255), the CSV is written."""
    import shutil

    from sts.cohort.ids import id_problem

    _, paths, model = cells
    long_file = tmp_path / ("c" * 250 + ".nwb")
    shutil.copy(paths["good_clamp"], long_file)
    figures = tmp_path / "figures"
    assert predict(model, long_file, paths["good_seq"], out=tmp_path / "o.csv", extra=["--figures", str(figures)]) == 0
    table = read_predictions(tmp_path / "o.csv")
    assert table["status"].tolist() == ["ok", "ok"] and table["file"].iloc[0] == str(long_file)
    sid = table["specimen_id"].iloc[0]
    assert id_problem(sid) == "" and len(sid) < 60
    assert sorted(p.name for p in figures.iterdir()) == sorted([f"{sid}.png", f"{paths['good_seq'].stem}.png"])


def test_stems_with_spaces_or_newlines_get_distinct_safe_ids(cells, tmp_path):
    import shutil

    from sts.cohort.ids import id_problem

    _, paths, model = cells
    names = ["rig 1 cell.nwb", "rig\n1 cell.nwb", "-rf.nwb"]
    for name in names:
        shutil.copy(paths["good_clamp"], tmp_path / name)
    assert predict(model, *(tmp_path / n for n in names), out=tmp_path / "o.csv") == 0
    table = read_predictions(tmp_path / "o.csv")
    assert table["file"].tolist() == [str(tmp_path / n) for n in names] and (table["status"] == "ok").all()
    assert all(id_problem(s) == "" for s in table["specimen_id"]) and table["specimen_id"].nunique() == 3


def test_reader_reason_in_predictions_is_one_line_and_cut(cells, tmp_path):
    """A file whose reader text (a download marker's reason) holds newlines, escape codes and 1 MB."""
    _, _, model = cells
    path = tmp_path / "marker.nwb"
    with h5py.File(path, "w", libver="latest") as f:
        f.attrs["sts_unavailable"] = "gone\n=1+1\x1b[2J\x1b]0;x\x07" + "A" * 1_000_000
    with pytest.raises(SystemExit):  # no file could be read; the CSV is still written
        predict(model, path, out=tmp_path / "o.csv")
    reason = read_predictions(tmp_path / "o.csv")["reason"].iloc[0]
    assert reason.startswith("gone =1+1 [2J ]0;x A") and len(reason) <= 500 and reason.endswith("...")
    assert not any(ord(c) < 32 or 127 <= ord(c) < 160 for c in reason)
