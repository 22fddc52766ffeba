"""Class schemes (issue 29) on the real Gouwens 2020 metadata that ipfx ships: the study scheme is
today's labels for every cell, the others' counts per class are the T-type column's (counted here
with pandas), cells a scheme cannot place keep a reason; a user's YAML map; the run's classes."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from conftest import REPO
from sts.acquire import labels
from sts.acquire.schemes import SchemeError, get_scheme, run_classes, scheme_from_map, too_small
from sts.cli import main

PAPER = REPO / "resources" / "paper"
TTYPE = "corresponding_AIT2.3.1_alias"


@pytest.fixture(scope="module")
def metadata() -> pd.DataFrame:
    """The shipped CSV read independently of sts: T-type, its first word, dendrite type."""
    raw = pd.read_csv(labels.shipped_patchseq_metadata(), dtype=str, keep_default_na=False)
    raw["first"] = raw[TTYPE].str.split().str[0].fillna("")
    return raw


def test_study_scheme_is_todays_labels_for_every_cell(metadata):
    table = labels.patchseq_labels(scheme=get_scheme("study"))
    assert len(table) == len(metadata) == 4435
    today = [labels.label_from_ttype(t, d) for t, d in zip(metadata[TTYPE], metadata["dendrite_type"])]
    assert table["label"].tolist() == today
    assert (table.loc[table["label"] == "Unsure", "reason"] != "").all()
    assert (table.loc[table["label"] != "Unsure", "reason"] == "").all()
    assert labels.patchseq_labels()["label"].tolist() == today  # the default scheme


def test_inhibitory_counts_are_the_ttype_columns(metadata):
    table = labels.patchseq_labels(scheme=get_scheme("inhibitory"))
    expected = metadata["first"].value_counts().reindex(["Lamp5", "Pvalb", "Sst", "Vip"])
    assert table["label"].value_counts().drop("Unsure").sort_index().to_dict() == expected.to_dict()
    assert expected.sum() == 3986
    unsure = table[table["label"] == "Unsure"].set_index("specimen_id")
    assert len(unsure) == 4435 - 3986 and (unsure["reason"] != "").all()
    sncg = metadata.loc[metadata["first"] == "Sncg", "cell_specimen_id"].iloc[0]
    ttype = metadata.set_index("cell_specimen_id").loc[sncg, TTYPE]
    assert unsure.loc[sncg, "reason"] == f"T-type {ttype!r} is not a class of scheme inhibitory"
    no_ttype = metadata.loc[metadata[TTYPE] == "", "cell_specimen_id"]
    assert unsure.loc[no_ttype, "reason"].str.startswith("no T-type").all()


def test_subclass_counts(metadata):
    table = labels.patchseq_labels(scheme=get_scheme("subclass"))
    counts = table["label"].value_counts()
    first = metadata["first"].value_counts()
    for cls in ("Lamp5", "Pvalb", "Sst", "Vip", "Sncg"):
        assert counts[cls] == first[cls]
    spiny = metadata[TTYPE].eq("") & metadata["dendrite_type"].isin(["spiny", "sparsely spiny"])
    excitatory_ttype = metadata["first"].isin(["L2/3", "L4", "L5", "L6", "NP", "CT"])
    assert counts["Excitatory"] == spiny.sum() + excitatory_ttype.sum()
    others = set(metadata.loc[~metadata["first"].isin(["Lamp5", "Pvalb", "Sst", "Vip", "Sncg", "L2/3", ""]), "first"])
    assert others == {"Serpinf1", "Meis2"}  # excluded with their reason
    assert counts["Unsure"] == (metadata["first"].isin(others)).sum() + (metadata[TTYPE].eq("") & ~spiny).sum()
    assert get_scheme("subclass").classes == ("Excitatory", "Lamp5", "Pvalb", "Sst", "Vip", "Sncg")


def test_user_map_longest_prefix_and_unmapped_reasons(metadata, tmp_path):
    path = tmp_path / "chodl.yaml"
    path.write_text("Sst Chodl: Sst-Chodl\nSst: Sst\nPvalb: Pvalb\n")
    scheme = get_scheme(str(path))
    assert scheme.classes == ("Sst-Chodl", "Sst", "Pvalb") and scheme.name == str(path)
    table = labels.patchseq_labels(scheme=scheme)
    words = metadata[TTYPE].str.split()
    chodl = words.str[:2].str.join(" ").eq("Sst Chodl")
    assert table["label"].value_counts().to_dict() == {
        "Sst": int((metadata["first"].eq("Sst") & ~chodl).sum()),
        "Sst-Chodl": int(chodl.sum()),
        "Pvalb": int(metadata["first"].eq("Pvalb").sum()),
        "Unsure": int((~metadata["first"].isin(["Sst", "Pvalb"])).sum()),
    }
    assert chodl.sum() > 0
    assert (table.loc[table["label"] == "Unsure", "reason"] != "").all()
    assert scheme.label("Sstx Foo")[0] == "Unsure"  # whole words only
    assert scheme.label("Sst Chodl", "aspiny") == ("Sst-Chodl", "")


@pytest.mark.parametrize("text, message", [
    ("- Sst\n- Pvalb\n", "expected a mapping"),
    ("Sst: Sst\n", "at least two classes"),
    ("Sst: Sst\nPvalb: Unsure\n", "Unsure is not a class"),
    ("Sst: Sst\nPvalb: [a, b]\n", "must be a name"),
    ("Sst: Sst\n12: Pvalb\n", "prefix 12"),
    ("Sst: Sst\n'Sst ': Pvalb\n", "given twice"),
    ("Sst: [unclosed\n", "not valid YAML"),
])  # fmt: skip
def test_bad_user_maps_are_refused_with_the_reason(tmp_path, text, message):
    path = tmp_path / "map.yaml"
    path.write_text(text)
    with pytest.raises(SchemeError, match=message):
        get_scheme(str(path))


def test_scheme_names_and_run_classes(tmp_path):
    with pytest.raises(SchemeError, match="unknown class scheme 'chandelier'"):
        get_scheme("chandelier")
    with pytest.raises(SchemeError, match="no such file"):
        get_scheme(str(tmp_path / "missing.yaml"))
    inhibitory = get_scheme("inhibitory")
    assert run_classes(inhibitory, None) == ("Lamp5", "Pvalb", "Sst", "Vip")
    assert run_classes(inhibitory, ["Sst", "Pvalb"]) == ("Sst", "Pvalb")
    with pytest.raises(SchemeError, match=r"\['Vip/Lamp5'\] are not classes of scheme inhibitory"):
        run_classes(inhibitory, ["Sst", "Vip/Lamp5"])
    assert too_small(["A"] * 3 + ["B"] * 9 + ["Unsure"], 4) == {"A": "class A: 3 cells, fewer than the 4 needed "
                                                                     "(one holdout cell and one per fold)"}
    assert scheme_from_map({"Vip": "CGE", "Lamp5": "CGE", "Pvalb": "MGE"}, "m").classes == ("CGE", "MGE")


def test_run_scheme_of_a_config(tmp_path):
    from sts.cohort.table import run_scheme

    scheme, classes = run_scheme({"cohort": "local", "classes": ["Chandelier", "Basket"]})
    assert scheme.name == "study" and classes == ("Chandelier", "Basket")  # study: a local cohort's own labels
    assert run_scheme({"cohort": "synthetic", "classes": None})[1] == ("Pvalb", "Sst", "Vip/Lamp5", "Excitatory")
    dandi = {"cohort": "dandi", "labels": {"scheme": "inhibitory"}, "classes": None}
    assert run_scheme(dandi)[1] == ("Lamp5", "Pvalb", "Sst", "Vip")
    with pytest.raises(ValueError, match="cohort dandi only"):
        run_scheme({**dandi, "cohort": "allen"})
    with pytest.raises(ValueError, match="label_file"):
        run_scheme({**dandi, "acquire": {"label_file": "labels.txt"}})
    with pytest.raises(ValueError, match="baseline-published --scheme inhibitory"):
        run_scheme({**dandi, "baseline": {"features": "published"}})
    with pytest.raises(ValueError, match="labels.scheme: classes"):
        run_scheme({**dandi, "classes": ["Excitatory", "Sst"]})


def test_cli_labels_patchseq_scheme(tmp_path):
    out = tmp_path / "inhibitory.csv"
    assert main(["labels", "patchseq", str(out), "--scheme", "inhibitory"]) == 0
    table = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(table.columns) == ["specimen_id", "label", "reason"] and len(table) == 4435
    assert set(table["label"]) == {"Lamp5", "Pvalb", "Sst", "Vip", "Unsure"}
    assert (table.loc[table["label"] == "Unsure", "reason"] != "").all()
    with pytest.raises(SystemExit, match="unknown class scheme"):
        main(["labels", "patchseq", str(out), "--scheme", "nope"])


def test_load_scheme_on_the_published_tables(metadata):
    from sts.baseline.published import FILES, load_scheme

    cells = load_scheme(PAPER, get_scheme("inhibitory"), min_cells=6)
    seq = pd.read_csv(PAPER / FILES["Seq"], usecols=["cell_specimen_id"], dtype=str)["cell_specimen_id"]
    first = metadata.set_index("cell_specimen_id")["first"].reindex(seq)
    expected = first[first.isin(["Lamp5", "Pvalb", "Sst", "Vip"])].value_counts().sort_index()
    y = pd.concat([cells.train.y, cells.test.y])
    assert y.value_counts().sort_index().to_dict() == expected.to_dict()
    share = cells.test.y.value_counts() / y.value_counts()  # stratified 20 % holdout
    assert ((share - 0.2).abs() < 0.01).all() and len(cells.test) == math.ceil(0.2 * len(y))
    assert not set(cells.train.specimen_id) & set(cells.test.specimen_id)
    clamp = pd.read_csv(PAPER / FILES["Clamp"], usecols=["specimen_id"])
    assert len(cells.excluded) + len(y) == len(seq) + len(clamp)  # every cell kept or excluded with its reason
    assert (cells.excluded["reason"] != "").all() and cells.excluded["dataset"].eq("Clamp").sum() == len(clamp)
    assert len(cells.features) == 16
    everything = load_scheme(PAPER, get_scheme("inhibitory"), stems=("",))
    assert len(everything.features) == 45 and everything.train.X.dtypes.eq(float).all()
    # a class too small for the folds is excluded with that reason, not a crash
    small = load_scheme(PAPER, scheme_from_map({"Sst": "Sst", "Pvalb": "Pvalb", "Meis2": "Meis2"}, "m"))
    reasons = small.excluded.set_index("specimen_id")["reason"]
    assert reasons.str.startswith("class Meis2: 1 cells, fewer than").sum() == 1
