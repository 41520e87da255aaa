"""predict.py: batch scoring in chunks, rejects with reasons, the same scores as the model everywhere else."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, fast_config, make_frame, tiny_model
from netad.cli import predict_main
from netad.training.cv import run_single


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return {"ckpt": tiny_model(tmp_path_factory.mktemp("batch"), seed=6, run_name="b")}


def records(tmp_path, n=60, seed=8):
    """New traffic to score, with a label column (passed through) and a few broken rows."""
    frame = make_frame(n=n, seed=seed).astype({"packet_size": object, "bytes": object, "is_tcp": object})
    frame.loc[3, "packet_size"] = "abc"
    frame.loc[10, "bytes"] = np.nan
    frame.loc[17, "is_tcp"] = "maybe"
    frame.loc[20, "protocol"] = "sctp"  # unseen category: scored through the unknown bucket
    path = tmp_path / "records.csv"
    frame.to_csv(path, index=False)
    return path, frame


def run(capsys, *args):
    capsys.readouterr()
    code = predict_main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_scores_rejects_and_passthrough(trained, tmp_path, capsys):
    from netad.export.artifact import export_checkpoint
    from netad.inference.predictor import NetadPredictor

    path, frame = records(tmp_path)
    out = tmp_path / "scored.csv"
    code, printed, err = run(capsys, "--model", str(trained["ckpt"]), "--input", str(path), "--output", str(out),
                             "--quiet")
    assert code == 0, err
    assert "Scored 57 of 60 rows" in printed and "3 rows could not be scored" in printed
    scored = pd.read_csv(out)
    rejects = pd.read_csv(tmp_path / "scored.rejects.csv")
    assert rejects["row"].tolist() == [4, 11, 18]  # 1-based data rows
    assert rejects["reason"].tolist() == ["column 'packet_size': not a number",
                                          "column 'bytes': missing or infinite value",
                                          "column 'is_tcp': not true/false or 1/0"]
    assert list(scored.columns) == list(frame.columns) + ["score", "is_anomaly"]  # label passes through
    assert len(scored) == 57 and 20 in scored.index.tolist()
    good = frame.drop(index=[3, 10, 17]).reset_index(drop=True)
    predictor = NetadPredictor.from_pretrained(export_checkpoint(trained["ckpt"], tmp_path / "m"))
    expected = predictor.score(good.astype({"packet_size": float, "bytes": float, "is_tcp": bool}))
    np.testing.assert_allclose(scored["score"].to_numpy(), expected, rtol=1e-6)
    assert scored["is_anomaly"].tolist() == (scored["score"] >= predictor.threshold).astype(int).tolist()

    # an exported folder scores the file identically, and so does any chunk size
    out2 = tmp_path / "scored2.csv"
    code, _, err = run(capsys, "--model", str(tmp_path / "m"), "--input", str(path), "--output", str(out2),
                       "--chunk-size", "7", "--quiet", "--rejects", str(tmp_path / "r2.csv"))
    assert code == 0, err
    again = pd.read_csv(out2)  # matrix products of other shapes may differ in the last float32 bit
    np.testing.assert_allclose(again["score"], scored["score"], rtol=1e-6)
    pd.testing.assert_frame_equal(again.drop(columns=["score"]), scored.drop(columns=["score"]))
    assert (tmp_path / "r2.csv").read_text() == (tmp_path / "scored.rejects.csv").read_text()


def test_hybrid_adds_the_novelty_score(tmp_path, csv_path, capsys):
    cfg = fast_config(tmp_path, csv_path, model__type="hybrid", hybrid__detector="pca")
    run_single(cfg, run_name="hb", quiet=True)
    out = tmp_path / "s.csv"
    code, _, err = run(capsys, "--model", str(tmp_path / "checkpoints" / "best_model.ckpt"), "--input",
                       str(csv_path), "--output", str(out), "--quiet")
    assert code == 0, err
    scored = pd.read_csv(out)
    assert "novelty_score" in scored.columns and np.isfinite(scored["novelty_score"]).all()


def test_every_row_rejected_still_writes_a_valid_output(trained, tmp_path, capsys):
    frame = make_frame(n=5).astype({"packet_size": object})
    frame["packet_size"] = "x"
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    code, printed, err = run(capsys, "--model", str(trained["ckpt"]), "--input", str(path), "--output",
                             str(tmp_path / "o.csv"), "--quiet")
    assert code == 0, err
    assert "Scored 0 of 5 rows" in printed
    assert pd.read_csv(tmp_path / "o.csv").empty and len(pd.read_csv(tmp_path / "o.rejects.csv")) == 5


@pytest.mark.parametrize("case", ["no_input", "empty", "missing_columns", "no_model", "lone_cr"])
def test_bad_input_is_one_line(trained, tmp_path, capsys, case):
    model, path = str(trained["ckpt"]), tmp_path / "in.csv"
    if case == "empty":
        path.write_text("")
    elif case == "missing_columns":
        make_frame(n=5).drop(columns=["bytes"]).to_csv(path, index=False)
    elif case == "no_model":
        make_frame(n=5).to_csv(path, index=False)
        model = str(tmp_path / "nothing.ckpt")
    elif case == "lone_cr":  # old Mac line breaks: to a reader of LF lines, the whole file is its header
        path.write_bytes(make_frame(n=5).to_csv(index=False, lineterminator="\r").encode())
    needle = {"no_input": "input file not found", "empty": "input file is empty",
              "missing_columns": "missing columns the model reads: bytes", "no_model": "model not found",
              "lone_cr": "lone CR"}[case]
    code, _, err = run(capsys, "--model", model, "--input", str(path), "--output", str(tmp_path / "o.csv"), "--quiet")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and needle in lines[0], err
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.slow  # a real process: runs in `make test-slow` (CI runs both)
def test_predict_script(trained, tmp_path):
    path, _ = records(tmp_path)
    proc = subprocess.run([sys.executable, str(ROOT / "predict.py"), "--model", str(trained["ckpt"]), "--input",
                           str(path), "--output", str(tmp_path / "o.csv")], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Scored 57 of 60 rows" in proc.stdout


def fast_blocks(monkeypatch) -> list:
    """Records, per piece, whether the fast path took it (a piece the fast path turns away goes through pandas)."""
    from netad.serving import batch

    taken = []
    fast = batch.Scorer.fast
    monkeypatch.setattr(batch.Scorer, "fast", lambda self, *a: taken.append(fast(self, *a)) or taken[-1])
    return taken


def test_arrow_pieces_and_pandas_pieces_agree(trained, tmp_path, monkeypatch):
    """The fast path (pyarrow) scores pieces whose values parse to the model's types, quoted fields
    and gaps in categories included; a piece with a value that does not parse goes through pandas;
    either way the scores are the model's and every value comes back as it was read."""
    from netad.serving import batch

    frame = make_frame(n=90, seed=11).astype({"packet_size": object})
    frame.loc[5, "protocol"] = "sctp"  # unseen category on the fast path
    frame.loc[25, "protocol"], frame.loc[26, "protocol"] = "NA", ""  # gaps: the unknown bucket, as pandas reads them
    frame.loc[40, "protocol"] = '"quoted, with comma"'  # quoted, with a comma: parsed and written back quoted
    frame.loc[70, "packet_size"] = "n/a"  # pandas' missing marker: rejected (no imputing)
    path = tmp_path / "in.csv"
    frame.to_csv(path, index=False, lineterminator="\r\n")
    taken = fast_blocks(monkeypatch)
    result = batch.score_file(trained["ckpt"], path, tmp_path / "out.csv", chunk_size=20, progress=False)
    # pieces of 20 rows: the 4th ("n/a") through pandas, the other four fast (in the order the threads finish)
    assert sorted(t is not None for t in taken) == [False, True, True, True, True]
    assert (result.n_rows, result.n_rejected) == (90, 1)

    scored = pd.read_csv(tmp_path / "out.csv")
    expected_frame = pd.read_csv(path).drop(index=70)
    predictor = batch.load_predictor(trained["ckpt"])
    expected = predictor.score(expected_frame)  # through pandas, the path every other tool uses
    np.testing.assert_allclose(scored["score"], expected, rtol=0, atol=2e-6)
    pd.testing.assert_frame_equal(scored[expected_frame.columns], expected_frame.reset_index(drop=True))
    assert scored["is_anomaly"].tolist() == (expected >= predictor.threshold).astype(int).tolist()
    # a line without quotes comes back as it was, then ,score,is_anomaly; line breaks are LF (pyarrow's writer)
    in_lines = path.read_bytes().split(b"\r\n")
    out_lines = (tmp_path / "out.csv").read_bytes().split(b"\n")
    assert out_lines[0] == in_lines[0] + b",score,is_anomaly" and b"\r" not in (tmp_path / "out.csv").read_bytes()
    assert out_lines[1].rsplit(b",", 2)[0] == in_lines[1] and len(out_lines[1].split(b",")) == len(frame.columns) + 2


def test_a_gap_in_a_category_gets_the_pandas_routes_code(trained):
    """pandas 2 encodes a gap in a category column as "nan" (a category, if training rows had gaps
    there); pandas 3 keeps NaN (the unknown bucket). The fast path asks pandas, so it agrees with
    the pandas route under either; here with a model that knows a "nan" category."""
    import copy

    from netad.serving import batch

    predictor = copy.deepcopy(batch.load_predictor(trained["ckpt"]))
    categories = predictor.preprocessor.state["categorical"]["categories"][0]
    categories[categories.index("udp")] = "nan"
    predictor.preprocessor._lookups.clear()
    frame = make_frame(n=5, seed=4)
    frame.loc[2, "protocol"] = np.nan
    pandas_code = predictor.preprocessor.encode(frame[predictor.columns]).codes[0][2]
    assert predictor.preprocessor.gap_code(0) == pandas_code
    assert batch.Scorer(predictor).gap_codes[0] == pandas_code
    expected = categories.index("nan") if int(pd.__version__.split(".")[0]) < 3 else len(categories)
    assert pandas_code == expected


def test_gaps_are_imputed_alike_on_both_routes(trained, tmp_path, monkeypatch):
    """For a model that imputes, an empty field is a gap the fast path imputes itself; pandas' other
    missing markers ("NA") send their piece through pandas, which imputes them too: same scores."""
    import copy

    from netad.serving import batch

    predictor = copy.deepcopy(batch.load_predictor(trained["ckpt"]))
    state = predictor.preprocessor.state
    state["nan_policy"] = "median"
    state["numeric"]["impute"] = [1.5 + j for j in range(len(state["numeric"]["impute"]))]
    frame = make_frame(n=40, seed=5).astype({"packet_size": object, "bytes": object})
    frame.loc[[3, 8], "packet_size"], frame.loc[12, "bytes"] = "", ""  # block 1: empty fields only
    frame.loc[30, "bytes"] = "NA"  # block 2: a marker
    path = tmp_path / "gaps.csv"
    frame.to_csv(path, index=False)
    taken = fast_blocks(monkeypatch)
    result = batch.score_file(predictor, path, tmp_path / "out.csv", chunk_size=20, progress=False)
    assert sorted(t is not None for t in taken) == [False, True] and result.n_rejected == 0
    expected = predictor.score(pd.read_csv(path))
    filled = pd.read_csv(path).fillna({"packet_size": 123.0, "bytes": 123.0})
    assert not np.allclose(expected[[3, 8, 12, 30]], predictor.score(filled)[[3, 8, 12, 30]], atol=1e-6)
    np.testing.assert_allclose(pd.read_csv(tmp_path / "out.csv")["score"], expected, rtol=0, atol=2e-6)


@pytest.mark.parametrize("case", ["small_blocks", "small_pieces"])
def test_many_pieces_through_several_threads(trained, tmp_path, monkeypatch, case):
    """Many pieces through three scoring threads, written in file order. small_blocks: the reader
    parses 4 KB at a time; small_pieces: large blocks cut into pieces of 7 rows (--chunk-size).
    Every line comes back once, in order, as it was (no value here needs quotes), with the model's score."""
    from netad.serving import batch

    if case == "small_blocks":
        monkeypatch.setattr(batch, "_MAX_BLOCK_BYTES", 4096)
        monkeypatch.setattr(batch, "_MIN_BLOCK_BYTES", 4096)
    monkeypatch.setattr(batch, "scoring_threads", lambda: 3)
    n = 3000
    frame = make_frame(n=n, seed=12).assign(note=[f"row{i}" for i in range(n)])  # every line distinct
    path = tmp_path / "many.csv"
    frame.to_csv(path, index=False)
    taken = fast_blocks(monkeypatch)
    result = batch.score_file(trained["ckpt"], path, tmp_path / "out.csv", progress=False,
                              chunk_size=7 if case == "small_pieces" else 100_000)
    assert result.n_rows == len(frame) and result.n_rejected == 0
    assert len(taken) > 40 and all(t is not None for t in taken)
    in_lines = path.read_bytes().splitlines()
    out_lines = (tmp_path / "out.csv").read_bytes().splitlines()
    assert [line.rsplit(b",", 2)[0] for line in out_lines] == in_lines
    expected = batch.load_predictor(trained["ckpt"]).score(frame)
    np.testing.assert_allclose(pd.read_csv(tmp_path / "out.csv")["score"], expected, rtol=0, atol=2e-6)


def test_values_come_back_as_pythons_csv_module_reads_them(trained, tmp_path, monkeypatch):
    """Random pass-through values with commas, quotes, line breaks and spaces, written by the csv module
    and read in small blocks: each record is scored once, and each value comes back as the csv module
    reads it from the input (both routes: the fast path on, and every piece through pandas)."""
    import csv
    import io

    from netad.serving import batch

    monkeypatch.setattr(batch, "_MAX_BLOCK_BYTES", 2048)
    monkeypatch.setattr(batch, "_MIN_BLOCK_BYTES", 2048)
    rng = np.random.default_rng(0)
    bits = ["a", "12", ",", '"', "\n", "\r\n", " ", '""', "x,y", "é"]
    frame = make_frame(n=300, seed=16)
    frame["note"] = ["".join(rng.choice(bits, size=rng.integers(0, 4))) for _ in range(len(frame))]
    path = tmp_path / "notes.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(frame.columns)
        writer.writerows(frame.astype(str).itertuples(index=False))
    records = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))
    assert sum("\n" in r[-1] for r in records) > 50  # many records span lines
    expected = batch.load_predictor(trained["ckpt"]).score(frame)
    for route in ("fast", "pandas"):
        if route == "pandas":
            monkeypatch.setattr(batch.Scorer, "fast", lambda self, piece: None)
        out = tmp_path / f"{route}.csv"
        result = batch.score_file(trained["ckpt"], path, out, progress=False)
        assert (result.n_rows, result.n_rejected) == (300, 0)
        back = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"), newline="")))
        assert [r[:-2] for r in back] == records, route
        np.testing.assert_allclose([float(r[-2]) for r in back[1:]], expected, rtol=0, atol=2e-6)


@pytest.mark.parametrize("block_bytes", [256, 333, 1000])
def test_quoted_fields_with_line_breaks_across_blocks(trained, tmp_path, monkeypatch, block_bytes):
    """Records whose quoted fields hold line breaks, in small blocks (so many of them straddle a
    block boundary) through three threads: every record is scored once, and a bad row's reject
    gives its record number, not its line number."""
    from netad.serving import batch

    monkeypatch.setattr(batch, "_MAX_BLOCK_BYTES", block_bytes)
    monkeypatch.setattr(batch, "_MIN_BLOCK_BYTES", block_bytes)
    monkeypatch.setattr(batch, "scoring_threads", lambda: 3)
    frame = make_frame(n=200, seed=14).astype({"packet_size": object})
    frame["note"] = [f'said "hi"\nthen,\r\nleft {i}' if i % 3 == 0 else f"plain {i}" for i in range(200)]
    frame.loc[150, "packet_size"] = "abc"
    path = tmp_path / "multiline.csv"
    frame.to_csv(path, index=False)
    assert path.read_bytes().count(b"\n") > 300  # far more lines than records
    result = batch.score_file(trained["ckpt"], path, tmp_path / "out.csv", progress=False)
    assert (result.n_rows, result.n_rejected) == (200, 1)
    rejects = pd.read_csv(tmp_path / "out.rejects.csv")
    assert rejects["row"].tolist() == [151] and rejects["note"].tolist() == [frame.loc[150, "note"]]
    scored = pd.read_csv(tmp_path / "out.csv")
    good = frame.drop(index=150).reset_index(drop=True)
    assert scored["note"].tolist() == good["note"].tolist()
    expected = batch.load_predictor(trained["ckpt"]).score(good.astype({"packet_size": float}))
    np.testing.assert_allclose(scored["score"], expected, rtol=0, atol=2e-6)


@pytest.mark.parametrize("case", ["longer_than_a_block", "to_the_end", "in_the_last_field"])
def test_a_quote_never_closed_is_one_line(trained, tmp_path, monkeypatch, case):
    """A quote that is never closed makes the rest of the file one value: a record longer than a block
    (the most the reader holds), a record with too few fields, or the last field of the last record."""
    from netad.errors import UserError
    from netad.serving import batch

    if case == "longer_than_a_block":
        monkeypatch.setattr(batch, "_MAX_BLOCK_BYTES", 4096)
        monkeypatch.setattr(batch, "_MIN_BLOCK_BYTES", 4096)
    frame = make_frame(n=300, seed=15)
    lines = frame.to_csv(index=False).splitlines(keepends=True)
    path = tmp_path / "open_quote.csv"
    if case == "in_the_last_field":  # the record has all its fields: only the file's end shows the quote open
        path.write_text("".join(lines[:10]) + lines[10].rsplit(",", 1)[0] + ',"0\n' + "".join(lines[11:]))
    else:
        path.write_text("".join(lines[:10]) + '1,"never closed' + "".join(lines[10:]))
    with pytest.raises(UserError, match="never closed") as info:
        batch.score_file(trained["ckpt"], path, tmp_path / "out.csv", progress=False)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out.csv").exists()


def test_a_record_longer_than_a_block_is_one_line(trained, tmp_path, monkeypatch):
    from netad.errors import UserError
    from netad.serving import batch

    monkeypatch.setattr(batch, "_MAX_BLOCK_BYTES", 4096)
    monkeypatch.setattr(batch, "_MIN_BLOCK_BYTES", 4096)
    frame = make_frame(n=300, seed=15).assign(note="n")
    frame.loc[200, "note"] = "x" * 10_000
    path = tmp_path / "long.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(UserError, match=r"a record at or after data row \d+ runs on for more than 0.00390625 MB"):
        batch.score_file(trained["ckpt"], path, tmp_path / "out.csv", progress=False)
    assert not (tmp_path / "out.csv").exists()


def test_headerless_files_and_files_without_a_final_newline(trained, tmp_path):
    """A model trained on headerless data (column names from its config) reads headerless files."""
    from netad.serving import batch

    frame = make_frame(n=50, seed=3)
    predictor = batch.load_predictor(trained["ckpt"])
    predictor.config = dict(predictor.config, data=dict(predictor.config.get("data", {}),
                                                           column_names=list(frame.columns)))
    path = tmp_path / "headerless.csv"
    path.write_bytes(frame.to_csv(index=False, header=False).encode().rstrip(b"\n"))
    result = batch.score_file(predictor, path, tmp_path / "out.csv", progress=False)
    scored = pd.read_csv(tmp_path / "out.csv")
    assert result.n_rows == 50 and list(scored.columns) == list(frame.columns) + ["score", "is_anomaly"]
    np.testing.assert_allclose(scored["score"], predictor.score(frame), rtol=0, atol=2e-6)

    lines = frame.to_csv(index=False, header=False).splitlines()
    lines[0] += ",extra"  # data row 1: there is no header line to count
    path.write_text("\n".join(lines) + "\n")
    result = batch.score_file(predictor, path, tmp_path / "out.csv", progress=False)
    assert (result.n_rows, result.n_rejected) == (50, 1)
    assert pd.read_csv(tmp_path / "out.rejects.csv")["row"].tolist() == [1]


@pytest.fixture(scope="module")
def numberlike(tmp_path_factory):
    """A model whose category column has number-like names: "01", "7" (and "x")."""
    root = tmp_path_factory.mktemp("numberlike")
    frame = make_frame(n=300, seed=9)
    frame["protocol"] = frame["protocol"].map({"tcp": "01", "udp": "7", "icmp": "x"})
    frame.to_csv(root / "traffic.csv", index=False)
    run_single(fast_config(root, root / "traffic.csv"), run_name="nl", quiet=True)
    return root / "checkpoints" / "best_model.ckpt"


def test_number_like_categories_are_read_as_written_on_every_route(numberlike, tmp_path, monkeypatch):
    """Where every category value in a block (or a file) looks like a number, pandas alone reads "01"
    as 1, which is no category the model knows. Category columns are read as text, so the fast path,
    the pandas route, a CSV given to the predictor and a CSV uploaded to the API all score alike."""
    from fastapi.testclient import TestClient

    from netad.evaluation.evaluate import labelled_file, open_model
    from netad.serving import batch
    from netad.serving.api import create_app

    predictor = batch.load_predictor(numberlike)
    assert sorted(predictor.preprocessor.state["categorical"]["categories"][0]) == ["01", "7", "x"]
    frame = make_frame(n=60, seed=13).assign(protocol=["01", "7"] * 30, note="n")
    frame.loc[[5, 50], "protocol"] = "x"
    path = tmp_path / "numberlike.csv"  # rows 20-39 (one piece of 20 rows): only "01" and "7" there
    frame.to_csv(path, index=False)
    expected = predictor.score(frame)
    unknown = predictor.score(frame.assign(protocol="never seen"))
    assert np.abs(expected - unknown)[frame["protocol"] == "01"].min() > 1e-4  # a misread "01" would show

    taken = fast_blocks(monkeypatch)
    batch.score_file(predictor, path, tmp_path / "out.csv", chunk_size=20, progress=False)
    assert [t is not None for t in taken] == [True, True, True]
    np.testing.assert_allclose(pd.read_csv(tmp_path / "out.csv")["score"], expected, rtol=0, atol=2e-6)
    monkeypatch.setattr(batch.Scorer, "fast", lambda self, piece: None)  # every piece through pandas
    batch.score_file(predictor, path, tmp_path / "out.csv", chunk_size=20, progress=False)
    np.testing.assert_allclose(pd.read_csv(tmp_path / "out.csv")["score"], expected, rtol=0, atol=2e-6)

    block = frame.iloc[20:40]  # as a file of its own: through the predictor, the API and test.py's reader
    block.to_csv(path, index=False)
    np.testing.assert_allclose(predictor.score(path), expected[20:40], rtol=1e-6)
    r = TestClient(create_app(predictor)).post("/predict/csv", files={"file": ("b.csv", path.read_bytes(), "text/csv")})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose([p["score"] for p in r.json()["predictions"]], expected[20:40], rtol=1e-6)
    block.drop(columns=["note"]).to_csv(path, index=False)  # test.py wants the model's columns and a label
    features, _, _ = labelled_file(open_model(numberlike), path)
    assert features["protocol"].tolist() == block["protocol"].tolist()
