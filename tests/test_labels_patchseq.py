"""Patch-seq labels from the real metadata that ipfx ships (issue 14): agreement with the study's
label file on the seq cells of its split, the rules on a few rows, `sts labels patchseq`, and the
dandi cohort's default labels. No network: the metadata is inside the installed ipfx package."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import REPO
from sts.acquire import labels
from sts.cli import main
from sts.cohort.table import cohort_table

PAPER = REPO / "resources" / "paper"
N_SEQ = 4220  # seq cells of the study's split
MIN_AGREEMENT = 0.99


def split_seq_ids() -> list[str]:
    parts = [pd.read_csv(PAPER / name, header=None, names=["specimen_id", "dataset"], dtype=str,
                         skipinitialspace=True) for name in ("Train_split.csv", "Test_split.csv")]
    split = pd.concat(parts, ignore_index=True).apply(lambda c: c.str.strip())
    return list(split.loc[split["dataset"] == "Seq", "specimen_id"])


def test_shipped_metadata_reproduces_the_study_labels():
    ours = labels.patchseq_labels().set_index("specimen_id")["label"]
    assert len(ours) == 4435  # every mouse cell of the shipped file, once
    study = labels.read_label_file(PAPER / "cell_types_GouwensAll_new.txt")
    seq = split_seq_ids()
    assert len(seq) == N_SEQ
    agree = sum(ours.get(s) == study[s] for s in seq)
    print(f"patch-seq labels from the shipped metadata: {agree}/{N_SEQ} = {agree / N_SEQ:.2%} of the split's "
          "seq cells agree with the study's label file")
    assert agree / N_SEQ >= MIN_AGREEMENT
    # The two gaps issue 14 names are closed: Sncg/Serpinf1 T-types and spiny cells without a T-type.
    table = labels.patchseq_labels().set_index("specimen_id").loc[seq]
    subclass = table["ttype"].str.split().str[0]
    assert (table.loc[subclass.isin(["Sncg", "Serpinf1"]), "label"] == "Vip/Lamp5").sum() == 268
    assert (table.loc[table["ttype"] == "", "label"] == "Excitatory").sum() == 124


def test_rules_on_a_few_rows(tmp_path):
    rows = pd.DataFrame([
        # id, T-type, dendrites, expected
        ("1", "Pvalb Reln Itm2a", "aspiny", "Pvalb"),
        ("2", "Sst Calb2 Pdlim5", "sparsely spiny", "Sst"),  # the T-type decides before the dendrites
        ("3", "Vip Crispld2 Kcne4", "aspiny", "Vip/Lamp5"),
        ("4", "Lamp5 Lsp1", "aspiny", "Vip/Lamp5"),
        ("5", "Sncg Vip Itih5", "aspiny", "Vip/Lamp5"),
        ("6", "Serpinf1 Clrn1", "aspiny", "Vip/Lamp5"),
        ("7", "L2/3 IT VISp Agmat", "spiny", "Excitatory"),
        ("8", "", "spiny", "Excitatory"),  # no T-type: the dendrites decide
        ("9", "", "sparsely spiny", "Excitatory"),
        ("10", "", "aspiny", "Unsure"),
        ("11", "", "", "Unsure"),
        ("12", "Meis2 Adamts19", "aspiny", "Unsure"),
        (" 13 ", "Pvalb Vipr2", "aspiny", "Pvalb"),
        ("13", "Sst Chodl", "aspiny", "ignored: repeated id"),
    ], columns=["sid", "tt", "dend", "expected"])
    path = tmp_path / "meta.csv"
    rows.drop(columns="expected").to_csv(path, index=False)
    columns = labels.PatchseqColumns(specimen_id="sid", ttype="tt", dendrite="dend")
    got = labels.patchseq_labels(path, columns)
    expected = rows.iloc[:-1].assign(sid=lambda t: t["sid"].str.strip())
    assert list(got["specimen_id"]) == list(expected["sid"])
    assert list(got["label"]) == list(expected["expected"])
    no_dendrites = labels.patchseq_labels(path, labels.PatchseqColumns("sid", "tt", None)).set_index("specimen_id")
    assert no_dendrites.loc["8", "label"] == "Unsure" and no_dendrites.loc["7", "label"] == "Excitatory"
    with pytest.raises(ValueError, match="no column"):
        labels.patchseq_labels(path)  # the default (real) column names are not in this file


def test_cli_writes_the_labels_csv(tmp_path):
    out = tmp_path / "labels" / "patchseq.csv"
    assert main(["labels", "patchseq", str(out)]) == 0  # default: the shipped metadata
    table = pd.read_csv(out, dtype=str)
    assert list(table.columns) == ["specimen_id", "label", "reason"] and len(table) == 4435
    assert set(table["label"]) == {"Pvalb", "Sst", "Vip/Lamp5", "Excitatory", "Unsure"}
    assert sorted(p.name for p in out.parent.iterdir()) == ["patchseq.csv"]  # no temporary file left
    mine = tmp_path / "mine.csv"
    pd.DataFrame({"id": ["7", "8"], "tt": ["Sncg Gpr50", ""], "dend": ["aspiny", "spiny"]}).to_csv(mine, index=False)
    out2 = tmp_path / "mine_labels.csv"
    args = ["labels", "patchseq", str(mine), str(out2), "--id-column", "id", "--ttype-column", "tt"]
    assert main(args + ["--dendrite-column", "dend"]) == 0
    assert out2.read_text().splitlines() == ["specimen_id,label,reason", "7,Vip/Lamp5,", "8,Excitatory,"]
    assert main(args + ["--dendrite-column", "none"]) == 0
    assert out2.read_text().splitlines() == ["specimen_id,label,reason", "7,Vip/Lamp5,",
                                             "8,Unsure,no T-type (dendrites unknown): no class in scheme study"]


def test_dandi_cohort_labels_default_to_the_shipped_metadata(tmp_path):
    study = labels.read_label_file(PAPER / "cell_types_GouwensAll_new.txt")
    picked = split_seq_ids()[:40] + ["999"]  # 999: a listed asset the metadata does not know
    pd.DataFrame({"specimen_id": picked}).to_csv(tmp_path / "dandi_assets.csv", index=False)  # cached listing
    acquire = {"metadata_dir": str(tmp_path)}
    table = cohort_table({"cohort": "dandi", "acquire": acquire}).set_index("specimen_id")
    assert table.loc["999", "label"] == "Unsure"
    assert all(table.loc[s, "label"] == study[s] for s in picked[:-1])
    assert table["label_source"].str.contains("20200625_patchseq_metadata_mouse.csv").all()
    # A user's metadata file overrides the shipped one; the study's label file overrides both.
    mine = tmp_path / "mine.csv"
    pd.DataFrame({"cell_specimen_id": picked, "corresponding_AIT2.3.1_alias": "Pvalb Sema3e",
                  "dendrite_type": "aspiny"}).to_csv(mine, index=False)
    table = cohort_table({"cohort": "dandi", "acquire": {**acquire, "patchseq_metadata": str(mine)}})
    assert set(table["label"]) == {"Pvalb"}
    label_file = tmp_path / "study.txt"
    label_file.write_text("".join(f"Sst {s}\n" for s in picked))
    table = cohort_table({"cohort": "dandi", "acquire": {**acquire, "label_file": str(label_file)}})
    assert set(table["label"]) == {"Sst"} and table["label_source"].str.startswith("label file").all()


def test_a_scheme_excludes_the_cells_it_cannot_place_before_any_download(tmp_path):
    """The raw metadata read with pandas is the reference: under `inhibitory` a listed cell whose T-type's first
    word is not Lamp5/Pvalb/Sst/Vip is an excluded row with its reason (never a download job), the rest ok."""
    raw = pd.read_csv(labels.shipped_patchseq_metadata(), dtype=str, keep_default_na=False)
    ttype = raw.set_index("cell_specimen_id")["corresponding_AIT2.3.1_alias"].str.strip()
    picked = split_seq_ids()[:60] + ["999"]
    pd.DataFrame({"specimen_id": picked}).to_csv(tmp_path / "dandi_assets.csv", index=False)
    config = {"cohort": "dandi", "acquire": {"metadata_dir": str(tmp_path)}, "labels": {"scheme": "inhibitory"}}
    table = cohort_table(config).set_index("specimen_id")
    for sid in picked[:-1]:
        first = ttype[sid].split()[0] if ttype[sid] else ""
        if first in ("Lamp5", "Pvalb", "Sst", "Vip"):
            assert (table.loc[sid, "status"], table.loc[sid, "label"], table.loc[sid, "reason"]) == ("ok", first, "")
        else:
            assert table.loc[sid, "status"] == "excluded" and table.loc[sid, "label"] == "Unsure"
            assert "inhibitory" in table.loc[sid, "reason"], table.loc[sid, "reason"]
    assert table.loc["999", "status"] == "excluded" and "not in" in table.loc["999", "reason"]
    assert 0 < (table["status"] == "ok").sum() < len(picked) - 1
    # The study scheme keeps today's table: Unsure cells are still rows with status ok (the manifest excludes them).
    study = cohort_table({**config, "labels": {"scheme": "study"}})
    assert (study["status"] == "ok").all() and (study["reason"] == "").all()
