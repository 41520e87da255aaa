"""Parquet files, folders and globs wherever records are read: training, predict.py and netad drift give what the
same rows as one CSV give."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import fast_config, make_frame, tiny_model
from netad.cli import drift_main, predict_main
from netad.data.sources import data_digest
from netad.serving.batch import score_text


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return {"ckpt": tiny_model(tmp_path_factory.mktemp("parquet"), seed=6, run_name="pq")}


def _parquet(frame: pd.DataFrame, path) -> None:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)


def run(capsys, main, *args):
    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_parquet_and_csv_inputs_give_the_same_scores(trained, tmp_path, capsys):
    from netad.inference import load_predictor

    frame = make_frame(n=500, seed=11)
    frame.to_csv(tmp_path / "in.csv", index=False)
    _parquet(frame, tmp_path / "in.parquet")
    model = str(trained["ckpt"])
    for args in (("in.csv", "out.csv"), ("in.parquet", "out.parquet"), ("in.parquet", "out_of_parquet.csv")):
        code, _, err = run(capsys, predict_main, "--model", model, "--input", str(tmp_path / args[0]),
                           "--output", str(tmp_path / args[1]), "--quiet", "--chunk-size", "128")
        assert code == 0, err
    from_csv = pd.read_csv(tmp_path / "out.csv", dtype={"score": str})
    scored = pq.read_table(tmp_path / "out.parquet")
    assert scored.schema.field("score").type == pa.float32() and scored.schema.field("is_anomaly").type == pa.int8()
    assert scored.schema.field("is_tcp").type == pa.bool_()  # the input columns keep their types
    assert score_text(scored.column("score").to_numpy()).to_pylist() == from_csv["score"].tolist()
    assert pd.read_csv(tmp_path / "out_of_parquet.csv", dtype={"score": str})["score"].tolist() == \
        from_csv["score"].tolist()
    predictor = load_predictor(model)
    assert np.array_equal(scored.column("score").to_numpy(), predictor.score(frame))  # the predictor's own floats
    assert scored.column("is_anomaly").to_pylist() == from_csv["is_anomaly"].tolist()


def test_parquet_rows_that_cannot_be_scored_are_rejected_with_their_row_numbers(trained, tmp_path, capsys):
    frame = make_frame(n=300, seed=12)
    frame.loc[[5, 250], "packet_size"] = np.nan  # the model does not impute
    _parquet(frame, tmp_path / "in.parquet")
    code, printed, err = run(capsys, predict_main, "--model", str(trained["ckpt"]), "--input",
                             str(tmp_path / "in.parquet"), "--output", str(tmp_path / "out.parquet"), "--quiet",
                             "--chunk-size", "100")
    assert code == 0, err
    assert "Scored 298 of 300 rows" in printed and "2 rows could not be scored" in printed
    rejects = pq.read_table(tmp_path / "out.rejects.parquet").to_pandas()
    assert rejects["row"].tolist() == [6, 251]
    assert rejects["reason"].tolist() == ["column 'packet_size': missing or infinite value"] * 2
    assert pq.read_table(tmp_path / "out.parquet").num_rows == 298


def test_explanations_in_parquet_output_are_numbers(trained, tmp_path, capsys):
    _parquet(make_frame(n=80, seed=13), tmp_path / "in.parquet")
    code, _, err = run(capsys, predict_main, "--model", str(trained["ckpt"]), "--input", str(tmp_path / "in.parquet"),
                       "--output", str(tmp_path / "out.parquet"), "--quiet", "--explain", "2", "--explain-flagged")
    assert code == 0, err
    out = pq.read_table(tmp_path / "out.parquet").to_pandas()
    assert out["why_1_contribution"].dtype == np.float64
    flagged = out["is_anomaly"] == 1
    assert out.loc[flagged, "why_1"].isin(make_frame(n=8).columns).all() and flagged.any()
    assert out.loc[~flagged, "why_1_contribution"].isna().all() and out.loc[flagged, "why_1_contribution"].notna().all()


def test_a_folder_or_glob_is_scored_into_a_folder_file_by_file(trained, tmp_path, capsys):
    frame = make_frame(n=300, seed=14)
    (tmp_path / "flows").mkdir()
    _parquet(frame.iloc[:100], tmp_path / "flows" / "a.parquet")
    frame.iloc[100:].to_csv(tmp_path / "flows" / "b.csv.gz", index=False)
    code, printed, err = run(capsys, predict_main, "--model", str(trained["ckpt"]), "--input", str(tmp_path / "flows"),
                             "--output", str(tmp_path / "scored"), "--quiet")
    assert code == 0, err
    assert "Scored 300 of 300 rows of 2 files" in printed
    assert sorted(p.name for p in (tmp_path / "scored").iterdir()) == ["a.parquet", "b.csv"]
    assert pq.read_table(tmp_path / "scored" / "a.parquet").num_rows == 100
    assert len(pd.read_csv(tmp_path / "scored" / "b.csv")) == 200
    code, printed, err = run(capsys, predict_main, "--model", str(trained["ckpt"]), "--input",
                             f"{tmp_path}/flows/*.parquet", "--output", str(tmp_path / "scored2"), "--quiet")
    assert code == 0, err
    assert (tmp_path / "scored2" / "a.parquet").is_file()  # a glob's one match: still written into the folder


@pytest.mark.parametrize("case, message", [
    ("nothing", "input pattern {tmp}/none/*.parquet matches no files"),
    ("csv_to_parquet", "--output {tmp}/o.parquet: Parquet output needs Parquet input; {tmp}/in.csv is scored to CSV "
                       "(name the output .csv)"),
    ("same_name", "would both be written to {tmp}/out/t.csv"),
    ("lacks", "{tmp}/in.parquet: lacks columns the model reads: bytes"),
])
def test_inputs_it_cannot_score_are_one_line(trained, tmp_path, capsys, case, message):
    frame = make_frame(n=40, seed=15)
    frame.to_csv(tmp_path / "in.csv", index=False)
    (tmp_path / "d1").mkdir()
    (tmp_path / "d2").mkdir()
    frame.to_csv(tmp_path / "d1" / "t.csv", index=False)
    frame.to_csv(tmp_path / "d2" / "t.csv.gz", index=False)
    _parquet(frame.drop(columns=["bytes"]), tmp_path / "in.parquet")
    args = {"nothing": (f"{tmp_path}/none/*.parquet", "out"), "csv_to_parquet": ("in.csv", "o.parquet"),
            "same_name": (f"{tmp_path}/d*/t.*", "out"), "lacks": ("in.parquet", "o.parquet")}[case]
    source = args[0] if args[0].startswith("/") else str(tmp_path / args[0])
    code, _, err = run(capsys, predict_main, "--model", str(trained["ckpt"]), "--input", source,
                       "--output", str(tmp_path / args[1]), "--quiet")
    assert code == 2 and message.format(tmp=tmp_path) in err and len(err.strip().splitlines()) == 1


def test_drift_reads_parquet_and_folders_as_the_csv(trained, tmp_path, capsys):
    frame = make_frame(n=400, seed=16)
    frame.to_csv(tmp_path / "in.csv", index=False)
    (tmp_path / "parts").mkdir()
    _parquet(frame.iloc[:150], tmp_path / "parts" / "a.parquet")
    _parquet(frame.iloc[150:], tmp_path / "parts" / "b.parquet")
    reports = {}
    for name, source in (("csv", tmp_path / "in.csv"), ("folder", tmp_path / "parts")):
        code, printed, err = run(capsys, drift_main, "--model", str(trained["ckpt"]), "--input", str(source),
                                 "--output", str(tmp_path / name), "--quiet")
        assert code == 0, err
        reports[name] = json.loads((tmp_path / name / "drift.json").read_text())
    assert reports["folder"]["rows"] == reports["csv"]["rows"]
    assert reports["folder"]["flagged"] == reports["csv"]["flagged"] and reports["folder"]["flagged"]["rows"] == 400


def test_training_on_a_parquet_folder_gives_the_csv_runs_folds(tmp_path):
    from netad.training.cv import run_cv

    frame = make_frame(n=300, seed=17)
    frame.to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "parts").mkdir()
    for i in range(3):
        _parquet(frame.iloc[i * 100:(i + 1) * 100], tmp_path / "parts" / f"part-{i}.parquet")
    results = {}
    for name, source in (("csv", tmp_path / "t.csv"), ("parquet", tmp_path / "parts")):
        cfg = fast_config(tmp_path / name, source)
        run = run_cv(cfg, run_name=name).run_dir
        results[name] = json.loads((run / "cv_results.json").read_text())
        meta = json.loads((run / "manifest.json").read_text())
        assert data_digest(source) in json.dumps(meta) or data_digest(source) in (run / "splits.json").read_text()
    assert len(results["csv"]["folds"]) == 3
    for a, b in zip(results["csv"]["folds"], results["parquet"]["folds"]):
        metrics = {k for k, v in a.items() if isinstance(v, float)}
        assert {"auroc", "f1", "threshold"} <= metrics
        assert {k: a[k] for k in metrics} == {k: b[k] for k in metrics}
