"""predict.py against careless and hostile input: nothing lost, nothing half-written, one line for each problem."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, fast_config, make_frame, tiny_model
from netad.cli import predict_main
from netad.serving import batch


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return str(tiny_model(tmp_path_factory.mktemp("hostile"), seed=16, run_name="h"))


def run(capsys, *args):
    capsys.readouterr()
    code = predict_main([*args, "--quiet"])
    out = capsys.readouterr()
    return code, out.out, out.err


def pandas_only(monkeypatch) -> None:
    """Every piece of the file through the pandas route (the fast path turns each one away)."""
    monkeypatch.setattr(batch.Scorer, "fast", lambda self, piece: None)


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_the_output_may_not_be_the_input_however_it_is_named(model, tmp_path, capsys, monkeypatch):
    (tmp_path / "dir").mkdir()
    path = tmp_path / "dir" / "x.csv"
    make_frame(n=30, seed=2).to_csv(path, index=False)
    before = path.read_bytes()
    (tmp_path / "link.csv").symlink_to(path)
    os.link(path, tmp_path / "hard.csv")
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")
    for output in (str(path), "../dir/x.csv", str(tmp_path / "dir" / ".." / "dir" / "x.csv"),
                   str(tmp_path / "link.csv"), str(tmp_path / "hard.csv")):
        code, _, err = run(capsys, "--model", model, "--input", str(path), "--output", output)
        assert code == 2 and "is the input file" in one_error_line(err), (output, err)
        code, _, err = run(capsys, "--model", model, "--input", str(path), "--output", str(tmp_path / "o.csv"),
                           "--rejects", output)
        assert code == 2 and "is the input file" in one_error_line(err), (output, err)
    assert path.read_bytes() == before and not (tmp_path / "o.csv").exists()


def test_rejects_may_not_be_the_output_and_the_output_not_a_folder(model, tmp_path, capsys):
    path = tmp_path / "x.csv"
    make_frame(n=30, seed=2).to_csv(path, index=False)
    code, _, err = run(capsys, "--model", model, "--input", str(path), "--output", str(tmp_path / "o.csv"),
                       "--rejects", str(tmp_path / "o.csv"))
    assert code == 2 and "file of their own" in one_error_line(err)
    code, _, err = run(capsys, "--model", model, "--input", str(path), "--output", str(tmp_path))
    assert code == 2 and "is a folder" in one_error_line(err)


def test_output_to_stdout_and_through_a_link_to_a_fifo_is_written_directly(model, tmp_path, capsys):
    path = tmp_path / "x.csv"
    frame = make_frame(n=40, seed=3).astype({"bytes": object})
    frame.loc[5, "bytes"] = "oops"
    frame.to_csv(path, index=False)
    reference = tmp_path / "ref.csv"
    assert run(capsys, "--model", model, "--input", str(path), "--output", str(reference))[0] == 0

    code, out, err = run(capsys, "--model", model, "--input", str(path), "--output", "-",
                         "--rejects", str(tmp_path / "r.csv"))
    assert code == 0 and out == reference.read_text()
    assert "Scored 39 of 40 rows" in err  # the summary goes to stderr, not into the scores

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    (tmp_path / "stdout-like").symlink_to(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    code, _, err = run(capsys, "--model", model, "--input", str(path), "--output", str(tmp_path / "stdout-like"),
                       "--rejects", str(tmp_path / "r2.csv"))
    reader.join(timeout=30)
    assert code == 0, err
    assert got == [reference.read_bytes()]
    assert (tmp_path / "stdout-like").is_symlink() and fifo.is_fifo()  # never renamed over
    assert not list(tmp_path.glob(".*partial"))


@pytest.mark.slow  # a real process: runs in `make test-slow` (CI runs both)
def test_dev_stdout_in_a_real_process_is_written_not_replaced(model, tmp_path):
    path = tmp_path / "x.csv"
    make_frame(n=20, seed=4).to_csv(path, index=False)
    proc = subprocess.run([sys.executable, str(ROOT / "predict.py"), "--model", model, "--input", str(path),
                           "--output", "/dev/stdout", "--rejects", str(tmp_path / "r.csv"), "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].endswith(",score,is_anomaly") and len(proc.stdout.splitlines()) == 21
    assert not os.path.exists("/dev/.stdout.partial")

    # stdout redirected to a file (predict.py ... --output /dev/stdout >> log.csv): appended to, never replaced
    log = tmp_path / "log.csv"
    log.write_text("earlier lines\n")
    inode = log.stat().st_ino
    for output in ("/dev/stdout", "/dev/fd/1"):
        with log.open("ab") as fh:
            proc = subprocess.run([sys.executable, str(ROOT / "predict.py"), "--model", model, "--input", str(path),
                                   "--output", output, "--rejects", str(tmp_path / "r.csv"), "--quiet"], stdout=fh,
                                  stderr=subprocess.PIPE, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
    text = log.read_text().splitlines()
    assert log.stat().st_ino == inode and text[0] == "earlier lines" and len(text) == 1 + 2 * 21


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full (every write: no space left)")
def test_a_full_disk_is_one_line_and_leaves_nothing(model, tmp_path, capsys, monkeypatch):
    path = tmp_path / "x.csv"
    make_frame(n=50, seed=5).to_csv(path, index=False)
    code, _, err = run(capsys, "--model", model, "--input", str(path), "--output", "/dev/full",
                       "--rejects", str(tmp_path / "r.csv"))
    assert code == 2 and one_error_line(err) == "error: no space left on device while writing /dev/full"

    # a regular file on a disk that fills up midway: no half-written file under either name
    class FillsUp(io.FileIO):
        def write(self, data):
            if self.tell() + len(data) > 100:
                raise OSError(28, "No space left on device")
            return super().write(data)

    monkeypatch.setattr(batch, "_open_file", lambda path: FillsUp(path, "wb"))
    out = tmp_path / "o.csv"
    code, _, err = run(capsys, "--model", model, "--input", str(path), "--output", str(out))
    assert code == 2 and one_error_line(err) == f"error: no space left on device while writing {out}"
    assert not out.exists() and not list(tmp_path.glob(".*partial"))


def test_an_output_folder_that_cannot_be_made_is_one_line(model, tmp_path, capsys):
    path = tmp_path / "x.csv"
    make_frame(n=10, seed=5).to_csv(path, index=False)
    code, _, err = run(capsys, "--model", model, "--input", str(path), "--output", str(path / "sub" / "o.csv"))
    assert code == 2 and "not a folder" in one_error_line(err)


@pytest.mark.parametrize("route", ["fast", "pandas"])
def test_pass_through_columns_come_back_exactly_on_both_routes(model, tmp_path, capsys, monkeypatch, route):
    """Flow ids and zero-padded codes must join back to their flows, whichever route a piece takes."""
    frame = make_frame(n=40, seed=7)
    ids = [f"{i:05d}" for i in range(40)]
    frame.insert(0, "flow_id", ids)
    frame["big"] = "1234567890123456789"
    frame["na_text"] = "NA"
    plain = tmp_path / "plain.csv"
    frame.to_csv(plain, index=False)
    quirky = tmp_path / "quirky.csv"  # one empty cell and one quoted field
    odd = frame.copy()
    odd.loc[3, "na_text"] = ""
    odd.loc[4, "na_text"] = 'say "hi", then'
    odd.to_csv(quirky, index=False)
    if route == "pandas":
        pandas_only(monkeypatch)
    for path, expected in ((plain, frame), (quirky, odd)):
        out = tmp_path / f"{path.stem}.out.csv"
        code, _, err = run(capsys, "--model", model, "--input", str(path), "--output", str(out))
        assert code == 0, err
        back = pd.read_csv(out, dtype=str, keep_default_na=False)
        assert back["flow_id"].tolist() == ids
        assert (back["big"] == "1234567890123456789").all()
        assert back["na_text"].tolist() == expected["na_text"].fillna("").tolist()
    plain_scores = pd.read_csv(tmp_path / "plain.out.csv")["score"]
    np.testing.assert_allclose(pd.read_csv(tmp_path / "quirky.out.csv")["score"], plain_scores, rtol=0, atol=2e-6)


def test_a_value_that_overflows_the_models_features_is_rejected_with_its_reason(model, tmp_path, capsys):
    frame = make_frame(n=30, seed=9)
    frame["packet_size"] = frame["packet_size"].astype(object)
    frame.loc[2, "packet_size"] = "1e308"
    frame.loc[6, "bytes"] = -1e300
    path = tmp_path / "x.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "o.csv"
    code, printed, err = run(capsys, "--model", model, "--input", str(path), "--output", str(out))
    assert code == 0, err
    rejects = pd.read_csv(tmp_path / "o.rejects.csv")
    assert rejects["row"].tolist() == [3, 7]
    assert all("too large for the model" in r for r in rejects["reason"])
    scored = pd.read_csv(out, dtype={"score": str})
    assert len(scored) == 28 and scored["score"].str.fullmatch(r"[01]\.\d{9}").all()


@pytest.mark.parametrize("kind", ["gz", "bz2", "xz", "zst", "gz-without-suffix"])
def test_compressed_inputs_are_read_as_they_are(model, tmp_path, capsys, kind):
    frame = make_frame(n=200, seed=10)
    plain = tmp_path / "plain.csv"
    frame.to_csv(plain, index=False)
    data = plain.read_bytes()
    if kind.startswith("gz"):
        packed = gzip.compress(data)
    elif kind == "bz2":
        packed = bz2.compress(data)
    elif kind == "xz":
        packed = lzma.compress(data)
    else:
        import zstandard

        packed = zstandard.ZstdCompressor().compress(data)
    path = tmp_path / ("records.dat" if kind == "gz-without-suffix" else f"records.csv.{kind}")
    path.write_bytes(packed)
    assert run(capsys, "--model", model, "--input", str(plain), "--output", str(tmp_path / "ref.csv"))[0] == 0
    code, _, err = run(capsys, "--model", model, "--input", str(path), "--output", str(tmp_path / "o.csv"))
    assert code == 0, err
    assert (tmp_path / "o.csv").read_bytes() == (tmp_path / "ref.csv").read_bytes()


def test_damaged_compressed_and_non_utf8_inputs_are_one_line(model, tmp_path, capsys):
    data = make_frame(n=3000, seed=11).to_csv(index=False).encode()
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(gzip.compress(data)[:-40])
    code, _, err = run(capsys, "--model", model, "--input", str(cut), "--output", str(tmp_path / "o.csv"))
    assert code == 2 and "cannot be decompressed" in one_error_line(err)
    assert not (tmp_path / "o.csv").exists()

    (tmp_path / "a.zip").write_bytes(b"PK\x03\x04" + b"\0" * 40)
    code, _, err = run(capsys, "--model", model, "--input", str(tmp_path / "a.zip"), "--output", str(tmp_path / "o.csv"))
    assert code == 2 and "zip archive" in one_error_line(err)


@pytest.mark.parametrize("route", ["arrow", "pandas"])
def test_a_latin1_file_is_scored_and_its_bytes_come_back_as_they_were(model, tmp_path, capsys, monkeypatch, route):
    frame = make_frame(n=20, seed=12).astype({"protocol": object})
    frame["note"] = "ok"
    frame.loc[4, "note"] = "caf\xe9"
    frame.loc[7, "protocol"] = "t\xe9p"  # a category the model never saw: the unknown bucket
    if route == "pandas":
        pandas_only(monkeypatch)
    latin = tmp_path / "latin1.csv"
    latin.write_bytes(frame.to_csv(index=False).encode("latin-1"))
    out = tmp_path / "o.csv"
    code, _, err = run(capsys, "--model", model, "--input", str(latin), "--output", str(out))
    assert code == 0, err
    lines = out.read_bytes().splitlines()
    assert len(lines) == 21 and b"caf\xe9" in lines[5] and b"t\xe9p" in lines[8]
    assert [line.rsplit(b",", 2)[0] for line in lines] == latin.read_bytes().splitlines()


def test_novelty_scores_have_the_fixed_format_on_both_routes(tmp_path, csv_path, capsys, monkeypatch):
    from netad.training.cv import run_single

    run_single(fast_config(tmp_path, csv_path, model__type="hybrid", hybrid__detector="kmeans"), run_name="n",
               quiet=True)
    ckpt = str(tmp_path / "checkpoints" / "best_model.ckpt")
    frame = make_frame(n=40, seed=13)
    plain, quirky = tmp_path / "p.csv", tmp_path / "q.csv"
    frame.to_csv(plain, index=False)
    frame.assign(note=['"x"'] + [""] * 39).to_csv(quirky, index=False)
    for path in (plain, quirky):
        if path is quirky:
            pandas_only(monkeypatch)
        out = tmp_path / f"{path.stem}.out.csv"
        code, _, err = run(capsys, "--model", ckpt, "--input", str(path), "--output", str(out))
        assert code == 0, err
        text = pd.read_csv(out, dtype=str)["novelty_score"]
        assert text.str.fullmatch(r"-?\d+\.\d{9}").all(), text.head()
    np.testing.assert_allclose(pd.read_csv(tmp_path / "q.out.csv")["novelty_score"],
                               pd.read_csv(tmp_path / "p.out.csv")["novelty_score"], rtol=0, atol=1e-6)


def test_rejects_may_not_go_to_the_scores_stream(model, tmp_path, capsys):
    path = tmp_path / "x.csv"
    make_frame(n=10, seed=2).to_csv(path, index=False)
    for rejects in ("/dev/stdout", "-", "/dev/stderr"):
        code, out, err = run(capsys, "--model", model, "--input", str(path), "--output", "-", "--rejects", rejects)
        assert code == 2 and "file of their own" in one_error_line(err) and out == "", rejects


def test_records_with_more_fields_than_the_header_are_rejected_not_shifted(model, tmp_path, capsys, monkeypatch):
    frame = make_frame(n=50, seed=21)
    frame.insert(0, "flow", [f"f{i}" for i in range(50)])
    lines = frame.to_csv(index=False).splitlines()
    lines[1] += ",EXTRA"  # the first record of the block
    lines[30] += ",MORE,AND MORE"
    lines[20] += ","  # a trailing comma: an empty field past the header's, scored as usual
    lines[45] = lines[45].rsplit(",", 1)[0]  # one field short (the label, which the model does not read): scored
    path = tmp_path / "x.csv"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o.csv"
    code, printed, err = run(capsys, "--model", model, "--input", str(path), "--output", str(out))
    assert code == 0, err
    rejects = pd.read_csv(tmp_path / "o.rejects.csv", dtype=str)
    assert rejects["row"].tolist() == ["1", "30"] and rejects["flow"].tolist() == ["f0", "f29"]
    assert all(r == "has more fields than the header's 8" for r in rejects["reason"])
    scored = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert scored["flow"].tolist() == [f"f{i}" for i in range(50) if i not in (0, 29)]  # nothing shifted
    assert scored.loc[scored["flow"] == "f44", "label"].tolist() == [""]  # the missing field: empty
    assert "Scored 48 of 50 rows" in printed

    lines[40] += "," * 20 + "x"  # far more fields than any record may carry: the row is named
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(batch, "_MIN_BLOCK_BYTES", 1024)
    code, _, err = run(capsys, "--model", model, "--input", str(path), "--output", str(out), "--chunk-size", "15")
    assert code == 2 and "data row 40 has 28 fields, the header 8" in one_error_line(err)


def test_misshapen_records_anywhere_keep_their_row_numbers_and_order(model, tmp_path, capsys, monkeypatch):
    """Records with an extra field at the start, in runs across block boundaries and at the very end
    (the reader sets them aside; they are put back in their places), in 1 KB blocks."""
    monkeypatch.setattr(batch, "_MIN_BLOCK_BYTES", 1024)
    monkeypatch.setattr(batch, "_MAX_BLOCK_BYTES", 1024)
    n = 400
    frame = make_frame(n=n, seed=25)
    frame.insert(0, "flow", [f"f{i}" for i in range(n)])
    lines = frame.to_csv(index=False).splitlines()
    extra = [0, 1, 2, 57, 58] + list(range(140, 175)) + [299, 397, 398, 399]  # 0-based data rows
    for i in extra:
        lines[i + 1] += ",X"
    lines.insert(101, "")  # a blank line: no record, no row number
    path = tmp_path / "x.csv"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o.csv"
    code, printed, err = run(capsys, "--model", model, "--input", str(path), "--output", str(out), "--chunk-size", "9")
    assert code == 0, err
    rejects = pd.read_csv(tmp_path / "o.rejects.csv", dtype=str)
    assert rejects["row"].tolist() == [str(i + 1) for i in extra]
    assert rejects["flow"].tolist() == [f"f{i}" for i in extra]
    scored = pd.read_csv(out, dtype=str)
    assert scored["flow"].tolist() == [f"f{i}" for i in range(n) if i not in extra]
    assert f"Scored {n - len(extra)} of {n} rows" in printed


def test_an_earlier_runs_rejects_do_not_stay_beside_a_clean_run(model, tmp_path, capsys):
    frame = make_frame(n=30, seed=22).astype({"bytes": object})
    frame.loc[3, "bytes"] = "oops"
    path = tmp_path / "x.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "o.csv"
    assert run(capsys, "--model", model, "--input", str(path), "--output", str(out))[0] == 0
    assert (tmp_path / "o.rejects.csv").is_file()
    frame.loc[3, "bytes"] = 7.0
    frame.to_csv(path, index=False)
    code, printed, _ = run(capsys, "--model", model, "--input", str(path), "--output", str(out))
    assert code == 0 and "could not be scored" not in printed and not (tmp_path / "o.rejects.csv").exists()


def test_cells_that_are_not_numbers_are_gaps_for_a_model_that_imputes_as_in_training(tmp_path, capsys):
    from netad.training.cv import run_single

    train = make_frame(n=300, seed=23).astype({"packet_size": object})
    train.loc[[5, 9], "packet_size"] = "?"
    csv = tmp_path / "train.csv"
    train.to_csv(csv, index=False)
    run_single(fast_config(tmp_path, csv, data__nan_policy="median"), run_name="imp", quiet=True)
    ckpt = str(tmp_path / "checkpoints" / "best_model.ckpt")
    new = make_frame(n=40, seed=24).astype({"packet_size": object})
    new.loc[[2, 3, 11], "packet_size"] = "?"
    path = tmp_path / "new.csv"
    new.to_csv(path, index=False)
    code, printed, err = run(capsys, "--model", ckpt, "--input", str(path), "--output", str(tmp_path / "o.csv"))
    assert code == 0 and "Scored 40 of 40 rows" in printed, err
    assert "warning: column 'packet_size': 3 cells were not numbers and were imputed like gaps" in err
    assert not (tmp_path / "o.rejects.csv").exists()
