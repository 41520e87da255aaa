"""The plain-block route of the batch scorer writes the very bytes the streaming reader's route writes:
scored rows, rejects and their row numbers, for files that stay plain, turn non-plain part way, hold
values the typed parse refuses, or are compressed; in 1 KB blocks and pieces of 7 rows. (Where the routes
batch rows differently, a score may differ in its last float32 bit.)"""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from conftest import make_frame, tiny_model
from netad.serving import batch


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return str(tiny_model(tmp_path_factory.mktemp("plain"), seed=31, run_name="p"))


def text(n: int = 400, seed: int = 32) -> list[str]:
    frame = make_frame(n=n, seed=seed)
    frame.insert(0, "note", [f"n{i}" for i in range(n)])
    return frame.to_csv(index=False).splitlines()


def variant(kind: str) -> bytes:
    rows, end = text(), "\n"
    if kind == "crlf":
        end = "\r\n"
    elif kind == "quote_late":
        rows[250] = rows[250].replace(f"n{249}", '"n,249"')
    elif kind == "blank_late":
        rows.insert(200, "")
    elif kind == "lone_cr_late":
        rows[300] = rows[300] + "\r" + rows[301]
        del rows[301]
    elif kind == "bad_values":  # refused by the typed parse or the fast path: the block goes through its text pieces
        rows[60] = rows[60].split(",", 1)[0] + ",inf," + rows[60].split(",", 2)[2]  # parses; not a finite number
        rows[120] = rows[120].split(",", 2)[0] + ",oops," + rows[120].split(",", 2)[2]
        rows[300] += ",X"  # a field too many: rejected, with its row number
        rows[301] = ",".join(rows[301].split(",")[:-1])  # a field too few: a gap in the label
    elif kind == "latin1":
        rows = [r.replace("n1", "n\xe91") for r in rows]
        return (end.join(rows) + end).encode("latin-1")
    data = end.join(rows)
    return (data if kind == "no_final_newline" else data + end).encode()


def score(model, path, tmp_path, name: str) -> tuple[bytes, bytes, tuple]:
    out = tmp_path / f"{name}.csv"
    result = batch.score_file(model, path, out, chunk_size=7, progress=False)
    rejects = result.rejects.read_bytes() if result.rejects else b""
    return out.read_bytes(), rejects, (result.n_rows, result.n_rejected, result.n_flagged)


def assert_same_output(plain: tuple, streaming: tuple, model: str) -> None:
    """The same bytes, but for the scores' last digits where the two routes batch rows differently (after the
    line where the plain route hands over to the reader, whose pieces then start elsewhere): a row's float32
    score can differ in its last bit with its batch (a machine's matrix kernels decide)."""
    assert plain[1:] == streaming[1:]  # rejects and counts
    if plain[0] == streaming[0]:
        return
    from netad.inference import load_predictor

    threshold = load_predictor(model).threshold
    a, b = plain[0].split(b"\n"), streaming[0].split(b"\n")
    assert len(a) == len(b) and a[0] == b[0]
    score_at = a[0].split(b",").index(b"score")
    for x, y in zip(a[1:], b[1:]):
        if x == y:
            continue
        fx, fy = x.split(b","), y.split(b",")
        assert fx[:score_at] == fy[:score_at] and fx[score_at + 2:] == fy[score_at + 2:]
        sx, sy = float(fx[score_at]), float(fy[score_at])
        assert abs(sx - sy) < 1e-6
        assert fx[score_at + 1] == fy[score_at + 1] or abs(sx - threshold) < 1e-6


@pytest.mark.parametrize("kind", ["lf", "crlf", "no_final_newline", "quote_late", "blank_late", "lone_cr_late",
                                  "bad_values", "latin1", "gzip"])
def test_plain_blocks_write_what_the_streaming_reader_writes(model, tmp_path, monkeypatch, kind):
    monkeypatch.setattr(batch, "_MIN_BLOCK_BYTES", 1024)
    monkeypatch.setattr(batch, "_MAX_BLOCK_BYTES", 1024)
    data = variant("lf" if kind == "gzip" else kind)
    path = tmp_path / ("in.csv.gz" if kind == "gzip" else "in.csv")
    path.write_bytes(gzip.compress(data) if kind == "gzip" else data)

    blocks = []
    score_block = batch.Scorer.score_block
    monkeypatch.setattr(batch.Scorer, "score_block", lambda self, block, *a: blocks.append(block) or
                        score_block(self, block, *a))
    plain = score(model, path, tmp_path, "plain")
    assert blocks, "no plain block was scored"
    with monkeypatch.context() as m:  # every record through the streaming reader
        m.setattr(batch.BlockSplitter, "next_block", lambda self: None)
        streaming = score(model, path, tmp_path, "streaming")
    assert_same_output(plain, streaming, model)
    n_rows, n_rejected, _ = plain[2]
    assert n_rows == 400  # (the lone CR is a line break, as it is to pyarrow's reader)
    if kind in ("quote_late", "blank_late", "lone_cr_late"):  # plain blocks up to the odd line, then the reader
        assert 0 < sum(b.n_rows for b in blocks) < 300
    if kind == "bad_values":
        rejected = plain[1].decode().splitlines()[1:]
        assert [line.rsplit(",", 2)[1] for line in rejected] == ["60", "120", "300"] and n_rejected == 3
    else:
        assert n_rejected == 0
    assert b"\r" not in plain[0]  # LF line breaks, whatever the input's
    if kind == "latin1":
        assert "n\xe91".encode("latin-1") in plain[0]  # bytes that are not UTF-8 pass through as they were
    first = plain[0].split(b"\n")[1]
    assert first.startswith(text()[1].encode()) and np.isfinite(float(first.split(b",")[-2]))
