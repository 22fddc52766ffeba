import pandas as pd

from sts.baseline.computed import join_features


def test_join_keeps_split_and_lists_cells_without_features(tmp_path):
    (tmp_path / "m.csv").write_text(
        "specimen_id,dataset,label,status,reason,split,fold\n"
        "1,seq,Sst,ok,,train,0\n2,seq,Pvalb,ok,,test,-1\n3,seq,Sst,ok,,train,1\n"
        "4,seq,Sst,excluded,label Unsure,,-1\n5,seq,Pvalb,ok,,test,-1\n"
    )
    (tmp_path / "f.csv").write_text(
        "specimen_id,dataset,label,status,reason,avg_isi,tau,empty\n"
        "1,seq,Sst,ok,,10.5,20,\n2,seq,Pvalb,ok,,,15,\n3,seq,Sst,excluded,no spiking sweep in x.nwb,,,\n"
        "4,seq,Sst,ok,,1,1,\n"
    )
    rows, excluded, columns = join_features(tmp_path / "f.csv", tmp_path / "m.csv")
    assert list(rows["specimen_id"]) == ["1", "2"] and list(rows["split"]) == ["train", "test"]
    assert columns == ["avg_isi", "tau"]  # all-NaN column dropped; NaN values kept, not imputed
    assert pd.isna(rows.loc[1, "avg_isi"])
    reasons = dict(zip(excluded["specimen_id"], excluded["reason"]))
    assert reasons == {"3": "no spiking sweep in x.nwb", "5": "no EP features for this cell"}
